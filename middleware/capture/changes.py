"""Decoded pgoutput row messages -> `Change` values with typed columns (pure).

pgoutput names a relation once (a Relation message) and then refers to it by
OID, so a `RelationCache` keeps the latest Relation per OID together with
what only the catalog knows: the type name behind each type OID (enums,
arrays of enums, domains) and the table's primary key. Capture supplies both
as callables, looked up once per Relation message.

Row images arrive as text (capture never asks for binary mode). An unchanged
TOASTed value (`u`) in a new row is copied from the old row; REPLICA IDENTITY
FULL guarantees the old row has it. Without an old value a `CaptureError`
names the table and column: silently dropping the column would hand
subscribers a wrong row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pgsift.middleware.capture.pgoutput import (
    BINARY,
    NULL,
    TEXT,
    UNCHANGED_TOAST,
    Delete,
    Insert,
    Relation,
    Truncate,
    TupleData,
    Update,
)
from pgsift.middleware.errors import CaptureError
from pgsift.subscriptions.change import Change, Row
from pgsift.subscriptions.pgtext import Parser, as_text, parse_json, parser_for

# Builtin type OIDs (stable across Postgres versions) -> pgsift type names.
BUILTIN_TYPES: dict[int, str] = {
    16: "bool",
    17: "bytea",
    18: "char",
    19: "name",
    20: "int8",
    21: "int2",
    23: "int4",
    25: "text",
    26: "oid",
    114: "json",
    700: "float4",
    701: "float8",
    1042: "bpchar",
    1043: "varchar",
    1082: "date",
    1083: "time",
    1114: "timestamp",
    1184: "timestamptz",
    1186: "interval",
    1266: "timetz",
    1700: "numeric",
    2950: "uuid",
    3802: "jsonb",
    199: "json[]",
    1000: "bool[]",
    1001: "bytea[]",
    1002: "char[]",
    1003: "name[]",
    1005: "int2[]",
    1007: "int4[]",
    1009: "text[]",
    1014: "bpchar[]",
    1015: "varchar[]",
    1016: "int8[]",
    1021: "float4[]",
    1022: "float8[]",
    1028: "oid[]",
    1115: "timestamp[]",
    1182: "date[]",
    1183: "time[]",
    1185: "timestamptz[]",
    1187: "interval[]",
    1231: "numeric[]",
    1270: "timetz[]",
    2951: "uuid[]",
    3807: "jsonb[]",
}


BytesParser = Callable[[bytes], Any]


class TypeResolver(Protocol):
    """Type OID -> pgsift type name (`issue_status`, `issue_status[]`, a domain's base)."""

    def __call__(self, type_oid: int, /) -> str: ...


class PrimaryKeyLookup(Protocol):
    """Schema-qualified table -> its primary key columns in key order; empty when none."""

    def __call__(self, table: str, /) -> Sequence[str]: ...


@dataclass(frozen=True, slots=True)
class TableColumn:
    name: str
    type_name: str
    type_oid: int
    type_modifier: int
    in_identity: bool  # pgoutput's key flag: the replica identity, not the primary key


@dataclass(frozen=True, slots=True)
class TableSchema:
    """A published table as capture sees it now.

    `key` is the primary key, or every column for a table without one.
    """

    oid: int
    table: str
    columns: tuple[TableColumn, ...]
    key: tuple[str, ...]
    has_primary_key: bool
    replica_identity: str

    @property
    def fingerprint(self) -> str:
        """Stable hash of column names, types and key: equal exactly when clients see
        the same table shape (type modifiers such as varchar lengths are left out)."""
        text = ";".join(f"{c.name}:{c.type_name}" for c in self.columns)
        text += "|" + ",".join(self.key)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class SchemaUpdate:
    """What a Relation message did to the cache."""

    schema: TableSchema
    previous: TableSchema | None

    @property
    def changed(self) -> bool:
        """True when a table seen before now has other columns, types or key."""
        return self.previous is not None and self.previous.fingerprint != self.schema.fingerprint


@dataclass(frozen=True, slots=True)
class _Entry:
    schema: TableSchema
    names: tuple[str, ...]
    parsers: tuple[Parser, ...] = field(repr=False)
    from_bytes: tuple[BytesParser, ...] = field(repr=False)  # the same, from the wire bytes
    identity: tuple[str, ...]
    single_key: str | None  # the key column when the key has one


class RelationCache:
    """The latest Relation per OID, with type names and primary key resolved."""

    def __init__(self, type_name: TypeResolver, primary_key: PrimaryKeyLookup) -> None:
        self._type_name = type_name
        self._primary_key = primary_key
        self._entries: dict[int, _Entry] = {}

    def update(self, relation: Relation) -> SchemaUpdate:
        """Cache `relation` (replacing an earlier one of the same OID)."""
        columns = tuple(
            TableColumn(
                name=c.name,
                type_name=BUILTIN_TYPES.get(c.type_oid) or self._type_name(c.type_oid),
                type_oid=c.type_oid,
                type_modifier=c.type_modifier,
                in_identity=c.is_key,
            )
            for c in relation.columns
        )
        names = tuple(c.name for c in columns)
        primary_key = tuple(self._primary_key(relation.table))
        # The catalog is read now, the Relation describes the table as of its
        # WAL position: a key naming columns the Relation lacks is stale.
        has_primary_key = bool(primary_key) and set(primary_key) <= set(names)
        schema = TableSchema(
            oid=relation.oid,
            table=relation.table,
            columns=columns,
            key=primary_key if has_primary_key else names,
            has_primary_key=has_primary_key,
            replica_identity=relation.replica_identity,
        )
        previous = self._entries.get(relation.oid)
        self._entries[relation.oid] = _Entry(
            schema=schema,
            names=names,
            parsers=tuple(parser_for(c.type_name) for c in columns),
            from_bytes=tuple(_from_bytes(parser_for(c.type_name)) for c in columns),
            identity=tuple(c.name for c in columns if c.in_identity),
            single_key=schema.key[0] if len(schema.key) == 1 else None,
        )
        return SchemaUpdate(schema, previous.schema if previous else None)

    def get(self, oid: int) -> TableSchema:
        return self._entry(oid).schema

    def __contains__(self, oid: object) -> bool:
        return oid in self._entries

    def _entry(self, oid: int) -> _Entry:
        entry = self._entries.get(oid)
        if entry is None:
            raise CaptureError(f"change for relation OID {oid} before its Relation message")
        return entry

    def to_changes(self, message: Insert | Update | Delete | Truncate) -> list[Change]:
        """The changes one row message (or a TRUNCATE of several tables) stands for."""
        if isinstance(message, Truncate):
            return [
                Change(self._entry(oid).schema.table, "truncate", None, None, None)
                for oid in message.relation_oids
            ]
        return [self.to_change(message)]

    def to_change(self, message: Insert | Update | Delete) -> Change:
        """One Insert / Update / Delete as a typed `Change`."""
        entry = self._entry(message.relation_oid)
        table = entry.schema.table
        if type(message) is Insert:
            new = _row(entry, message.new)
            if UNCHANGED_TOAST in message.new.kinds:
                _fill_unchanged(table, new, None)
            return Change(table, "insert", _key(entry, new), new, None)
        if type(message) is Update:
            old = None
            if message.old is not None:
                old = _old_row(entry, message.old, key_only=message.old_key_only)
            new = _row(entry, message.new)
            if UNCHANGED_TOAST in message.new.kinds:
                _fill_unchanged(table, new, old)
            return Change(table, "update", _key(entry, new), new, old)
        assert type(message) is Delete
        old = _old_row(entry, message.old, key_only=message.old_key_only)
        return Change(table, "delete", _key(entry, old), None, old)


class _Unchanged:
    """Placeholder for an unchanged TOASTed value until it is filled from the old row."""

    def __repr__(self) -> str:
        return "<unchanged TOAST>"


_UNCHANGED: Any = _Unchanged()


def _row(entry: _Entry, data: TupleData) -> Row:
    kinds = data.kinds
    if len(kinds) != len(entry.names):
        raise CaptureError(
            f"{entry.schema.table}: row has {len(kinds)} columns, "
            f"its Relation message {len(entry.names)}"
        )
    if UNCHANGED_TOAST not in kinds and BINARY not in kinds:
        # The common row: text values and NULLs only (a NULL's value is None).
        columns = zip(entry.names, entry.from_bytes, data.values, strict=False)  # checked above
        try:
            return {name: None if raw is None else parse(raw) for name, parse, raw in columns}
        except ValueError:  # UnicodeDecodeError and UnrepresentableValue too
            pass  # the loop below names the column
    row: Row = {}
    for name, parse, kind, raw in zip(
        entry.names, entry.parsers, kinds, data.values, strict=True
    ):
        if kind == TEXT and raw is not None:
            try:
                row[name] = parse(raw.decode())
            except ValueError as exc:
                raise CaptureError(
                    f"{entry.schema.table}.{name}: cannot decode {raw[:200]!r}: {exc}"
                ) from None
        elif kind == NULL:
            row[name] = None
        elif kind == UNCHANGED_TOAST:
            row[name] = _UNCHANGED
        else:
            raise CaptureError(f"{entry.schema.table}.{name}: binary values are not supported")
    return row


def _old_row(entry: _Entry, data: TupleData, *, key_only: bool) -> Row:
    old = _row(entry, data)
    if key_only:
        old = {name: old[name] for name in entry.identity}
    if UNCHANGED_TOAST in data.kinds:
        _check_no_unchanged(entry.schema.table, old)
    return old


def _from_bytes(parse: Parser) -> BytesParser:
    """`parse` applied to a value's wire bytes (UTF-8 text), skipping the decode
    step where Python's own parser takes bytes as they are."""
    if parse is int or parse is float:
        return parse  # int(b"42"), float(b"-Infinity")
    if parse is as_text:
        return _utf8
    if parse is parse_json:
        return parse  # json.loads reads UTF-8 bytes itself
    return lambda raw: parse(raw.decode())


def _utf8(raw: bytes) -> str:
    return raw.decode()


def _fill_unchanged(table: str, new: Row, old: Row | None) -> None:
    for name, value in new.items():
        if value is _UNCHANGED:
            if old is None or old.get(name, _UNCHANGED) is _UNCHANGED:
                raise CaptureError(
                    f"{table}.{name}: unchanged TOASTed value and no old row to take it "
                    f"from; set REPLICA IDENTITY FULL on {table}"
                )
            new[name] = old[name]


def _check_no_unchanged(table: str, old: Row) -> None:
    for name, value in old.items():
        if value is _UNCHANGED:
            raise CaptureError(f"{table}.{name}: unchanged TOASTed value in an old row")


def _key(entry: _Entry, row: Row) -> Row:
    try:
        if entry.single_key is not None:  # the common case, without a loop
            return {entry.single_key: row[entry.single_key]}
        return {name: row[name] for name in entry.schema.key}
    except KeyError as exc:
        raise CaptureError(
            f"{entry.schema.table}: the old row lacks key column {exc.args[0]!r}; "
            f"set REPLICA IDENTITY FULL on {entry.schema.table}"
        ) from None
