"""The gateway's ASGI app: GraphQL at /graphql (graphql-transport-ws), /healthz, /metrics.

    app = create_app(load_settings())       # then: uvicorn, or `pgsift serve`

`app.state.service` is the `SyncService`, `app.state.authenticator` the
`Authenticator` (HTTP endpoints of other streams verify callers with it).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing, asynccontextmanager
from datetime import timedelta
from typing import Any

# The exception strawberry's views answer as an HTTP error (cross-web is a dependency of
# the pinned strawberry; its HTTP layer).
from cross_web import HTTPException
from graphql import GraphQLError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect
from strawberry import Schema
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLRequestData
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.schema import BaseSchema
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
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
from strawberry.types import ExecutionResult
from strawberry.types.unset import UnsetType

from pgsift.middleware.errors import AuthError, ConfigError, MutationError
from pgsift.middleware.gateway import client_json
from pgsift.middleware.gateway.auth import Authenticator
from pgsift.middleware.gateway.body_limit import BodyLimit
from pgsift.middleware.gateway.client_json import ClientJSONError, JsonLimits
from pgsift.middleware.gateway.error_masking import masked
from pgsift.middleware.gateway.fanout import FeedObserver
from pgsift.middleware.gateway.health import gateway_checks, healthz
from pgsift.middleware.gateway.http_subscriptions import is_subscription, subscription_over_http
from pgsift.middleware.gateway.metrics import GatewayMetrics
from pgsift.middleware.gateway.schema import GatewaySchema, build_schema, open_for
from pgsift.middleware.gateway.service import SyncService
from pgsift.middleware.gateway.sync_plan import SyncPlan, next_prefix, plan_sync
from pgsift.middleware.graphql.live_schema import LiveSchema
from pgsift.middleware.graphql.strawberry_mount import mount_strawberry
from pgsift.middleware.settings import Settings
from pgsift.middleware.wiring import Wiring

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


class GraphQLView(GraphQL[dict[str, Any], None]):
    """strawberry's ASGI view with pgsift's context: service, claims, send budget; client
    JSON (bodies, GET variables, websocket frames) read through `client_json`."""

    graphql_transport_ws_handler_class = ExpiringHandler

    def __init__(
        self,
        service: SyncService,
        authenticator: Authenticator,
        settings: Settings,
        schema: Schema | None = None,
    ) -> None:
        super().__init__(
            schema
            or build_schema(
                max_tokens=settings.gateway_max_graphql_tokens,
                max_keys=settings.loader_max_keys,
            ),
            graphql_ide="graphiql" if settings.gateway_graphiql else None,
            # The legacy `graphql-ws` subprotocol is left out: only this one makes
            # `connection_init` (and so authentication) mandatory before `subscribe`.
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            connection_init_wait_timeout=timedelta(
                seconds=settings.gateway_connection_init_timeout_s
            ),
            max_subscriptions_per_connection=settings.gateway_max_subscriptions_per_connection,
        )
        self.service = service
        self.authenticator = authenticator
        self.max_tokens = settings.gateway_max_graphql_tokens
        self.json_limits = JsonLimits.from_settings(settings)

    def decode_json(self, data: str | bytes) -> object:
        """A websocket frame's JSON (strawberry reads frames with this)."""
        return client_json.load(data, self.json_limits, "the message")

    def parse_json(self, data: str | bytes) -> Any:
        """An HTTP body's or GET `variables`' JSON; a 400 saying what is wrong with it."""
        try:
            return client_json.load(data, self.json_limits, "the request's JSON")
        except ClientJSONError as exc:
            raise HTTPException(400, str(exc)) from exc

    async def execute_single(
        self,
        request: Request,
        request_adapter: Any,
        sub_response: Response,
        context: dict[str, Any],
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        """A subscription over HTTP is answered with a 400 saying to use a websocket:
        executed as a query, it could only end in an internal error."""
        if is_subscription(request_data.query, request_data.operation_name, self.max_tokens):
            sub_response.status_code = 400
            return ExecutionResult(data=None, errors=[subscription_over_http()])
        return await super().execute_single(
            request, request_adapter, sub_response, context, root_value, request_data
        )

    async def get_context(self, request: Any, response: Any) -> dict[str, Any]:
        claims: dict[str, Any] | None = None
        if not isinstance(request, WebSocket):
            try:
                claims = self.authenticator.claims_from_authorization(
                    request.headers.get("authorization")
                )
            except AuthError:
                claims = None
        return {
            "request": request,
            "service": self.service,
            "claims": claims,
            "budget": self.service.budget(),
        }

    async def on_ws_connect(self, context: dict[str, Any]) -> UnsetType | dict[str, object] | None:
        params = context.get("connection_params") or {}
        header = params.get("authorization") or params.get("Authorization")
        if header is None:
            header = context["request"].headers.get("authorization")
        try:
            claims = self.authenticator.claims_from_authorization(
                header if isinstance(header, str) else None
            )
        except AuthError as exc:
            raise ConnectionRejectionError({"message": str(exc)}) from exc
        context["claims"] = claims
        context["exp"] = self.authenticator.expires_at(claims)
        try:
            context["client"] = client = self.service.bind_client(params.get("clientId"), claims)
        except MutationError as exc:
            raise ConnectionRejectionError({"message": str(exc)}) from exc
        acknowledged = await self.service.acknowledge(client)
        return await super().on_ws_connect(context) if acknowledged is None else acknowledged


class CountConnections:
    """ASGI wrapper keeping the open-websocket gauge."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        self.metrics.connections.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            self.metrics.connections.dec()


def create_app(
    settings: Settings,
    *,
    loader: FeedObserver | None = None,
    routes: Sequence[BaseRoute] = (),
    graphene_schema: Any = None,
    strawberry_schema: Schema | None = None,
    batch_loader: bool = True,
    bootstrap: bool = True,
    wiring: Wiring | None = None,
) -> Starlette:
    """The gateway app; `loader` is told about every feed entry, `routes` are mounted too.

    Its parts share one `Wiring` (`wiring`, or one made from `settings`).

    /graphql serves pgsift's schema: the generic fields (`sync`, `rows`, `mutate`) and
    the typed ones of every readable table, built from the catalog at start and rebuilt
    when it changes (`pgsift.middleware.graphql.live_schema`). With `strawberry_schema`
    (an app's strawberry schema) or `graphene_schema` (a graphene 3 one), pgsift's
    fields are mounted into that schema and /graphql serves the whole of it: queries and
    mutations over HTTP, everything over graphql-transport-ws
    (`graphql.strawberry_mount`, `graphql.graphene_mount`). GraphiQL answers a browser's
    GET /graphql unless `gateway_graphiql` is off.
    `batch_loader` adds `POST /v1/rows` (a `BatchLoader` kept fresh by the
    tailer), `bootstrap` adds `GET /v1/bootstrap` (dumps, or live snapshots).
    With `[mutators]` configured (`settings.mutators`), `POST /v1/mutate` and the
    GraphQL `mutate` field run them (`app.state.mutations`, a `MutationRunner`).
    Every HTTP route is behind `BodyLimit` (`gateway_max_body_bytes`).
    """
    authenticator = Authenticator.from_settings(settings)
    metrics = GatewayMetrics()
    wired = wiring if wiring is not None else Wiring.from_settings(settings)
    service = SyncService(wired, loader=loader, metrics=metrics)
    if graphene_schema is not None and strawberry_schema is not None:
        raise ConfigError("create_app takes a graphene_schema or a strawberry_schema, not both")
    view: ASGIApp
    http_view: ASGIApp
    live: LiveSchema
    tables = settings.capture_tables or None
    if graphene_schema is not None:
        from pgsift.middleware.graphql.graphene_mount import GrapheneGateway

        gateway = GrapheneGateway(graphene_schema, service, authenticator, settings)
        view, http_view = gateway.websocket, gateway.http
        live = LiveSchema(gateway.build, gateway.serve, policies=wired.policies, tables=tables)
    else:
        strawberry_view = GraphQLView(
            service, authenticator, settings, mount_strawberry(strawberry_schema, None, settings)
        )

        def serve_strawberry(schema: Schema) -> None:
            strawberry_view.schema = schema

        view = http_view = strawberry_view
        live = LiveSchema(
            lambda model: mount_strawberry(strawberry_schema, model, settings),
            serve_strawberry,
            policies=wired.policies,
            tables=tables,
        )
    graphql = CountConnections(view, metrics)
    mutations = None
    if settings.mutators:
        from pgsift.middleware.mutations.registry import load_mutators
        from pgsift.middleware.mutations.runner import MutationRunner

        mutations = MutationRunner(settings, load_mutators(settings.mutators))

    extra: list[BaseRoute] = list(routes)
    if batch_loader:
        from pgsift.middleware.loader import rows_route

        extra.append(rows_route(JsonLimits.from_settings(settings)))
    if bootstrap:
        from pgsift.middleware.bootstrap.http import BootstrapService, bootstrap_route

        # Its live snapshots share the sessions' pool: one bound on snapshot backends.
        extra.append(bootstrap_route(
            BootstrapService(wired, connections=service.connections, metrics=metrics)
        ))
    if mutations is not None:
        from pgsift.middleware.mutations.http import mutate_route

        extra.append(mutate_route(JsonLimits.from_settings(settings)))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await service.start()
        rows_loader = None
        try:
            if service.catalog is not None:
                live.start(service.catalog)
            service.catalog_listeners.append(live.use_catalog)
            if mutations is not None:
                await mutations.start()
            if batch_loader:
                from pgsift.middleware.loader import BatchLoader

                rows_loader = await BatchLoader.from_settings(
                    settings, catalog=service.catalog, policies=wired.policies
                )
                app.state.loader = rows_loader
                service.catalog_listeners.append(rows_loader.use_catalog)
                service.tailer.loader = rows_loader
                rows_loader.freshness = service.freshness
            yield
        finally:
            if rows_loader is not None:
                service.tailer.loader = loader
                await rows_loader.close()
            if mutations is not None:
                await mutations.stop()
            await service.stop()
            if wiring is None:
                wired.close()

    async def metrics_endpoint(request: Request) -> Response:
        return await metrics.endpoint(request)

    app = Starlette(
        routes=[
            Route("/graphql", http_view),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz),
            Route("/metrics", metrics_endpoint),
            *extra,
        ],
        lifespan=lifespan,
        middleware=[Middleware(BodyLimit, max_bytes=settings.gateway_max_body_bytes)],
    )
    app.state.service = service
    app.state.health_checks = gateway_checks(service)
    app.state.authenticator = authenticator
    app.state.metrics = metrics
    app.state.settings = settings
    app.state.mutations = mutations
    app.state.live_schema = live
    return app
