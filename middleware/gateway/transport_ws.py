"""graphql-transport-ws for a plain graphql-core schema (graphene has no websocket server).

The same protocol rules as strawberry's handler, checked by the same tests:
4408 without `connection_init` in time, 4429 on a second init, 4401 on
`subscribe` before the ack, 4409 on a duplicate id, 4400 on an invalid message
(`client_json.read_frame`: not a JSON object, nested too deeply, fields of the
wrong type) or unparsable document (or one of more than `max_tokens` tokens; documents
are parsed and validated once per distinct text, `documents.DocumentCache`), 4403 when the
token is rejected or, later, expires (`context["exp"]`, unix seconds); ping/pong;
a cap on operations per connection answered with an `error` message; a document whose
`rows` and `...ByKey` fields ask for more than `max_keys` keys together answered with
one `next` carrying the error, before anything runs (`rows.row_keys_error`). Errors
reach the client through `pgsift.middleware.gateway.error_masking`'s policy.
A lone `sync` subscription is not executed per message: its selection is
compiled once (`sync_plan`) and each message's payload encoded once per selection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    GraphQLSchema,
    OperationType,
    execute,
    get_operation_ast,
    subscribe,
)
from graphql.execution.subscribe import create_source_event_stream
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketDisconnected

from pgsift.middleware.errors import AuthError
from pgsift.middleware.gateway import client_json
from pgsift.middleware.gateway.client_json import ClientJSONError, JsonLimits
from pgsift.middleware.gateway.documents import CheckedDocument, DocumentCache
from pgsift.middleware.gateway.error_masking import masked
from pgsift.middleware.gateway.messages import SyncMessage
from pgsift.middleware.gateway.rows import row_keys_error
from pgsift.middleware.gateway.sync_plan import SyncPlan, encode, next_prefix, plan_sync

PROTOCOL = "graphql-transport-ws"

# connection_init payload and the websocket -> the operation context; AuthError rejects.
ContextFactory = Callable[[dict[str, Any], WebSocket], dict[str, Any]]
# The context -> the connection_ack payload (None: none).
Acknowledge = Callable[[dict[str, Any]], Awaitable[dict[str, object] | None]]

# What sending to a client that went away raises: the end of its operations, not an error.
GONE = (WebSocketDisconnect, WebSocketDisconnected)


class Closed(Exception):
    """The connection was closed with a protocol error code."""


class GraphQLTransportWS:
    """An ASGI websocket app serving `schema` over graphql-transport-ws."""

    # Lone `sync` subscriptions run compiled (`sync_plan`); False: executed per message.
    compiled_sync = True

    def __init__(
        self,
        schema: GraphQLSchema,
        *,
        context: ContextFactory,
        init_timeout_s: float,
        acknowledge: Acknowledge | None = None,
        max_operations: int | None,
        max_tokens: int | None = None,
        max_keys: int | None = None,
        json_limits: JsonLimits = client_json.DEFAULT_LIMITS,
    ) -> None:
        self.max_tokens = max_tokens
        self.max_keys = max_keys  # of `rows` and `...ByKey` fields, per document
        self.schema = schema  # and its document cache
        self.json_limits = json_limits
        self.context = context
        self.acknowledge = acknowledge
        self.init_timeout_s = init_timeout_s
        self.max_operations = max_operations

    @property
    def schema(self) -> GraphQLSchema:
        return self._schema

    @schema.setter
    def schema(self, schema: GraphQLSchema) -> None:
        """A rebuilt schema (`graphql.live_schema`) comes with a cache of its own: a
        document checked against the old one may not be valid against it."""
        self._schema = schema
        self.documents = DocumentCache(schema, max_tokens=self.max_tokens)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        websocket = WebSocket(scope, receive, send)
        if PROTOCOL not in scope.get("subprotocols", []):
            await websocket.accept()
            await websocket.close(4406, "Subprotocol not acceptable")
            return
        await websocket.accept(subprotocol=PROTOCOL)
        await _Connection(self, websocket).run()


class _Connection:
    def __init__(self, app: GraphQLTransportWS, websocket: WebSocket) -> None:
        self.app = app
        self.ws = websocket
        self.context: dict[str, Any] | None = None
        self.init_received = False
        self.operations: dict[str, asyncio.Task[None]] = {}
        self.closed = False
        self.expiry: asyncio.Task[None] | None = None

    async def run(self) -> None:
        timer = asyncio.create_task(self._init_timeout())
        try:
            while not self.closed:
                try:
                    text = await self.ws.receive_text()
                except WebSocketDisconnect:
                    return
                except KeyError:
                    await self.close(4400, "WebSocket message type must be text")
                    return
                await self._handle(text)
        finally:
            timer.cancel()
            if self.expiry is not None:
                self.expiry.cancel()
            for task in self.operations.values():
                task.cancel()
            for task in list(self.operations.values()):
                with contextlib.suppress(BaseException):
                    await task

    async def close(self, code: int, reason: str) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):
                await self.ws.close(code, reason)

    async def send(self, message: dict[str, Any]) -> None:
        await self.send_text(encode(message))

    async def send_text(self, text: str) -> None:
        if not self.closed:
            try:
                await self.ws.send_text(text)
            except GONE:
                self.closed = True
                raise

    async def _init_timeout(self) -> None:
        await asyncio.sleep(self.app.init_timeout_s)
        if not self.init_received:
            await self.close(4408, "Connection initialisation timeout")

    async def _expire(self, exp: float) -> None:
        await asyncio.sleep(max(0.0, exp - time.time()))
        for task in self.operations.values():
            task.cancel()
        self.operations.clear()
        await self.close(4403, "Token expired")

    async def _handle(self, text: str) -> None:
        try:
            message = client_json.read_frame(text, self.app.json_limits)
        except ClientJSONError as exc:
            await self.close(4400, str(exc))
            return
        kind = message.get("type")
        if kind == "connection_init":
            await self._connection_init(message)
        elif kind == "ping":
            await self.send({"type": "pong"})
        elif kind == "pong":
            pass
        elif kind == "subscribe":
            await self._subscribe(message)
        elif kind == "complete":
            task = self.operations.pop(str(message.get("id")), None)
            if task is not None:
                task.cancel()
        else:
            await self.close(4400, f"Unknown message type: {kind}")

    async def _connection_init(self, message: dict[str, Any]) -> None:
        payload = message.get("payload") or {}
        if not isinstance(payload, dict):
            await self.close(4400, "Invalid connection init payload")
            return
        if self.init_received:
            await self.close(4429, "Too many initialisation requests")
            return
        self.init_received = True
        try:
            self.context = self.app.context(payload, self.ws)
        except AuthError:
            await self.close(4403, "Forbidden")
            return
        exp = self.context.get("exp")
        if exp is not None:
            self.expiry = asyncio.create_task(self._expire(float(exp)))
        ack: dict[str, Any] = {"type": "connection_ack"}
        if self.app.acknowledge is not None:
            payload = await self.app.acknowledge(self.context)
            if payload is not None:
                ack["payload"] = payload
        await self.send(ack)

    async def _subscribe(self, message: dict[str, Any]) -> None:
        if self.context is None:
            await self.close(4401, "Unauthorized")
            return
        # read_frame checked the types: a string id, an object payload with a string query.
        op_id, payload = message["id"], message["payload"]
        query, variables = payload["query"], payload.get("variables") or {}
        if op_id in self.operations:
            await self.close(4409, f"Subscriber for {op_id} already exists")
            return
        checked = self.app.documents.check(query)
        if checked.syntax_error is not None:
            await self.close(4400, checked.syntax_error.message)
            return
        limit = self.app.max_operations
        if limit is not None and len(self.operations) >= limit:
            await self._error(op_id, [GraphQLError("Subscription limit reached")])
            return
        task = asyncio.create_task(self._operation(op_id, checked, variables, payload))
        self.operations[op_id] = task

    async def _operation(
        self, op_id: str, checked: CheckedDocument, variables: dict[str, Any],
        payload: dict[str, Any],
    ) -> None:
        try:
            document = checked.document
            if document is None or checked.errors:
                await self._error(op_id, list(checked.errors))
                return
            name = payload.get("operationName")
            refused = None if self.app.max_keys is None else row_keys_error(
                document, name, variables, self.app.max_keys
            )
            if refused is not None:
                # Answered as strawberry does: one `next` with the error, then `complete`.
                await self._next(op_id, ExecutionResult(data=None, errors=[refused]))
                if self.operations.pop(op_id, None) is not None:
                    await self.send({"id": op_id, "type": "complete"})
                return
            operation = get_operation_ast(document, name)
            plan = plan_sync(self.app.schema, document, name, variables) if (
                self.app.compiled_sync) else None
            if plan is not None or (
                operation is not None and operation.operation == OperationType.SUBSCRIPTION
            ):
                # Compiled: the source stream only, each message serialized by the plan.
                opening = create_source_event_stream if plan is not None else subscribe
                stream = await opening(
                    self.app.schema, document, variable_values=variables,
                    context_value=self.context, operation_name=name,
                )
                if isinstance(stream, ExecutionResult):
                    # The source stream failed (e.g. a bad query): like the reference
                    # server, one `next` with the errors, then `complete`.
                    await self._next(op_id, stream)
                elif plan is not None:
                    await self._stream_compiled(op_id, stream, plan, document, variables, name)
                else:
                    await self._stream(op_id, stream)
            else:
                result = execute(
                    self.app.schema, document, variable_values=variables,
                    context_value=self.context, operation_name=name,
                )
                if not isinstance(result, ExecutionResult):
                    result = await result
                await self._next(op_id, result)
            if self.operations.pop(op_id, None) is not None:
                await self.send({"id": op_id, "type": "complete"})
        except asyncio.CancelledError:
            raise
        except GONE:
            self.operations.pop(op_id, None)  # the client went away: nothing to answer or log
        except Exception as exc:
            self.operations.pop(op_id, None)
            if not isinstance(exc, GraphQLError):
                exc = GraphQLError(str(exc), original_error=exc)
            with contextlib.suppress(*GONE):
                await self._error(op_id, [exc])

    async def _stream(self, op_id: str, stream: AsyncIterable[ExecutionResult]) -> None:
        try:
            async for result in stream:
                await self._next(op_id, result)
        finally:
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()

    async def _stream_compiled(
        self,
        op_id: str,
        stream: AsyncIterable[Any],
        plan: SyncPlan,
        document: DocumentNode,
        variables: dict[str, Any],
        name: str | None,
    ) -> None:
        """Like `_stream`, with the plan's serializer in place of executing each message
        (a source event that is not a `SyncMessage` is executed as usual)."""
        serializer, prefix = plan.serializer, next_prefix(op_id)
        try:
            async for event in stream:
                if isinstance(event, SyncMessage):
                    await self.send_text(prefix + serializer.payload_json(event) + "}")
                    continue
                result = execute(
                    self.app.schema, document, root_value=event, variable_values=variables,
                    context_value=self.context, operation_name=name,
                )
                if not isinstance(result, ExecutionResult):
                    result = await result
                await self._next(op_id, result)
        finally:
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()

    async def _next(self, op_id: str, result: ExecutionResult) -> None:
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            payload["errors"] = [masked(e).formatted for e in result.errors]
        await self.send({"id": op_id, "type": "next", "payload": payload})

    async def _error(self, op_id: str, errors: list[GraphQLError]) -> None:
        self.operations.pop(op_id, None)
        payload = [masked(e).formatted for e in errors]
        await self.send({"id": op_id, "type": "error", "payload": payload})
