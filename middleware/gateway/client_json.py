"""JSON a client sends, read in one place: bounded nesting, one error with a clear message.

Every entry point that parses client JSON calls `load`: HTTP bodies
(`POST /v1/rows`, GraphQL over HTTP), JSON in query strings (`params` of
`/v1/bootstrap`, `variables` of a GraphQL GET) and graphql-transport-ws frames
(`read_frame`, for both transports; a frame carries the GraphQL variables and
a `sync`'s params). Python's parser recurses, so without a bound a deeply
nested document is a RecursionError (a 500, a connection dropped without a
close code), and one nested just short of that breaks recursive code further
on (encoders, comparisons). A document nested past `gateway_max_json_depth` is
refused as a whole: `ClientJSONError`, answered as HTTP 400 or close 4400.

The size of what is parsed is bounded before it gets here: HTTP bodies by
`body_limit.BodyLimit` (`gateway_max_body_bytes`), websocket frames by the
server (`gateway_max_frame_bytes`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pgsift.middleware.errors import ConfigError, GatewayError
from pgsift.middleware.settings import Settings
from pgsift.subscriptions.jsonvalues import nested_deeper_than

DEFAULT_MAX_DEPTH = Settings.gateway_max_json_depth


class ClientJSONError(GatewayError):
    """Client JSON that is not JSON, nests too deeply, or is not the message expected."""


@dataclass(frozen=True, slots=True)
class JsonLimits:
    """How deeply client JSON may nest (`[]` is one level, `[{}]` two)."""

    max_depth: int = DEFAULT_MAX_DEPTH

    def __post_init__(self) -> None:
        if self.max_depth < 1:
            raise ConfigError(f"gateway_max_json_depth must be >= 1, got {self.max_depth}")

    @classmethod
    def from_settings(cls, settings: Settings) -> JsonLimits:
        return cls(max_depth=settings.gateway_max_json_depth)


DEFAULT_LIMITS = JsonLimits()


def load(data: str | bytes, limits: JsonLimits, what: str = "the JSON") -> Any:
    """The value of client JSON `data`; ClientJSONError (naming `what`) when it is not JSON
    or nests deeper than `limits.max_depth`."""
    try:
        value = json.loads(data)
    except RecursionError:
        raise ClientJSONError(_too_deep(what, limits)) from None
    except ValueError as exc:  # JSONDecodeError; UnicodeDecodeError for bytes
        raise ClientJSONError(f"{what} is not valid JSON ({exc})") from None
    if nested_deeper_than(value, limits.max_depth):
        raise ClientJSONError(_too_deep(what, limits))
    return value


def read_frame(text: str, limits: JsonLimits) -> dict[str, Any]:
    """A graphql-transport-ws message from its text; ClientJSONError says why not (close 4400)."""
    message = load(text, limits, "the message")
    problem = frame_problem(message)
    if problem is not None:
        raise ClientJSONError(problem)
    result: dict[str, Any] = message
    return result


# Optional fields of a `subscribe` payload and the JSON type each must have when present.
_PAYLOAD_FIELDS: tuple[tuple[str, type, str], ...] = (
    ("variables", dict, "an object"),
    ("operationName", str, "a string"),
    ("extensions", dict, "an object"),
)


def frame_problem(message: Any) -> str | None:
    """What makes a parsed graphql-transport-ws message unusable, or None.

    Checks what a handler would otherwise index into blindly: the message is
    an object; `subscribe` and `complete` carry a string `id`; a `subscribe`
    payload is an object with a string `query` and, when present, object
    `variables` / `extensions` and a string `operationName`. Unknown types and
    `connection_init` payloads are the transports' own business.
    """
    if not isinstance(message, dict):
        return "Invalid message: must be a JSON object"
    kind = message.get("type")
    if kind in ("subscribe", "complete") and not isinstance(message.get("id"), str):
        return f"Invalid {kind} message: id must be a string"
    if kind != "subscribe":
        return None
    payload = message.get("payload")
    if not isinstance(payload, dict):
        return "Invalid subscribe message: payload must be an object"
    if not isinstance(payload.get("query"), str):
        return "Invalid subscribe payload: query must be a string"
    for name, expected, described in _PAYLOAD_FIELDS:
        value = payload.get(name)
        if value is not None and not isinstance(value, expected):
            return f"Invalid subscribe payload: {name} must be {described}"
    return None


def _too_deep(what: str, limits: JsonLimits) -> str:
    return f"{what} nests deeper than {limits.max_depth} levels (gateway_max_json_depth)"
