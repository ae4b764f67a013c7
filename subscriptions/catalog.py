"""The tables a subscription may name: columns with their Postgres type names, keys, enums."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pgsift.subscriptions.errors import PgsiftError


class CatalogError(PgsiftError):
    """A catalog description that cannot be used (no primary key, unknown key column)."""


@dataclass(frozen=True, slots=True)
class Table:
    """One table: `name` is schema-qualified, `columns` maps name -> type name, in table order."""

    name: str
    columns: Mapping[str, str]
    primary_key: tuple[str, ...]
    # REPLICA IDENTITY FULL: the feed carries the whole old row of an update or
    # delete, not only its key, so routing knows which shapes held the row.
    replica_identity_full: bool = True
    # Columns declared NOT NULL (directly or by a NOT NULL domain); the typed GraphQL
    # schema makes their fields non-null. Primary-key columns are never NULL either.
    not_null: frozenset[str] = frozenset()

    def nullable(self, column: str) -> bool:
        """False when Postgres guarantees `column` is never NULL (NOT NULL or key)."""
        return column not in self.not_null and column not in self.primary_key

    @property
    def schema(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def relname(self) -> str:
        return self.name.split(".", 1)[1]


@dataclass(frozen=True, slots=True)
class Catalog:
    """Tables by qualified name, and enum types by name with their labels in sort order."""

    tables: Mapping[str, Table]
    enums: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_dict(
        cls,
        tables: Mapping[str, Mapping[str, Any]],
        *,
        enums: Mapping[str, Sequence[str]] | None = None,
    ) -> Catalog:
        """`{"public.issues": {"columns": {"id": "int8"}, "primary_key": ["id"]}}`.

        An unqualified table name means `public`. `enums` maps an enum type name
        (as used in `columns`) to its labels in their declared order.
        `"replica_identity_full": false` marks a table whose feed changes carry
        only the old key (default true). `"not_null": [...]` lists the columns
        declared NOT NULL (default none; key columns are never NULL anyway).
        """
        built: dict[str, Table] = {}
        for raw_name, spec in tables.items():
            name = raw_name if "." in raw_name else f"public.{raw_name}"
            columns = {str(col): str(type_name) for col, type_name in spec["columns"].items()}
            key = tuple(str(col) for col in spec.get("primary_key", ()))
            if not key:
                raise CatalogError(f"table {name} has no primary key")
            missing = [col for col in key if col not in columns]
            if missing:
                raise CatalogError(f"table {name}: primary key column(s) {missing} not in columns")
            full = bool(spec.get("replica_identity_full", True))
            not_null = frozenset(str(col) for col in spec.get("not_null", ()))
            unknown = sorted(not_null - set(columns))
            if unknown:
                raise CatalogError(f"table {name}: not_null column(s) {unknown} not in columns")
            built[name] = Table(name, columns, key, full, not_null)
        labels = {str(k): tuple(str(v) for v in vs) for k, vs in (enums or {}).items()}
        return cls(built, labels)

    def to_dict(self) -> dict[str, Any]:
        """The inverse of `from_dict` (tables only; enums are `self.enums`)."""
        return {
            name: {
                "columns": dict(t.columns),
                "primary_key": list(t.primary_key),
                "replica_identity_full": t.replica_identity_full,
                "not_null": [col for col in t.columns if col in t.not_null],
            }
            for name, t in self.tables.items()
        }

    def table(self, name: str) -> Table:
        """Resolve `issues` or `public.issues`; raises KeyError if unknown."""
        qualified = name if "." in name else f"public.{name}"
        return self.tables[qualified]

    def find(self, name: str) -> Table | None:
        """Like `table`, None if unknown."""
        try:
            return self.table(name)
        except KeyError:
            return None

    def enum_labels(self, type_name: str) -> tuple[str, ...] | None:
        """The labels of an enum type, None if `type_name` is not an enum."""
        return self.enums.get(type_name)
