"""The resolvers of the typed root fields, for strawberry and graphene alike.

Per readable table:

* `Subscription.<table>(where, cursor)`: the `where` input compiles to SQL text
  (`compile_filter`) selecting the fields under `changes { row { … } }` (the
  primary key always), and that text goes to `SyncService.sync` like any
  client's `sync` query: the same parsing, policies, routing, snapshot or dump,
  catch-up and limits. Each message becomes a typed record.
* `Query.<table>(where, limit)`: the same compiled shape, read once from a
  snapshot (`reads.read_rows`), bounded by `gateway_max_query_rows`.
* `Query.<table>ByKey(keys)`: through the batch loader (`gateway.rows.load_rows`),
  as `Query.rows` and `POST /v1/rows`.

An error a client can cause about its `where` names the place in the input
(`where._or[1].status._eq: ...`), not a position in SQL it never wrote.
Resolvers read `service`, `claims` and `budget` from the operation's context,
as the generic fields do; `plain` turns the library's input values into plain
data (`strawberry_types.plain_input`, `graphene_types.plain_input`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from graphql import GraphQLError

from pgsift.middleware.gateway.rows import load_rows
from pgsift.middleware.gateway.schema import client_errors, graphql_error
from pgsift.middleware.gateway.service import SyncService
from pgsift.middleware.graphql.reads import bounded, read_rows
from pgsift.middleware.graphql.records import Record, TypedRecords
from pgsift.middleware.graphql.selection import selected_fields
from pgsift.subscriptions.errors import PgsiftError, QueryError
from pgsift.subscriptions.filters import FilterQuery, compile_filter
from pgsift.subscriptions.typemodel import Field, TypedTable, TypeModel

PlainInput = Callable[[Any], Any]
ROW_PATH = ("changes", "row")


def _claims(context: Mapping[str, Any]) -> dict[str, Any]:
    claims = context.get("claims")
    if claims is None:
        raise GraphQLError("not authenticated", extensions={"code": "AuthError"})
    return dict(claims)


def _compiled(table: TypedTable, where: Any, select: list[str], plain: PlainInput) -> FilterQuery:
    try:
        return compile_filter(table, plain(where), select=select)
    except PgsiftError as exc:
        raise graphql_error(exc) from exc


def _request(
    info: Any, typed: TypedTable, where: Any, plain: PlainInput, path: tuple[str, ...] = ()
) -> tuple[SyncService, dict[str, Any], FilterQuery]:
    """A typed field's request: the service, the caller's claims (checked first) and
    `where` compiled for the columns selected at `path`."""
    context = info.context
    claims = _claims(context)
    return context["service"], claims, _compiled(typed, where, selected_fields(info, path), plain)


def _refused(query: FilterQuery, exc: PgsiftError) -> GraphQLError:
    """A client's error about the compiled query, told about its `where` input."""
    if isinstance(exc, QueryError):
        exc = query.refusal(exc)
    return graphql_error(exc)


class TypedResolvers:
    """`resolvers(field)` for the typed root fields of `model` (see the module's doc)."""

    def __init__(self, model: TypeModel, plain: PlainInput, *, max_query_rows: int) -> None:
        self.model = model
        self.plain = plain
        self.max_query_rows = max_query_rows
        self._by_field: dict[str, tuple[str, TypedTable]] = {}
        for typed in model.tables.values():
            names = typed.names
            self._by_field[f"Subscription.{names.field}"] = ("live", typed)
            self._by_field[f"Query.{names.field}"] = ("read", typed)
            self._by_field[f"Query.{names.by_key}"] = ("by_key", typed)

    def for_root(self, root: str) -> Callable[[Field], Callable[..., Any]]:
        """The resolvers of root type `root` (`Query`, `Subscription`)."""

        def resolvers(field: Field) -> Callable[..., Any]:
            kind, typed = self._by_field[f"{root}.{field.name}"]
            if kind == "live":
                return self._live(typed)
            if kind == "read":
                return self._read(typed)
            return self._by_key(typed)

        return resolvers

    def _live(self, typed: TypedTable) -> Callable[..., AsyncIterator[Record]]:
        records = TypedRecords(typed)
        plain = self.plain

        async def live(
            root: Any, info: Any, where: Any = None, cursor: str | None = None
        ) -> AsyncIterator[Record]:
            service, claims, query = _request(info, typed, where, plain, ROW_PATH)
            try:
                messages = await service.sync(
                    query.sql, list(query.params), cursor, claims, info.context["budget"]
                )
            except PgsiftError as exc:
                raise _refused(query, exc) from exc
            async for message in client_errors(messages):
                yield records.message(message)

        return live

    def _read(self, typed: TypedTable) -> Callable[..., Any]:
        records = TypedRecords(typed)
        plain = self.plain
        bound = self.max_query_rows

        async def read(
            root: Any, info: Any, where: Any = None, limit: int | None = None
        ) -> list[Record]:
            service, claims, query = _request(info, typed, where, plain)
            try:
                count = bounded(limit, bound)
                shape = await service.shape(query.sql, list(query.params), claims)
                rows = await read_rows(service, shape, count)
            except PgsiftError as exc:
                raise _refused(query, exc) from exc
            return [records.row(row) for row in rows]

        return read

    def _by_key(self, typed: TypedTable) -> Callable[..., Any]:
        records = TypedRecords(typed)
        plain = self.plain
        columns = typed.names.columns  # field -> column
        primary_key = typed.primary_key

        async def by_key(root: Any, info: Any, keys: Any) -> list[Record | None]:
            loader_keys: list[Any] = []
            for key in plain(keys):
                by_column = {columns[field]: value for field, value in key.items()}
                # The loader takes a single-column key as its value, a composite as an object.
                loader_keys.append(
                    by_column[primary_key[0]] if len(primary_key) == 1 else by_column
                )
            rows = await load_rows(info.context, typed.table, loader_keys, None)
            return [None if row is None else records.row(row) for row in rows]

        return by_key

