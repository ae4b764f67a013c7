"""Which row fields a typed operation selects: the columns it syncs or reads.

A typed live field syncs the fields selected under `changes { row { … } }`, a
typed read the fields selected on its rows. They are collected as GraphQL
executes them (graphql-core's `collect_sub_fields`): through fragments and
inline fragments, minding `@skip` / `@include`, so what is synced is exactly
what the response can show. `__typename` is no column; aliases name the same
field twice, which is one column.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from graphql import (
    FieldNode,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLResolveInfo,
    get_named_type,
)
from graphql.execution.collect_fields import collect_sub_fields


def raw_info(info: Any) -> GraphQLResolveInfo:
    """graphql-core's resolve info, from strawberry's `Info` (which wraps it) or graphene's."""
    raw = getattr(info, "_raw_info", info)
    if not isinstance(raw, GraphQLResolveInfo):
        raise TypeError(f"not a GraphQL resolve info: {type(info).__name__}")
    return raw


def selected_fields(info: Any, path: Sequence[str] = ()) -> list[str]:
    """The fields selected at `path` below the resolved field (`("changes", "row")`), in
    first-selected order, `__typename` left out; [] when nothing is selected there."""
    raw = raw_info(info)
    nodes: list[FieldNode] = list(raw.field_nodes)
    parent: GraphQLNamedType | None = get_named_type(raw.return_type)
    for step in (*path, None):
        if not isinstance(parent, GraphQLObjectType):
            return []
        collected = collect_sub_fields(
            raw.schema, raw.fragments, raw.variable_values, parent, nodes
        )
        names = [node.name.value for group in collected.values() for node in group]
        if step is None:
            return list(dict.fromkeys(name for name in names if name != "__typename"))
        nodes = [node for group in collected.values() for node in group
                 if node.name.value == step]  # fmt: skip
        if not nodes:
            return []
        parent = get_named_type(parent.fields[step].type)
    return []
