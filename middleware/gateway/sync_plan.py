"""A `sync` subscription compiled once: its arguments and a serializer of its messages.

A subscription's selection set is fixed when it starts, so the per-message
work of GraphQL execution (walking the selection, resolving every field of
every change, checking types) can be done once: `plan_sync` looks at the
operation (with its variables: `@skip` / `@include`, fragments, aliases) and,
when its only root field is `sync`, compiles a `MessageSerializer` that turns
a `SyncMessage` into exactly the `data` graphql-core would produce for it.
Anything else (a query, another subscription field, variables that do not
coerce) gets None, and the transport executes the operation as usual.

A serializer's `key` is equal for equal selections; the JSON of a message's
payload is cached on the message under it (`payload_json`), so that the
subscriptions of one shape that receive the same message and select the same
fields share one encoding. `next_frame` splices an operation id into it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLField,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    OperationType,
    VariableDefinitionNode,
    get_operation_ast,
)
from graphql.execution.collect_fields import collect_fields, collect_sub_fields
from graphql.execution.values import get_argument_values, get_variable_values

from pgsift.middleware.gateway.json_encoding import one_shot_encoder
from pgsift.middleware.gateway.messages import SyncMessage
from pgsift.middleware.gateway.operation_variables import (
    Scalars,
    reads_variables_in_directives,
    scalar_definitions,
    scalar_variables,
)

SYNC_FIELD = "sync"
# Encodings kept on one message (REFETCH is one object for every subscription).
MAX_PAYLOADS_PER_MESSAGE = 64
# Distinct selections whose serializer is kept for the next subscription to use.
MAX_SERIALIZERS = 256

Getter = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Fields:
    """The fields a serializer knows on one object type: `plain` values by their getter,
    and `nested` objects (getter, their fields, whether it is a list of them)."""

    plain: Mapping[str, Getter]
    nested: Mapping[str, tuple[Getter, Fields, bool]] = field(default_factory=dict)


def _status(outcome: Any) -> str:
    return str(outcome.status.upper())  # the GraphQL enum's value names: OK, REFUSED...


FAILED_FIELDS = Fields({
    "id": attrgetter("id"),
    "status": _status,
    "message": attrgetter("message"),
})
CONFIRMED_FIELDS = Fields({
    "lastMutationId": attrgetter("last_mutation_id"),
    "status": _status,
    "message": attrgetter("message"),
}, {"failed": (attrgetter("failed"), FAILED_FIELDS, True)})
CHANGE_FIELDS = Fields({
    "op": attrgetter("op"),
    "key": attrgetter("key"),
    "row": attrgetter("row"),
})
MESSAGE_FIELDS = Fields({
    "cursor": attrgetter("cursor"),
    "upToDate": attrgetter("up_to_date"),
    "mustRefetch": attrgetter("must_refetch"),
    "types": lambda m: None if m.types is None else dict(m.types),
}, {
    "changes": (attrgetter("changes"), CHANGE_FIELDS, True),
    "confirmed": (attrgetter("confirmed"), CONFIRMED_FIELDS, False),
})


_encode = one_shot_encoder(item_separator=",", key_separator=":")


def encode(value: Any) -> str:
    """JSON as both transports send it (compact, like strawberry's `encode_json`)."""
    return _encode(value)


class MessageSerializer:
    """`SyncMessage` -> the `data` of its `next` payload, for one selection."""

    def __init__(self, response_key: str, fields: list[tuple[str, Getter]], key: Hashable) -> None:
        self.response_key = response_key
        self._fields = fields
        self.key = key

    def data(self, message: SyncMessage) -> dict[str, Any]:
        return {self.response_key: {name: get(message) for name, get in self._fields}}

    def payload_json(self, message: SyncMessage) -> str:
        """The JSON of `{"data": ...}` for `message`, encoded once per selection."""
        cached = message.payloads.get(self.key)
        if cached is None:
            cached = encode({"data": self.data(message)})
            if len(message.payloads) < MAX_PAYLOADS_PER_MESSAGE:
                message.payloads[self.key] = cached
        return cached


def next_prefix(op_id: str) -> str:
    """The start of every `next` message of operation `op_id`: + payload JSON + "}"."""
    return f'{{"id":{encode(op_id)},"type":"next","payload":'


def next_frame(op_id: str, payload_json: str) -> str:
    """The `next` message of operation `op_id` carrying `payload_json`."""
    return next_prefix(op_id) + payload_json + "}"


@dataclass(frozen=True, slots=True)
class SyncPlan:
    """A subscription operation whose only root field is `sync`."""

    response_key: str
    field_nodes: tuple[FieldNode, ...]
    arguments: Mapping[str, Any]  # query, params, cursor: coerced
    serializer: MessageSerializer


_SERIALIZERS: OrderedDict[Hashable, MessageSerializer] = OrderedDict()
# Operations compiled (selection, field, serializer) kept for the next subscription.
MAX_OPERATIONS = 256


@dataclass(frozen=True, slots=True)
class _Compiled:
    """What `plan_sync` makes of an operation whose selection reads no variable: the
    same for every subscription that sends it, with any variables."""

    schema: GraphQLSchema
    document: DocumentNode  # kept: the key holds its id
    definitions: tuple[VariableDefinitionNode, ...]
    scalars: Scalars | None  # the variables, when all are scalars (coerced directly)
    response_key: str
    nodes: tuple[FieldNode, ...]
    field: GraphQLField
    serializer: MessageSerializer


_OPERATIONS: OrderedDict[tuple[int, int, str | None], _Compiled] = OrderedDict()


def plan_sync(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
) -> SyncPlan | None:
    """The plan of a valid `document`'s operation, or None when it is not a lone `sync`.

    Every subscription of a client library sends the same document: unless its
    selection reads variables (`@skip(if: $v)`), the operation is compiled once
    (`_OPERATIONS`), and each subscription only coerces its variables (scalars
    directly) and the field's arguments."""
    key = (id(schema), id(document), operation_name)
    compiled = _OPERATIONS.get(key)
    if compiled is None or compiled.document is not document or compiled.schema is not schema:
        return _plan_anew(schema, document, operation_name, variables, key)
    _OPERATIONS.move_to_end(key)
    coerced = scalar_variables(compiled.scalars, variables)
    if coerced is None:
        general = get_variable_values(schema, compiled.definitions, dict(variables or {}))
        if isinstance(general, list):
            return None  # the execution reports the variables' errors
        coerced = general
    try:
        arguments = get_argument_values(compiled.field, compiled.nodes[0], coerced)
    except GraphQLError:
        return None
    return SyncPlan(compiled.response_key, compiled.nodes, arguments, compiled.serializer)


def _plan_anew(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
    key: tuple[int, int, str | None],
) -> SyncPlan | None:
    operation = get_operation_ast(document, operation_name)
    root = schema.subscription_type
    if operation is None or operation.operation != OperationType.SUBSCRIPTION or root is None:
        return None
    definitions = operation.variable_definitions or ()
    coerced = get_variable_values(schema, definitions, dict(variables or {}))
    if isinstance(coerced, list):
        return None  # the execution reports the variables' errors
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    fields = collect_fields(schema, fragments, coerced, root, operation.selection_set)
    if len(fields) != 1:
        return None
    ((response_key, nodes),) = fields.items()
    field = root.fields.get(nodes[0].name.value)
    if nodes[0].name.value != SYNC_FIELD or field is None:
        return None
    message_type = field.type.of_type if isinstance(field.type, GraphQLNonNull) else None
    if not isinstance(message_type, GraphQLObjectType):
        return None
    try:
        arguments = get_argument_values(field, nodes[0], coerced)
    except GraphQLError:
        return None
    compiled = _object(schema, fragments, coerced, message_type, nodes, MESSAGE_FIELDS)
    if compiled is None:
        return None
    getters, shape = compiled
    serializer = _shared(MessageSerializer(response_key, getters, (response_key, *shape)))
    if not reads_variables_in_directives(document):
        _OPERATIONS[key] = _Compiled(
            schema, document, tuple(definitions), scalar_definitions(schema, definitions),
            response_key, tuple(nodes), field, serializer,
        )
        if len(_OPERATIONS) > MAX_OPERATIONS:
            _OPERATIONS.popitem(last=False)
    return SyncPlan(response_key, tuple(nodes), arguments, serializer)


def _shared(serializer: MessageSerializer) -> MessageSerializer:
    """One serializer per distinct selection, however many subscriptions use it."""
    kept = _SERIALIZERS.get(serializer.key)
    if kept is not None:
        _SERIALIZERS.move_to_end(serializer.key)
        return kept
    _SERIALIZERS[serializer.key] = serializer
    if len(_SERIALIZERS) > MAX_SERIALIZERS:
        _SERIALIZERS.popitem(last=False)
    return serializer


def _object(
    schema: GraphQLSchema,
    fragments: dict[str, FragmentDefinitionNode],
    variables: dict[str, Any],
    object_type: GraphQLObjectType,
    nodes: list[FieldNode],
    known: Fields,
) -> tuple[list[tuple[str, Getter]], tuple[Hashable, ...]] | None:
    """The getters of the fields selected on `object_type` (nested objects compiled
    likewise), and the selection's shape; None when one is not in `known`."""
    fields: list[tuple[str, Getter]] = []
    shape: list[Hashable] = []
    for name, field_nodes in collect_sub_fields(
        schema, fragments, variables, object_type, nodes
    ).items():
        field_name = field_nodes[0].name.value
        if field_name == "__typename":
            fields.append((name, _constant(object_type.name)))
            shape.append((name, field_name, object_type.name))
        elif field_name in known.plain:
            fields.append((name, known.plain[field_name]))
            shape.append((name, field_name))
        elif field_name in known.nested:
            get, inner, many = known.nested[field_name]
            item_type = _object_of(object_type, field_name)
            sub = None if item_type is None else _object(
                schema, fragments, variables, item_type, field_nodes, inner
            )
            if sub is None:
                return None
            sub_fields, sub_shape = sub
            fields.append((name, _many(get, sub_fields) if many else _one(get, sub_fields)))
            shape.append((name, field_name, sub_shape))
        else:
            return None
    return fields, tuple(shape)


def _one(get: Getter, fields: list[tuple[str, Getter]]) -> Getter:
    def one(parent: Any) -> dict[str, Any] | None:
        value = get(parent)
        return None if value is None else {name: g(value) for name, g in fields}

    return one


def _many(get: Getter, fields: list[tuple[str, Getter]]) -> Getter:
    def many(parent: Any) -> list[dict[str, Any]]:
        return [{name: g(item) for name, g in fields} for item in get(parent)]

    return many


def _constant(value: str) -> Getter:
    return lambda _obj: value


def _object_of(message_type: GraphQLObjectType, field_name: str) -> GraphQLObjectType | None:
    """The object type of field `field_name` (`T`, `T!`, `[T!]!`), if it is one."""
    kind: Any = message_type.fields[field_name].type
    while isinstance(kind, GraphQLNonNull) or hasattr(kind, "of_type"):
        kind = kind.of_type
    return kind if isinstance(kind, GraphQLObjectType) else None
