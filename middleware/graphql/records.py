"""Rows and `sync` messages in wire form -> the values typed fields resolve from.

The typed object types of both libraries read a field's value as an attribute
named like the field (a Python keyword gets a trailing `_`: `class_`);
graphene also reads dict keys of that name. A `Record` is both, so one value
serves strawberry and graphene. Values stay in their wire form, which the
schema's scalars pass on (`pgsift.middleware.graphql.scalars`).
"""

from __future__ import annotations

import keyword
from collections.abc import Mapping
from typing import Any

from pgsift.middleware.gateway.messages import SyncMessage, WireChange
from pgsift.subscriptions.typemodel import TypedTable


class Record(dict[str, Any]):
    """A dict whose keys are also its attributes (what GraphQL's default resolvers read)."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def attribute(field: str) -> str:
    """The attribute a field's value is read from (both builders name them so)."""
    return f"{field}_" if keyword.iskeyword(field) else field


class TypedRecords:
    """Wire rows and messages of one table as records of its typed schema."""

    def __init__(self, table: TypedTable) -> None:
        self.table = table
        self._attributes = {
            column: attribute(field) for column, field in table.names.fields.items()
        }

    def row(self, row: Mapping[str, Any]) -> Record:
        """A wire row keyed by column -> a record keyed by field (unreadable columns dropped)."""
        names = self._attributes
        return Record({names[c]: value for c, value in row.items() if c in names})

    def change(self, change: WireChange) -> Record:
        return Record(
            op=change.op,
            key=self.row(change.key),
            row=None if change.row is None else self.row(change.row),
        )

    def message(self, message: SyncMessage) -> Record:
        return Record(
            changes=[self.change(change) for change in message.changes],
            cursor=message.cursor,
            upToDate=message.up_to_date,
            mustRefetch=message.must_refetch,
        )
