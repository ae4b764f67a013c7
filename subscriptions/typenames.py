"""Postgres type names as pgsift spells them: `int4`, `timestamptz`, `int4[]`, an enum's name.

Names are pg_type's (`int4`, `timestamptz`); arrays are `<element>[]`. SQL
spellings (`integer`, `timestamp with time zone`) and pg_type's internal array
names (`_int4`) are accepted as aliases of the builtin types pgsift decodes.
Any other name (an enum, a domain's base pgsift does not know) is kept as given.
"""

from __future__ import annotations

# Every builtin type whose values pgsift decodes, encodes and compares.
KNOWN_TYPES = frozenset({
    "int2", "int4", "int8", "oid", "numeric", "float4", "float8", "bool",
    "text", "varchar", "bpchar", "name", "uuid", "date", "time", "timetz",
    "timestamp", "timestamptz", "interval", "json", "jsonb", "bytea",
})  # fmt: skip

ALIASES = {
    "smallint": "int2",
    "integer": "int4",
    "int": "int4",
    "bigint": "int8",
    "decimal": "numeric",
    "real": "float4",
    "double precision": "float8",
    "boolean": "bool",
    "character varying": "varchar",
    "character": "bpchar",
    "char": "bpchar",
    "time without time zone": "time",
    "time with time zone": "timetz",
    "timestamp without time zone": "timestamp",
    "timestamp with time zone": "timestamptz",
}


def canonical(type_name: str) -> str:
    """Builtin names in their pg_type spelling; other names (enums) kept as given."""
    name = type_name.strip()
    if name.endswith("[]"):
        return canonical(name[:-2]) + "[]"
    lowered = name.lower()
    if lowered in KNOWN_TYPES:
        return lowered
    if lowered in ALIASES:
        return ALIASES[lowered]
    # `_int4` is pg_type's name of int4[]; only builtins, as `_x` may be a user type.
    if lowered.startswith("_") and lowered[1:] in KNOWN_TYPES:
        return lowered[1:] + "[]"
    return name


def element_type(type_name: str) -> str:
    """`int4[]` -> `int4` (also `_int4`); raises ValueError for a non-array type."""
    name = canonical(type_name)
    if not name.endswith("[]"):
        raise ValueError(f"{type_name!r} is not an array type")
    return name[:-2]


def is_known_type(type_name: str) -> bool:
    """True for the builtin types (and arrays of them) pgsift decodes."""
    name = canonical(type_name)
    if name.endswith("[]"):
        return element_type(name) in KNOWN_TYPES
    return name in KNOWN_TYPES
