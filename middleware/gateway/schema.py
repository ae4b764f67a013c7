"""The strawberry schema of the gateway: `Subscription.sync`, `Query.rows`, `Mutation.mutate`.

The websocket context carries the connection's verified claims and send budget
(set by `GraphQLView.on_ws_connect`); errors a client can cause (a bad query, a
forbidden column, a bad cursor) become GraphQL errors of that one operation,
with `extensions.position/line/column` for query errors. Other exceptions are
masked (`pgsift.middleware.gateway.error_masking`), documents are parsed with a
token limit (`build_schema(max_tokens=...)`, `gateway_max_graphql_tokens`) and
validated once per distinct text (`documents.DocumentCache`), and
the `rows` fields of one document ask for at most `max_keys` keys together
(`loader_max_keys`, `rows.RowKeysLimit`).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any, cast

import strawberry
from graphql import GraphQLError
from strawberry.extensions import MaskErrors, MaxTokensLimiter, SchemaExtension
from strawberry.scalars import JSON
from strawberry.schema.config import StrawberryConfig
from strawberry.types import Info

from pgsift.middleware.gateway.documents import (
    CachedDocuments,
    DocumentCache,
    strawberry_rules,
)
from pgsift.middleware.gateway.error_masking import MASKED_MESSAGE, should_mask
from pgsift.middleware.gateway.messages import SyncMessage as Message
from pgsift.middleware.gateway.messages import WireChange
from pgsift.middleware.gateway.mutate_schema import MutationStatus, WriteMutation
from pgsift.middleware.gateway.rows import RowKeysLimit, load_rows
from pgsift.middleware.gateway.service import SyncService
from pgsift.middleware.mutations.confirmed import ClientBinding
from pgsift.middleware.mutations.ledger import FAILED_KEPT
from pgsift.middleware.settings import Settings
from pgsift.subscriptions.errors import PgsiftError, QueryError


@strawberry.enum
class Op(enum.Enum):
    INSERT = "INSERT"
    UPDATE = "UPDATE"
    DELETE = "DELETE"


@strawberry.type
class Change:
    op: Op
    key: JSON
    row: JSON | None


@strawberry.type(
    description="A mutation of the connection's client that changed nothing: REFUSED or ERROR."
)
class FailedMutation:
    id: int
    status: MutationStatus
    message: str | None = strawberry.field(default=None, description="Why.")


@strawberry.type(
    description="The outcome of mutation `lastMutationId` of the connection's client, every "
    "earlier one having run (docs/writes.md)."
)
class Confirmed:
    last_mutation_id: int
    status: MutationStatus
    message: str | None = strawberry.field(
        default=None, description="Why: for REFUSED and ERROR."
    )
    failed: list[FailedMutation] = strawberry.field(
        default_factory=list,
        description="The client's recent mutations up to `lastMutationId` that changed "
        f"nothing (the last {FAILED_KEPT}, oldest first): every other one up to it ran.",
    )


@strawberry.type
class SyncMessage:
    changes: list[Change]
    cursor: str | None
    up_to_date: bool
    must_refetch: bool
    types: JSON | None = strawberry.field(
        default=None,
        description="Column -> Postgres type name, on the first message of a subscription "
        "(null on the others): how to decode each value's wire form (docs/wire-values.md).",
    )
    confirmed: Confirmed | None = strawberry.field(
        default=None,
        description="On a connection whose connection_init named a clientId: the client's "
        "mutations that ran in the transaction this message's cursor ends (on the first "
        "message with a cursor after a snapshot: that the snapshot holds); null when it "
        "confirms nothing.",
    )


@strawberry.type
class Query:
    @strawberry.field(  # type: ignore[untyped-decorator]
        description="Rows of `table` by primary key (an object for composite keys), through "
        "the batch loader: one entry per key, in order; null for a key that does not exist "
        "or that the caller's policy does not allow."
    )
    async def rows(
        self,
        info: Info[dict[str, Any], None],
        table: str,
        keys: list[JSON],
        columns: list[str] | None = None,
    ) -> list[JSON | None]:
        return cast("list[JSON | None]", await load_rows(info.context, table, keys, columns))


@strawberry.type
class Subscription:
    @strawberry.subscription(  # type: ignore[untyped-decorator]
        description="The rows of `query` (SQL, $n = params), then every change to them."
    )
    async def sync(
        self,
        info: Info[dict[str, Any], None],
        query: str,
        params: JSON | None = None,
        cursor: str | None = None,
    ) -> AsyncGenerator[SyncMessage, None]:
        messages = await open_for(info.context, query, params, cursor)
        async for message in messages:
            yield to_graphql(message)


async def open_for(
    context: dict[str, Any], query: str, params: Any, cursor: str | None
) -> AsyncIterator[Message]:
    """The messages of `sync` for the websocket connection of `context` (its claims,
    its send budget); also what the transport's compiled `sync` reads."""
    if context["claims"] is None:
        raise GraphQLError("not authenticated", extensions={"code": "AuthError"})
    messages: AsyncIterator[Message] = await open_sync(context, query, params, cursor)
    return messages


async def open_sync(
    context: Mapping[str, Any], query: str, params: Any, cursor: str | None
) -> Any:
    """`service.sync(...)` for the connection of `context` (its service, claims, send
    budget and client), with client-caused errors turned into GraphQL errors, both
    before the first message and while the messages stream (e.g. "busy")."""
    service: SyncService = context["service"]
    client: ClientBinding | None = context.get("client")
    try:
        messages = await service.sync(
            query, params, cursor, context["claims"], context["budget"], client
        )
    except PgsiftError as exc:
        raise graphql_error(exc) from exc
    return client_errors(messages)


def client_errors(messages: AsyncIterator[Message]) -> AsyncIterator[Message]:
    """`messages` with the client-caused errors of the stream turned into GraphQL errors
    (an object, not an async generator: one lives as long as its subscription)."""
    return _ClientErrors(messages)


class _ClientErrors:
    __slots__ = ("_messages",)

    def __init__(self, messages: AsyncIterator[Message]) -> None:
        self._messages = messages

    def __aiter__(self) -> _ClientErrors:
        return self

    async def __anext__(self) -> Message:
        try:
            return await self._messages.__anext__()
        except PgsiftError as exc:
            raise graphql_error(exc) from exc

    async def aclose(self) -> None:
        close = getattr(self._messages, "aclose", None)
        if close is not None:
            await close()


def graphql_error(exc: PgsiftError) -> GraphQLError:
    extensions: dict[str, Any] = {"code": type(exc).__name__}
    if isinstance(exc, QueryError) and exc.position is not None:
        extensions.update(position=exc.position, line=exc.line, column=exc.column)
    return GraphQLError(str(exc), extensions=extensions)


def to_graphql(message: Message) -> SyncMessage:
    return SyncMessage(
        changes=[_change(c) for c in message.changes],
        cursor=message.cursor,
        up_to_date=message.up_to_date,
        must_refetch=message.must_refetch,
        types=cast("JSON | None", None if message.types is None else dict(message.types)),
        confirmed=None if message.confirmed is None else Confirmed(
            last_mutation_id=message.confirmed.last_mutation_id,
            status=MutationStatus(message.confirmed.status),
            message=message.confirmed.message,
            failed=[
                FailedMutation(id=f.id, status=MutationStatus(f.status), message=f.message)
                for f in message.confirmed.failed
            ],
        ),
    )


def _change(change: WireChange) -> Change:
    return Change(op=Op(change.op), key=cast(JSON, change.key), row=cast("JSON | None", change.row))


DEFAULT_MAX_TOKENS = 2000
DEFAULT_MAX_KEYS = Settings.loader_max_keys


class GatewaySchema(strawberry.Schema):
    """The strawberry schema with its cache of parsed and validated documents."""

    documents: DocumentCache


def build_schema(
    *,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    max_keys: int = DEFAULT_MAX_KEYS,
    query: type = Query,
    mutation: type | None = WriteMutation,
    subscription: type = Subscription,
    config: StrawberryConfig | None = None,
    extensions: Sequence[Any] = (),
) -> GatewaySchema:
    """The gateway's schema: errors masked, documents of at most `max_tokens` tokens whose
    `rows` fields ask for at most `max_keys` keys in all. The root types default to
    pgsift's generic ones (`pgsift.middleware.graphql.strawberry_mount` passes them merged
    with the typed fields and an app's own); `extensions` run after pgsift's limits."""

    def mask_errors() -> SchemaExtension:
        return MaskErrors(should_mask_error=should_mask, error_message=MASKED_MESSAGE)

    def limit_tokens() -> SchemaExtension:
        return MaxTokensLimiter(max_token_count=max_tokens)

    def limit_keys() -> SchemaExtension:
        return RowKeysLimit(max_keys=max_keys)

    def cached_documents() -> SchemaExtension:
        return CachedDocuments(built.documents)

    built = GatewaySchema(
        query=query,
        mutation=mutation,
        subscription=subscription,
        config=config,
        extensions=[limit_tokens, cached_documents, limit_keys, *extensions, mask_errors],
    )
    built.documents = DocumentCache(
        built._schema, max_tokens=max_tokens, rules=strawberry_rules()
    )
    return built


schema = build_schema()
