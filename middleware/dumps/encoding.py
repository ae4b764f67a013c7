"""Content-Encoding of streamed NDJSON: negotiation and incremental compressors."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from typing import Literal

import zstandard

Encoding = Literal["zstd", "gzip", "identity"]
# Fast levels: the gateway compresses while streaming, on the request's time.
LIVE_ZSTD_LEVEL = 1
GZIP_LEVEL = 1


def negotiate(accept_encoding: str | None) -> Encoding:
    """zstd if accepted, else gzip, else identity (q=0 refuses a coding)."""
    accepted: dict[str, float] = {}
    for part in (accept_encoding or "").split(","):
        name, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if name:
            accepted[name.strip().lower()] = quality
    for coding in ("zstd", "gzip"):
        if accepted.get(coding, accepted.get("*", 0.0)) > 0:
            return coding
    return "identity"


def compressed(parts: Iterable[bytes], encoding: Encoding) -> Iterator[bytes]:
    """`parts` compressed as one stream; each part's bytes go out before the next is read."""
    if encoding == "identity":
        yield from parts
        return
    if encoding == "zstd":
        zstd = zstandard.ZstdCompressor(level=LIVE_ZSTD_LEVEL).compressobj()
        for part in parts:
            # Flushing a block per part keeps the client's first byte early;
            # parts are thousands of rows, so the ratio hardly suffers.
            out = zstd.compress(part) + zstd.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
            if out:
                yield out
        yield zstd.flush()
        return
    gzip = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    for part in parts:
        out = gzip.compress(part) + gzip.flush(zlib.Z_SYNC_FLUSH)
        if out:
            yield out
    yield gzip.flush()
