"""`FeedPosition`: a place in the change feed, `<commit LSN>-<chunk>` (a Redis stream ID).

Positions are what clients hold as cursors, what dumps record and what the
feed is read after, so this type is the one place that knows their rules:

* parsing is bounded: both parts are 64-bit integers, at most 20 digits (a
  client's 5,000-digit cursor is a `FeedError`, not Python's `ValueError` for
  long integer strings), and the text is made canonical (`"42"` is `"42-0"`);
* positions compare by (LSN, chunk), never as text (`"9-0" < "10-0"`);
* `exclusive` is the form XRANGE takes for "after this position", `successor`
  the next chunk, `transaction_start` the first chunk of the same transaction.

A position *is* its text (a `str` subclass): Redis, JSON and the wire take it
as it is, and two positions are equal exactly when their canonical texts are.
"""

from __future__ import annotations

from pgsift.middleware.errors import FeedError

# Both parts of a stream ID are 64-bit unsigned integers.
MAX_DIGITS = 20
_U64 = 1 << 64


class FeedPosition(str):
    """A validated, canonical stream ID; see the module docstring."""

    __slots__ = ()

    def __new__(cls, text: str) -> FeedPosition:
        if type(text) is cls:
            return text
        lsn, chunk = _parse(text)
        return str.__new__(cls, f"{lsn}-{chunk}")

    @classmethod
    def of(cls, lsn: int, chunk: int = 0) -> FeedPosition:
        """The position of chunk `chunk` of the transaction committed at `lsn`."""
        return str.__new__(cls, f"{lsn}-{chunk}")

    @classmethod
    def decoded(cls, raw: str | bytes) -> FeedPosition:
        """A stream ID as Redis returns it (bytes, or str with decode_responses)."""
        return cls(raw.decode() if isinstance(raw, bytes) else raw)

    @classmethod
    def optional(cls, raw: str | bytes | None) -> FeedPosition | None:
        """`decoded`, with None for None (no such entry, no marker)."""
        return None if raw is None else cls.decoded(raw)

    @property
    def lsn(self) -> int:
        return int(self.partition("-")[0])

    @property
    def chunk(self) -> int:
        return int(self.partition("-")[2])

    @property
    def key(self) -> tuple[int, int]:
        """(LSN, chunk): the order of positions."""
        lsn, _, chunk = self.partition("-")
        return int(lsn), int(chunk)

    @property
    def exclusive(self) -> str:
        """The XRANGE / XREVRANGE bound that leaves this position itself out."""
        return "(" + self

    def successor(self) -> FeedPosition:
        """The next chunk's position (the smallest position after this one)."""
        lsn, chunk = self.key
        return FeedPosition.of(lsn, chunk + 1)

    def transaction_start(self) -> FeedPosition:
        """The position of the first chunk of this position's transaction."""
        return FeedPosition.of(self.lsn)

    def __lt__(self, other: str) -> bool:
        return self.key < _key(other)

    def __le__(self, other: str) -> bool:
        return self.key <= _key(other)

    def __gt__(self, other: str) -> bool:
        return self.key > _key(other)

    def __ge__(self, other: str) -> bool:
        return self.key >= _key(other)

    def __repr__(self) -> str:
        return f"FeedPosition({str(self)!r})"


START = FeedPosition.of(0)


def stream_id_key(sid: str) -> tuple[int, int]:
    """(LSN, chunk) of a stream ID that Redis gave, "<ms>-<seq>" by construction: split,
    not validated as a client's text is (that was a fifth of decoding a one-row entry)."""
    lsn, _, chunk = sid.partition("-")
    try:
        return int(lsn), int(chunk)
    except ValueError as exc:
        raise FeedError(f"{sid[:40]!r} is not a stream ID") from exc


def _key(value: str) -> tuple[int, int]:
    return FeedPosition(value).key


def _parse(text: str) -> tuple[int, int]:
    lsn, sep, chunk = text.partition("-")
    if not _is_u64(lsn) or (sep and not _is_u64(chunk)):
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise FeedError(f"{shown!r} is not a feed position (expected '<lsn>-<chunk>')")
    return int(lsn), int(chunk) if sep else 0


def _is_u64(text: str) -> bool:
    # Bounded before int(): Python refuses to convert integer strings of more
    # than 4,300 digits with a ValueError of its own.
    return 0 < len(text) <= MAX_DIGITS and text.isascii() and text.isdigit() and int(text) < _U64
