"""JSON encoders built once, for encodings that run per message or per change.

`json.dumps` with any option makes a `JSONEncoder` and then its C encoder on
every call, which cost several times the encoding of a one-change message (the
gateway's frames) and most of applying a 1,000-change message to a client's
copy (its keys). These build the C encoder once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def one_shot_encoder(
    *, item_separator: str, key_separator: str, sort_keys: bool = False
) -> Callable[[Any], str]:
    """`json.dumps(value, separators=(item_separator, key_separator), sort_keys=...)`,
    without the check for circular values (`markers`): for values built from
    acyclic wire values or decoded JSON."""
    fallback = json.JSONEncoder(separators=(item_separator, key_separator), sort_keys=sort_keys)
    make: Any = getattr(json.encoder, "c_make_encoder", None)  # not in the type stubs
    if make is None:  # an interpreter without the C accelerator
        return fallback.encode
    one_shot = make(
        None, fallback.default, json.encoder.encode_basestring_ascii, None, key_separator,
        item_separator, sort_keys, False, True,  # skipkeys, allow_nan: json.dumps's defaults
    )
    join = "".join
    return lambda value: join(one_shot(value, 0))
