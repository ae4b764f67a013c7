"""`Query.rows`: the batch loader over GraphQL (issue 5's contract).

`rows(table, keys, columns)` answers one entry per key, in order: the row in its
JSON form, or null for a key that does not exist or that the caller's policy
does not allow (indistinguishable on purpose). The same `BatchLoader` as
`POST /v1/rows` serves it, so GraphQL and HTTP callers share batches.

A document may hold many `rows` fields (aliases, fragments), and typed reads by
key (`issuesByKey(keys)`, which use the same loader): `RowKeysLimit` counts the
keys of all of them together before anything is executed, and refuses the
document past `loader_max_keys` (`TooManyKeysError`), as `POST /v1/rows` is
refused for one list of keys.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    ListValueNode,
    NullValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_operation_ast,
)
from strawberry.extensions import SchemaExtension

from pgsift.middleware.loader.http import row_json
from pgsift.middleware.loader.request import check_key_count
from pgsift.middleware.loader.slices import sliced
from pgsift.subscriptions.errors import PgsiftError

FIELD = "rows"
# The typed schema's reads by key are named `<table>ByKey` (pgsift.subscriptions.naming).
BY_KEY_SUFFIX = "ByKey"


async def load_rows(
    context: dict[str, Any], table: str, keys: list[Any], columns: list[str] | None
) -> list[dict[str, Any] | None]:
    """Rows of `table` by key for the caller whose claims are in `context`."""
    claims = context.get("claims")
    if claims is None:
        raise GraphQLError("not authenticated", extensions={"code": "AuthError"})
    loader = getattr(context["request"].app.state, "loader", None)
    if loader is None:
        raise GraphQLError(
            "this gateway runs without the batch loader", extensions={"code": "LoaderError"}
        )
    try:
        rows = await loader.load_many(table, keys, claims, columns)
    except PgsiftError as exc:
        raise _graphql_error(exc) from exc
    wire = loader.row_wire(table)
    return await sliced(rows, lambda _, row: row_json(row, wire))


def requested_keys(
    document: DocumentNode, operation_name: str | None, variables: Mapping[str, Any]
) -> int:
    """How many keys the `rows` and `...ByKey` fields of the operation ask for, together.

    Counted on the document and the variables as sent, before they are
    coerced: a list literal counts its items, a variable the length of its
    list (a single value is a list of one, as GraphQL coerces it). Fields of
    the same response name are merged by GraphQL into one, so they count once.
    """
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return 0
    by_name: dict[str, int] = {}
    for field in _root_fields(document, operation):
        if field.name.value != FIELD and not field.name.value.endswith(BY_KEY_SUFFIX):
            continue
        name = field.alias.value if field.alias else field.name.value
        count = next(
            (_count(arg.value, variables) for arg in field.arguments if arg.name.value == "keys"),
            0,
        )
        by_name[name] = max(by_name.get(name, 0), count)
    return sum(by_name.values())


def row_keys_error(
    document: DocumentNode,
    operation_name: str | None,
    variables: Mapping[str, Any],
    max_keys: int,
) -> GraphQLError | None:
    """The error refusing the operation when its `rows` and `...ByKey` fields ask for more
    than `max_keys` keys together (`requested_keys`); None when it may run. Every
    transport checks this before executing anything: strawberry's (`RowKeysLimit`),
    graphene's over HTTP (`graphql.graphene_http`) and over websockets (`transport_ws`)."""
    try:
        check_key_count(requested_keys(document, operation_name, variables), max_keys)
    except PgsiftError as exc:
        return _graphql_error(exc)
    return None


class RowKeysLimit(SchemaExtension):
    """Refuses a document whose `rows` fields ask for more than `max_keys` keys in all,
    before execution (and so before the variables are coerced)."""

    def __init__(self, *, max_keys: int) -> None:
        self.max_keys = max_keys

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None and context.result is None:
            error = row_keys_error(
                document, context.operation_name, context.variables or {}, self.max_keys
            )
            if error is not None:
                context.result = ExecutionResult(data=None, errors=[error])
        yield


def _root_fields(document: DocumentNode, operation: OperationDefinitionNode) -> Iterator[FieldNode]:
    """The fields of the operation's top level, through fragments (each fragment once)."""
    fragments = {
        definition.name.value: definition.selection_set
        for definition in document.definitions
        if isinstance(definition, FragmentDefinitionNode)
    }
    seen: set[str] = set()
    pending: list[SelectionSetNode] = [operation.selection_set]
    while pending:
        for selection in pending.pop().selections:
            if isinstance(selection, FieldNode):
                yield selection
            elif isinstance(selection, InlineFragmentNode):
                pending.append(selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name not in seen and name in fragments:
                    seen.add(name)
                    pending.append(fragments[name])


def _count(value: Any, variables: Mapping[str, Any]) -> int:
    if isinstance(value, ListValueNode):
        return len(value.values)
    if isinstance(value, NullValueNode):
        return 0
    if isinstance(value, VariableNode):
        sent = variables.get(value.name.value)
        return len(sent) if isinstance(sent, list) else int(sent is not None)
    return 1


def _graphql_error(exc: PgsiftError) -> GraphQLError:
    return GraphQLError(str(exc), extensions={"code": type(exc).__name__})
