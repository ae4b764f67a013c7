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


class Compressor:
    """One response body compressed as one stream, part by part; each part's bytes are
    out (flushed) before the next part comes."""

    def __init__(self, encoding: Encoding) -> None:
        self.encoding = encoding
        self._zstd = (
            zstandard.ZstdCompressor(level=LIVE_ZSTD_LEVEL).compressobj()
            if encoding == "zstd" else None
        )
        self._gzip = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31) if encoding == "gzip" else None

    def compress(self, part: bytes) -> bytes:
        if self._zstd is not None:
            # Flushing a block per part keeps the client's first byte early;
            # parts are thousands of rows, so the ratio hardly suffers.
            return self._zstd.compress(part) + self._zstd.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        if self._gzip is not None:
            return self._gzip.compress(part) + self._gzip.flush(zlib.Z_SYNC_FLUSH)
        return part

    def finish(self) -> bytes:
        """The end of the stream."""
        if self._zstd is not None:
            return self._zstd.flush()
        if self._gzip is not None:
            return self._gzip.flush()
        return b""


def compressed(parts: Iterable[bytes], encoding: Encoding) -> Iterator[bytes]:
    """`parts` compressed as one stream; each part's bytes go out before the next is read."""
    compressor = Compressor(encoding)
    for part in parts:
        out = compressor.compress(part)
        if out:
            yield out
    if encoding != "identity":
        yield compressor.finish()
