"""Content-Encoding negotiation and the streaming compressors."""

from __future__ import annotations

import gzip

import pytest
import zstandard

from pgsift.middleware.dumps.encoding import compressed, negotiate


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "identity"),
        ("gzip, deflate, br", "gzip"),
        ("gzip, zstd", "zstd"),
        ("zstd;q=0, gzip;q=0.5", "gzip"),
        ("*", "zstd"),
        ("identity", "identity"),
        ("gzip;q=0", "identity"),
    ],
)
def test_negotiate(header: str | None, expected: str) -> None:
    assert negotiate(header) == expected


def test_streams_decode_to_the_parts() -> None:
    parts = [b"line %d\n" % n * 50 for n in range(100)]
    assert gzip.decompress(b"".join(compressed(parts, "gzip"))) == b"".join(parts)
    zstd = zstandard.ZstdDecompressor().decompressobj()
    assert zstd.decompress(b"".join(compressed(parts, "zstd"))) == b"".join(parts)
    assert b"".join(compressed(parts, "identity")) == b"".join(parts)
