"""An `ir` tree -> SQL text: for psycopg 3 (`%s` placeholders) or for display (`$n`).

Every constant is a bound parameter with an explicit cast to the type the
analysis gave it, so Postgres resolves operators exactly as the predicate does;
no client text is ever spliced into the SQL.

The text does not depend on the database's or the session's settings where the
predicate does not: text ordering (`< <= > >=`, so BETWEEN too) is pinned to
`COLLATE "C"` (code-point order, as `matches`), and a timestamp or date compared
with a timestamptz is converted `AT TIME ZONE 'UTC'` (as `matches` reads it),
not in the session TimeZone.
"""

from __future__ import annotations

from collections.abc import Callable

from pgsift.subscriptions import ir
from pgsift.subscriptions.coerce import SCALAR_TYPES
from pgsift.subscriptions.domains import TEXT_TYPES, KeySpec

Placeholder = Callable[[ir.Slot], str]
_ORDERING = frozenset({"<", "<=", ">", ">="})
# The casts `domains` applies before a cross-type time comparison, with the zone pinned.
_ZONED = {
    "timestamp->timestamptz": "{} AT TIME ZONE 'UTC'",
    "date->timestamptz": "{}::timestamp AT TIME ZONE 'UTC'",
}


def quote_identifier(name: str, *, psycopg: bool = False) -> str:
    quoted = '"' + name.replace('"', '""') + '"'
    return quoted.replace("%", "%%") if psycopg else quoted


def quote_table(qualified: str, *, psycopg: bool = False) -> str:
    schema, name = qualified.split(".", 1)
    return f"{quote_identifier(schema, psycopg=psycopg)}.{quote_identifier(name, psycopg=psycopg)}"


def quote_type(type_name: str, *, psycopg: bool = False) -> str:
    """Builtin type names as they are; enum names quoted (`schema.type` split)."""
    if type_name.endswith("[]"):
        return quote_type(type_name[:-2], psycopg=psycopg) + "[]"
    if type_name in SCALAR_TYPES:
        return type_name
    return ".".join(quote_identifier(part, psycopg=psycopg) for part in type_name.split(".", 1))


def psycopg_placeholder(slot: ir.Slot) -> str:
    return f"%s::{quote_type(slot.type, psycopg=True)}"


def display_placeholder(slot: ir.Slot) -> str:
    return f"${slot.index + 1}::{quote_type(slot.type)}"


def render_select(
    table: str,
    columns: tuple[str, ...],
    where: ir.Expr | None,
    *,
    psycopg: bool,
) -> str:
    """`SELECT "a", "b" FROM "s"."t" [WHERE ...]`."""
    placeholder = psycopg_placeholder if psycopg else display_placeholder
    select = ", ".join(quote_identifier(c, psycopg=psycopg) for c in columns)
    sql = f"SELECT {select} FROM {quote_table(table, psycopg=psycopg)}"
    if where is not None:
        sql += " WHERE " + render(where, placeholder, psycopg=psycopg)
    return sql


def render_inner(
    select: ir.Select, keys: tuple[KeySpec, ...], placeholder: Placeholder, psycopg: bool
) -> str:
    """An inner select as `IN` compares it: its columns keyed like `keys`; `SELECT 1` for EXISTS."""
    items = [
        _zoned(quote_identifier(column.name, psycopg=psycopg), key)
        for column, key in zip(select.columns, keys, strict=True)
    ]
    sql = f"SELECT {', '.join(items) or '1'} FROM {quote_table(select.table, psycopg=psycopg)}"
    if select.where is not None:
        sql += " WHERE " + render(select.where, placeholder, psycopg=psycopg)
    return sql


def render_keyed(expr: ir.Expr, key: KeySpec, placeholder: Placeholder, *, psycopg: bool) -> str:
    """An operand as a comparison keyed by `key` reads it (zoned casts made explicit)."""
    text = render(expr, placeholder, psycopg=psycopg)
    return _zoned(text if isinstance(expr, ir.Col | ir.Slot | ir.Call) else f"({text})", key)


def is_zoned(key: KeySpec) -> bool:
    """Whether `key` converts a timestamp or date to timestamptz (in UTC)."""
    return key.kind in _ZONED


def _zoned(text: str, key: KeySpec) -> str:
    zoned = _ZONED.get(key.kind)
    return text if zoned is None else f"({zoned.format(text)})"


def _shifted(placeholder: Placeholder, offset: int) -> Placeholder:
    """The placeholders of an inner select, numbered among the enclosing statement's."""
    if offset == 0:
        return placeholder
    return lambda slot: placeholder(ir.Slot(slot.index + offset, slot.type))


def render(expr: ir.Expr, placeholder: Placeholder, *, psycopg: bool) -> str:
    """The SQL text of `expr` (top level, without outer parentheses)."""

    def sub(child: ir.Expr) -> str:
        text = render(child, placeholder, psycopg=psycopg)
        return text if isinstance(child, ir.Col | ir.Slot | ir.Call) else f"({text})"

    def keyed(child: ir.Expr, key: KeySpec) -> str:
        """An operand as the comparison sees it: zoned casts made explicit."""
        return _zoned(sub(child), key)

    def ordered(child: ir.Expr, key: KeySpec, op: str) -> str:
        """The left operand of a comparison: text ordering pinned to code-point order."""
        text = keyed(child, key)
        if op in _ORDERING and ir.type_of(child) in TEXT_TYPES:
            return f'{text} COLLATE "C"'
        return text

    match expr:
        case ir.Col(name=name):
            return quote_identifier(name, psycopg=psycopg)
        case ir.Slot():
            return placeholder(expr)
        case ir.Call(func=func, arg=arg):
            return f"{func}({sub(arg)})"
        case ir.Compare(op=op, left=left, right=right, left_key=lkey, right_key=rkey):
            return f"{ordered(left, lkey, op)} {op} {keyed(right, rkey)}"
        case ir.Distinct(left=left, right=right, negated=negated, left_key=lkey, right_key=rkey):
            word = "IS NOT DISTINCT FROM" if negated else "IS DISTINCT FROM"
            return f"{keyed(left, lkey)} {word} {keyed(right, rkey)}"
        case ir.InList(arg=arg, values=values, negated=negated, key=key):
            text = f"{keyed(arg, key)} = ANY({placeholder(values)})"
            return f"NOT ({text})" if negated else text
        case ir.Quantified(op=op, left=left, array=array, all=all_, left_key=lkey):
            return f"{ordered(left, lkey, op)} {op} {'ALL' if all_ else 'ANY'}({sub(array)})"
        case ir.Like(arg=arg, pattern=pattern, insensitive=insensitive, negated=negated):
            word = ("NOT " if negated else "") + ("ILIKE" if insensitive else "LIKE")
            return f"{sub(arg)} {word} {placeholder(pattern)}"
        case ir.IsNull(arg=arg, negated=negated):
            return f"{sub(arg)} IS {'NOT ' if negated else ''}NULL"
        case ir.IsBool(arg=arg, value=value, negated=negated):
            return f"{sub(arg)} IS {'NOT ' if negated else ''}{'TRUE' if value else 'FALSE'}"
        case ir.InSet(args=args, arg_keys=arg_keys, select=select, offset=offset):
            inner = render_inner(select, expr.element_keys, _shifted(placeholder, offset), psycopg)
            if not args:
                return f"EXISTS ({inner})"
            if len(args) == 1:
                return f"{keyed(args[0], arg_keys[0])} IN ({inner})"
            row = ", ".join(keyed(arg, key) for arg, key in zip(args, arg_keys, strict=True))
            return f"({row}) IN ({inner})"
        case ir.Not(arg=arg):
            return f"NOT {sub(arg)}"
        case ir.Logic(op=op, items=items):
            return f" {op.upper()} ".join(sub(item) for item in items)
    raise TypeError(f"cannot render {expr!r}")
