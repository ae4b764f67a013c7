"""The dump format: bodies round-trip, and damage never passes as complete."""

from __future__ import annotations

import json
from typing import Any

import pytest
import zstandard

from pgsift.middleware.bootstrap.cursor import Snapshot
from pgsift.middleware.dumps.format import (
    BodyWriter,
    DumpHeader,
    DumpTrailer,
    body_rows,
    decompressed_body,
    row_line,
)
from pgsift.middleware.errors import DumpError

HEADER = DumpHeader(
    shape_key="abc", table="public.issues", columns=("id", "title"), types=("int8", "text"),
    schema_hash="ff", snapshot=Snapshot(745, 750, frozenset({746, 748})), feed_position="123-0",
    built_at=1700000000.5,
)
ROWS: list[dict[str, Any]] = [
    {"id": n, "title": f"issue {n} ✓", "estimate": None if n % 3 else "1.5", "tags": ["a", "b"]}
    for n in range(5000)
]


def write_body(
    rows: list[dict[str, Any]], chunk_bytes: int = 4096
) -> tuple[list[bytes], DumpTrailer]:
    writer = BodyWriter(HEADER, chunk_bytes=chunk_bytes)
    chunks: list[bytes] = []
    for start in range(0, len(rows), 700):
        batch = rows[start:start + 700]
        chunks += writer.write(b"".join(row_line(r) for r in batch), len(batch))
    chunks += writer.finish()
    return chunks, writer.trailer(finished_at=1.0)


def test_body_round_trips_rows_count_and_sizes() -> None:
    chunks, trailer = write_body(ROWS)
    assert len(chunks) > 1
    assert list(body_rows(chunks, trailer)) == ROWS
    assert trailer.count == len(ROWS)
    assert trailer.body_bytes == sum(map(len, chunks))
    raw = b"".join(decompressed_body(chunks, trailer))
    assert len(raw) == trailer.raw_bytes
    header, first, *_, end = map(json.loads, raw.splitlines())
    assert header == {"type": "header", "columns": ["id", "title"], "types": ["int8", "text"],
                      "source": "dump", "cursor": "123-0@745:750:746,748"}
    assert first == {"type": "row", "row": ROWS[0]}
    assert end == {"type": "end", "count": len(ROWS), "cursor": header["cursor"]}


def test_the_stored_body_is_one_zstd_frame_of_the_wire_response() -> None:
    chunks, _ = write_body(ROWS[:10])
    decompressor = zstandard.ZstdDecompressor().decompressobj()
    text = decompressor.decompress(b"".join(chunks))
    assert decompressor.eof and not decompressor.unused_data
    assert text.decode().splitlines()[4] == '{"type":"row","row":' + json.dumps(
        ROWS[3], ensure_ascii=False, separators=(",", ":")) + "}"


def test_an_empty_body_is_complete_with_zero_rows() -> None:
    chunks, trailer = write_body([])
    assert trailer.count == 0
    assert list(body_rows(chunks, trailer)) == []


@pytest.mark.parametrize("damage", ["truncate", "flip", "drop_chunk"])
def test_a_damaged_body_raises_instead_of_ending(damage: str) -> None:
    chunks, trailer = write_body(ROWS)
    if damage == "truncate":
        chunks[-1] = chunks[-1][:-5]
    elif damage == "flip":
        chunks[1] = chunks[1][:10] + bytes([chunks[1][10] ^ 1]) + chunks[1][11:]
    else:
        del chunks[-1]
    with pytest.raises((DumpError, zstandard.ZstdError)):
        list(body_rows(chunks, trailer))


def test_a_wrong_count_in_the_trailer_is_detected() -> None:
    chunks, trailer = write_body(ROWS[:100])
    lying = DumpTrailer(99, trailer.checksum, trailer.body_bytes, trailer.raw_bytes, 1.0)
    with pytest.raises(DumpError, match="100 rows"):
        list(body_rows(chunks, lying))


def test_header_round_trips_through_json_and_checks_the_version() -> None:
    header = HEADER
    assert DumpHeader.from_json(json.loads(json.dumps(header.to_json()))) == header
    assert str(header.cursor) == "123-0@745:750:746,748"
    with pytest.raises(DumpError, match="version"):
        DumpHeader.from_json({**header.to_json(), "version": 99})
