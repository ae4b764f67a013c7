"""strawberry's graphql-transport-ws handler as the gateway runs it (`ExpiringHandler`).

It closes a connection whose token expired (4403), answers a frame that is not a
usable JSON object with 4400, serves every operation from the view's current
schema, and runs a lone `sync` subscription compiled (`sync_plan`) instead of
through strawberry's execution. `app.GraphQLView` uses it for /graphql.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from contextlib import aclosing
from typing import Any

from graphql import GraphQLError
from starlette.websockets import WebSocketDisconnect
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.schema import BaseSchema
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    Message,
    NextMessage,
    NextMessagePayload,
)

from pgsift.middleware.gateway import client_json
from pgsift.middleware.gateway.client_json import ClientJSONError
from pgsift.middleware.gateway.error_masking import masked
from pgsift.middleware.gateway.schema import GatewaySchema, open_for
from pgsift.middleware.gateway.sync_plan import SyncPlan, next_prefix, plan_sync

TOKEN_EXPIRED = 4403


class ExpiringHandler(BaseGraphQLTransportWSHandler[dict[str, Any], None]):
    """strawberry's graphql-transport-ws handler, closing the connection with 4403
    when the token it was opened with expires (`context["exp"]`, unix seconds), and
    with 4400 on a message that is not a usable JSON object (`client_json`). A lone
    `sync` subscription is not executed per message: its selection is compiled once
    (`sync_plan`) and each message's payload encoded once per selection."""

    expiry: asyncio.Task[None] | None = None
    # Lone `sync` subscriptions run compiled; False: through strawberry's execution.
    compiled_sync = True

    @property
    def schema(self) -> BaseSchema:
        """The view's schema as it is now: rebuilt after a schema change, it serves the
        operations of connections opened before too (strawberry keeps the one at open)."""
        return self.view.schema

    @schema.setter
    def schema(self, _opened_with: BaseSchema) -> None:
        pass

    async def handle(self) -> None:
        try:
            await super().handle()
        except ClientJSONError as exc:  # from GraphQLView.decode_json, reading a frame
            await self.handle_invalid_message(str(exc))

    async def handle_message(self, message: Message) -> None:
        problem = client_json.frame_problem(message)
        if problem is not None:
            await self.handle_invalid_message(problem)
            return
        await super().handle_message(message)

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        await super().handle_connection_init(message)
        exp = self.context.get("exp")
        if self.connection_acknowledged and exp is not None and self.expiry is None:
            self.expiry = asyncio.create_task(self._expire(float(exp)))

    async def _expire(self, exp: float) -> None:
        await asyncio.sleep(max(0.0, exp - time.time()))
        for operation_id in list(self.operations):
            await self.cleanup_operation(operation_id)
        await self.websocket.close(code=TOKEN_EXPIRED, reason="Token expired")

    async def run_operation(self, operation: Operation[dict[str, Any], None]) -> None:
        """A lone `sync` subscription runs compiled (`sync_plan`); anything else as usual."""
        plan = self._plan(operation) if self.compiled_sync else None
        if plan is None:
            await super().run_operation(operation)
            return
        running = self._run_sync(operation, plan)
        del plan  # held by `running` only as long as it needs it
        try:
            await running
            await operation.send_operation_message({"id": operation.id, "type": "complete"})
        except Exception as error:
            # As strawberry's own run_operation ends a failed operation.
            await self.handle_task_exception(error)
            with contextlib.suppress(Exception):
                await operation.send_operation_message({"id": operation.id, "type": "complete"})
            self.operations.pop(operation.id, None)
            raise

    def _plan(self, operation: Operation[dict[str, Any], None]) -> SyncPlan | None:
        schema = self.schema
        if not isinstance(schema, GatewaySchema):
            return None
        checked = schema.documents.check(operation.query)
        if checked.document is None or checked.errors:
            return None  # strawberry answers the document's errors
        return plan_sync(
            schema._schema, checked.document, operation.operation_name, operation.variables
        )

    async def _run_sync(self, operation: Operation[dict[str, Any], None], plan: SyncPlan) -> None:
        """Stream the messages of `plan` as prebuilt frames. A failure is answered as
        strawberry answers an exception of the subscription's stream: one `next` with
        `data: null` and the (masked) error, then `complete`."""
        args = plan.arguments
        serializer, prefix = plan.serializer, next_prefix(operation.id)
        # This frame lives as long as the subscription: it keeps only what it sends with
        # (nor does the operation keep its decoded variables, read by now).
        del plan
        operation.variables = None
        try:
            messages = await open_for(
                self.context, args["query"], args.get("params"), args.get("cursor")
            )
            del args
            async with aclosing(messages):  # type: ignore[type-var]  # an async generator
                async for message in messages:
                    await self._send_text(prefix + serializer.payload_json(message) + "}")
                    del message
        except WebSocketDisconnected:
            raise
        except Exception as exc:
            error = exc if isinstance(exc, GraphQLError) else GraphQLError(
                str(exc), original_error=exc
            )
            payload: NextMessagePayload = {"data": None, "errors": [masked(error).formatted]}
            failed: NextMessage = {"id": operation.id, "type": "next", "payload": payload}
            await operation.send_operation_message(failed)

    async def _send_text(self, text: str) -> None:
        socket: Any = self.websocket
        try:
            await socket.ws.send_text(text)
        except WebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc

    async def handle_task_exception(self, error: Exception) -> None:
        if isinstance(error, WebSocketDisconnected):
            return  # the client went away mid-stream: normal, no traceback to log
        await super().handle_task_exception(error)

    async def shutdown(self) -> None:
        if self.expiry is not None:
            self.expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.expiry
        await super().shutdown()
