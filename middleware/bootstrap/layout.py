"""`ShapeLayout`: what a bootstrap says about a shape's rows before the first one.

Its columns and their types (the header of a bootstrap response and of a dump),
and a hash of the table's definition and of the wire form: a dump of an older
schema, or with values in an older wire form, is not served.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from pgsift.subscriptions.catalog import Catalog
from pgsift.subscriptions.shape import Shape
from pgsift.subscriptions.wire import WIRE_VERSION


@dataclass(frozen=True, slots=True)
class ShapeLayout:
    """What a dump header says about a shape: columns, their types, a schema hash."""

    shape_key: str
    table: str
    columns: tuple[str, ...]
    types: tuple[str, ...]
    schema_hash: str

    @classmethod
    def of(cls, shape: Shape, catalog: Catalog) -> ShapeLayout:
        table = catalog.table(shape.table)
        columns = tuple(shape.columns)
        types = tuple(table.columns[c] for c in columns)
        # The whole table's definition and the wire form of its values: a dump is
        # stale after any column change, and when the wire form changed.
        definition = [
            table.name, sorted(table.columns.items()), list(table.primary_key), WIRE_VERSION
        ]
        schema_hash = hashlib.blake2b(json.dumps(definition).encode(), digest_size=8).hexdigest()
        return ShapeLayout(shape.key, table.name, columns, types, schema_hash)
