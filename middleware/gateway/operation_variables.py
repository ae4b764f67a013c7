"""The variables of a GraphQL operation, for `sync_plan`'s operations compiled once.

An operation whose selection reads no variable (no `@skip(if: $v)` /
`@include(if: $v)`) selects the same fields whatever its variables: it can be
compiled once and only its variables coerced for each subscription. Variables
that are all scalars without defaults (`$query: String!, $params: JSON`, what
the client libraries send) are coerced directly, as graphql-core coerces a
scalar (`parse_value`); anything else goes the general way, which also reports
the errors.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from graphql import (
    BREAK,
    DirectiveNode,
    DocumentNode,
    GraphQLNonNull,
    GraphQLScalarType,
    GraphQLSchema,
    ListValueNode,
    ObjectValueNode,
    Undefined,
    ValueNode,
    VariableDefinitionNode,
    VariableNode,
    Visitor,
    type_from_ast,
    visit,
)

Scalars = tuple[tuple[str, GraphQLScalarType, bool], ...]  # name, type, non-null


def scalar_variables(
    scalars: Scalars | None,
    variables: Mapping[str, Any] | None,
) -> dict[str, Any] | None:
    """The variables coerced as graphql-core coerces scalars (`parse_value`), or None
    when one is not a plain case (missing non-null, unparsable): then the general path
    coerces them, and reports the errors."""
    if scalars is None:
        return None
    given = variables or {}
    coerced: dict[str, Any] = {}
    for name, scalar, non_null in scalars:
        if name not in given:
            if non_null:
                return None
            continue
        value = given[name]
        if value is None:
            if non_null:
                return None
            coerced[name] = None
            continue
        try:
            parsed = scalar.parse_value(value)
        except Exception:
            return None
        if parsed is Undefined:
            return None
        coerced[name] = parsed
    return coerced


def reads_variables_in_directives(document: DocumentNode) -> bool:
    """Whether a directive anywhere in `document` reads a variable (`@include(if: $v)`):
    then the selection depends on the variables, and is compiled for each."""
    found = False

    class Finder(Visitor):
        def enter_directive(self, node: DirectiveNode, *_args: Any) -> Any:
            nonlocal found
            for argument in node.arguments or ():
                if _has_variable(argument.value):
                    found = True
                    return BREAK
            return None

    visit(document, Finder())
    return found


def _has_variable(value: ValueNode) -> bool:
    if isinstance(value, VariableNode):
        return True
    if isinstance(value, ListValueNode):
        return any(_has_variable(v) for v in value.values)
    if isinstance(value, ObjectValueNode):
        return any(_has_variable(f.value) for f in value.fields)
    return False


def scalar_definitions(
    schema: GraphQLSchema, definitions: Collection[VariableDefinitionNode]
) -> Scalars | None:
    """The variables as (name, scalar, non-null) when every one is a scalar without a
    default value (the common case, coerced directly); else None."""
    scalars = []
    for definition in definitions:
        if definition.default_value is not None:
            return None
        kind = type_from_ast(schema, definition.type)
        non_null = isinstance(kind, GraphQLNonNull)
        scalar = kind.of_type if isinstance(kind, GraphQLNonNull) else kind
        if not isinstance(scalar, GraphQLScalarType):
            return None
        scalars.append((definition.variable.name.value, scalar, non_null))
    return tuple(scalars)
