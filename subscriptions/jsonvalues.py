"""Values of json / jsonb columns, where a JSON `null` is a value and not SQL NULL.

`json.loads("null")` is None, and None is what pgsift (like psycopg) uses for
SQL NULL: a jsonb column holding the JSON value `null` would look NULL to
`IS NULL`, to classification and on the wire, while Postgres keeps the two
apart (`'null'::jsonb IS NULL` is false). So a json value whose top level is
JSON `null` is `JSON_NULL`, a singleton. Inside an object or an array a JSON
null stays None: there it cannot be mistaken for a missing value. The same
holds for each element of a json[] / jsonb[] array (an array's SQL NULL
element is None, its JSON null element `JSON_NULL`).
"""

from __future__ import annotations

import json
from typing import Any, Final, final


@final
class JsonNull:
    """The JSON value `null` as a whole json / jsonb value (one instance: `JSON_NULL`)."""

    __slots__ = ()
    _instance: JsonNull | None = None

    def __new__(cls) -> JsonNull:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "JSON_NULL"

    def __reduce__(self) -> str:
        # Pickled by name (RQ job arguments, multiprocessing): stays the singleton.
        return "JSON_NULL"

    def __copy__(self) -> JsonNull:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> JsonNull:
        return self


JSON_NULL: Final = JsonNull()

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def load_json(text: str | bytes) -> Any:
    """JSON text -> the value of a json / jsonb column (`JSON_NULL` for `null`).

    ValueError for text that is not JSON, `NaN` and `Infinity` included
    (Python reads them, Postgres does not).
    """
    value = json.loads(text, parse_constant=_not_json)
    return JSON_NULL if value is None else value


def _not_json(token: str) -> Any:
    raise ValueError(f"{token} is not a JSON value")


def nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether `value` nests lists / dicts (JSON arrays / objects) more than `limit` deep.

    `1` has depth 0, `[]` and `{}` depth 1, `[{"a": []}]` depth 3. Walked
    without recursion, since a value too deep to recurse into is the case to
    catch; it stops at the first container past the limit.
    """
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


def dump_json(value: Any) -> str:
    """The JSON text of a json / jsonb value (compact; `JSON_NULL` is `null`)."""
    return "null" if value is JSON_NULL else _dumps(value)
