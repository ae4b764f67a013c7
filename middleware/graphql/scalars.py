"""How pgsift's custom scalars serialize and parse, for strawberry and graphene alike.

A value leaves as the wire form of its Postgres type (`docs/wire-values.md`):
resolvers hand rows already in that form (`RowWire` encoded them, for `sync`,
the batch loader and snapshots alike), so `serialize` passes them on. A value
arrives as the client wrote it (JSON string, number or boolean) and is left as
it is: `Shape.parse` converts it by the column's type, so a bad value is the
filter's error, naming its path in the input. A literal in the document is
read as its JSON value; a float literal keeps its text, so that `12.50` stays
exact for a numeric column.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from graphql import (
    BooleanValueNode,
    FloatValueNode,
    GraphQLError,
    IntValueNode,
    StringValueNode,
    ValueNode,
)

Json = None | bool | int | float | str | list[Any] | dict[str, Any]


def serializer(wire_type: str) -> Callable[[Any], Json]:
    """The `serialize` of a scalar whose values are of Postgres type `wire_type`: values
    arrive in their wire form (`pgsift.subscriptions.wire.RowWire`) and leave as they are."""

    def serialize(value: Any) -> Json:
        if value is None or isinstance(value, str | int | float | bool | list):
            return cast(Json, value)
        raise GraphQLError(
            f"a {wire_type} value must be in its wire form (RowWire), not a "
            f"{type(value).__name__}"
        )

    return serialize


def parser(name: str) -> Callable[[Any], Any]:
    """The `parse_value` of scalar `name`: a JSON string, number or boolean, unchanged."""

    def parse_value(value: Any) -> Any:
        if isinstance(value, str | int | float | bool):
            return value
        raise GraphQLError(f"{name} takes a string or a number, not {type(value).__name__}")

    return parse_value


def literal_parser(name: str) -> Callable[..., Any]:
    """The `parse_literal` of scalar `name` (graphene passes the variables too)."""

    def parse_literal(node: ValueNode, _variables: Any = None) -> Any:
        if isinstance(node, StringValueNode | FloatValueNode):
            return node.value
        if isinstance(node, IntValueNode):
            return int(node.value)
        if isinstance(node, BooleanValueNode):
            return node.value
        raise GraphQLError(f"{name} takes a string or a number", [node])

    return parse_literal
