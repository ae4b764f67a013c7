"""The dump format: a JSON header, a zstd-compressed NDJSON body, a JSON trailer.

The body is the complete response of the bootstrap endpoint for the dump, in
one zstd frame: the `{"type":"header",...,"source":"dump"}` line, one
`{"type":"row","row":{...}}` line per row (values in their wire form, `subscriptions/wire.py`),
and the `{"type":"end","count":N,...}` line. Serving a dump is copying bytes:
with `Content-Encoding: zstd` the stored frame goes out untouched (one frame,
because common decoders, httpx's among them, do not read concatenated frames
split across reads). msgpack rows were measured too (bench/bootstrap): they
build ~20% faster, but every serve then pays a decode + JSON encode per row
(~5-14 µs against ~0.3 µs to decompress NDJSON), which is what a dump exists
to avoid.

The header is known before the first row (it carries the snapshot), the
trailer only after the last: row count, sizes and a BLAKE2b checksum of the
compressed body. Readers check both, and hold back the body's last chunk (the
one with the end line) until they have, so a client never sees an `end` line
for a damaged dump.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import zstandard

from pgsift.middleware.bootstrap.cursor import BootstrapCursor, Snapshot
from pgsift.middleware.bootstrap.layout import ShapeLayout
from pgsift.middleware.errors import DumpError, FeedError
from pgsift.middleware.feed.position import FeedPosition

FORMAT_VERSION = 1
# Chosen by bench/bootstrap's format table: level 3 compresses wire NDJSON ~6.5x
# and costs little next to the JSON encoding of the rows; level 6 saves ~13% of
# the bytes for ~20% more build time, 9 saves ~19% for ~30% more.
ZSTD_LEVEL = 3
CHUNK_BYTES = 256 * 1024
ROW_PREFIX = b'{"type":"row","row":'
ROW_SUFFIX = b"}\n"

_json_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def json_line(document: Any) -> bytes:
    """One compact NDJSON line."""
    return _json_encode(document).encode() + b"\n"


def row_line(row: dict[str, Any]) -> bytes:
    """The wire line of one row whose values are already in JSON form."""
    return ROW_PREFIX + _json_encode(row).encode() + ROW_SUFFIX


def header_line(
    columns: tuple[str, ...], types: tuple[str, ...], source: str, cursor: str
) -> bytes:
    """The first line of a bootstrap response."""
    return json_line({
        "type": "header",
        "columns": list(columns),
        "types": list(types),
        "source": source,
        "cursor": cursor,
    })


def end_line(count: int, cursor: str) -> bytes:
    """The last line: a response without it (or with another count) is incomplete."""
    return json_line({"type": "end", "count": count, "cursor": cursor})


@dataclass(frozen=True, slots=True)
class DumpHeader(ShapeLayout):
    """What a dump is of and when (everything known before the first row): the shape's
    layout, stamped with the snapshot and the feed position its rows were read at."""

    snapshot: Snapshot
    feed_position: FeedPosition  # the feed's end, read before the snapshot was taken
    built_at: float  # Unix time the snapshot was taken
    version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "feed_position", FeedPosition(self.feed_position))

    @classmethod
    def stamped(
        cls, layout: ShapeLayout, snapshot: Snapshot, feed_position: FeedPosition, built_at: float
    ) -> DumpHeader:
        """The header of a dump of `layout`'s shape read in `snapshot` after `feed_position`."""
        return cls(layout.shape_key, layout.table, layout.columns, layout.types,
                   layout.schema_hash, snapshot, feed_position, built_at)

    @property
    def cursor(self) -> BootstrapCursor:
        return BootstrapCursor(self.feed_position, self.snapshot)

    def wire_header(self) -> bytes:
        return header_line(self.columns, self.types, "dump", str(self.cursor))

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "shape_key": self.shape_key,
            "table": self.table,
            "columns": list(self.columns),
            "types": list(self.types),
            "schema_hash": self.schema_hash,
            "snapshot": str(self.snapshot),
            "feed_position": self.feed_position,
            "built_at": self.built_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DumpHeader:
        version = data.get("version")
        if version != FORMAT_VERSION:
            raise DumpError(f"dump format version {version!r} is not {FORMAT_VERSION}")
        try:
            return cls(
                shape_key=str(data["shape_key"]),
                table=str(data["table"]),
                columns=tuple(data["columns"]),
                types=tuple(data["types"]),
                schema_hash=str(data["schema_hash"]),
                snapshot=Snapshot.parse(data["snapshot"]),
                feed_position=FeedPosition(str(data["feed_position"])),
                built_at=float(data["built_at"]),
            )
        except (KeyError, TypeError, ValueError, FeedError) as exc:
            raise DumpError(f"corrupt dump header: {exc!r}") from exc


@dataclass(frozen=True, slots=True)
class DumpTrailer:
    """Written after the last row: what a complete body must add up to."""

    count: int
    checksum: str  # "blake2b:<hex>" of the compressed body
    body_bytes: int  # compressed
    raw_bytes: int  # uncompressed NDJSON
    finished_at: float

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _TRAILER_FIELDS}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DumpTrailer:
        try:
            return cls(**{name: kind(data[name]) for name, kind in _TRAILER_FIELDS.items()})
        except (KeyError, TypeError, ValueError) as exc:
            raise DumpError(f"corrupt dump trailer: {exc!r}") from exc


# The trailer's JSON fields and the type of each.
_TRAILER_FIELDS: dict[str, Callable[[Any], Any]] = {
    "count": int, "checksum": str, "body_bytes": int, "raw_bytes": int, "finished_at": float,
}


def _hasher() -> Any:
    return hashlib.blake2b(digest_size=16)


class BodyWriter:
    """Compresses a dump's wire lines into chunks of about `chunk_bytes`, counting rows."""

    def __init__(
        self, header: DumpHeader, *, level: int = ZSTD_LEVEL, chunk_bytes: int = CHUNK_BYTES
    ) -> None:
        self._cursor = str(header.cursor)
        self._compressor = zstandard.ZstdCompressor(level=level, write_checksum=True).compressobj()
        self._chunk_bytes = chunk_bytes
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._hash = _hasher()
        self.count = 0
        self.raw_bytes = 0
        self.body_bytes = 0
        self._add(header.wire_header())

    def write(self, lines: bytes, rows: int) -> Iterator[bytes]:
        """Add `rows` row lines (concatenated); yields the chunks that filled up."""
        self.count += rows
        self._add(lines)
        if self._pending_bytes >= self._chunk_bytes:
            yield self._take()

    def finish(self) -> Iterator[bytes]:
        """Writes the end line and yields the last chunk; the body is complete afterwards."""
        self._add(end_line(self.count, self._cursor))
        self._pending.append(self._compressor.flush())
        yield self._take()

    def _add(self, data: bytes) -> None:
        self.raw_bytes += len(data)
        out = self._compressor.compress(data)
        if out:
            self._pending.append(out)
            self._pending_bytes += len(out)

    def trailer(self, finished_at: float) -> DumpTrailer:
        return DumpTrailer(
            count=self.count,
            checksum="blake2b:" + self._hash.hexdigest(),
            body_bytes=self.body_bytes,
            raw_bytes=self.raw_bytes,
            finished_at=finished_at,
        )

    def _take(self) -> bytes:
        chunk = b"".join(self._pending)
        self._pending, self._pending_bytes = [], 0
        self._hash.update(chunk)
        self.body_bytes += len(chunk)
        return chunk


def checked_body(chunks: Iterable[bytes], trailer: DumpTrailer) -> Iterator[bytes]:
    """Pass compressed body chunks through, the last only once size and checksum are right."""
    digest = _hasher()
    size = 0
    held: bytes | None = None
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
        if held is not None:
            yield held
        held = chunk
    if size != trailer.body_bytes or "blake2b:" + digest.hexdigest() != trailer.checksum:
        raise DumpError(
            f"dump body is damaged ({size} of {trailer.body_bytes} bytes, or a bad checksum)"
        )
    if held is not None:
        yield held


def decompressed_body(chunks: Iterable[bytes], trailer: DumpTrailer) -> Iterator[bytes]:
    """The body's NDJSON (header, rows, end line) in blocks not split at line ends, checked."""
    decompressor = zstandard.ZstdDecompressor().decompressobj()
    for chunk in checked_body(chunks, trailer):
        block = decompressor.decompress(chunk)
        if block:
            yield block
    if not decompressor.eof:
        raise DumpError("dump body ends in the middle of a zstd frame")


def body_rows(chunks: Iterable[bytes], trailer: DumpTrailer) -> Iterator[dict[str, Any]]:
    """Each row of a body as a dict of JSON-form values, checking count and checksum."""
    rest = b""
    count = 0
    start = len(ROW_PREFIX)
    ended = False
    for block in decompressed_body(chunks, trailer):
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        for line in lines:
            if line.startswith(ROW_PREFIX):
                count += 1
                yield json.loads(line[start:-1])  # the line without its wrapper
            elif json.loads(line).get("type") == "end":
                ended = True
    if rest or not ended or count != trailer.count:
        raise DumpError(f"dump body has {count} rows, its trailer says {trailer.count}")
