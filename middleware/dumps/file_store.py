"""Dumps in a directory shared by workers and gateways, published by renaming a directory.

Layout under `root/<database>/`:
`building/<dump id>/` while a build writes `body.zst`; at publish `meta.json`
is written into it and the directory is renamed to `<shape key>/<dump id>/`.
A rename within one file system is atomic, so a reader sees either no dump or
a complete one; a killed build leaves only a `building/` directory.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from pgsift.middleware.dumps.format import CHUNK_BYTES, DumpHeader, DumpTrailer
from pgsift.middleware.dumps.store import DumpInfo, new_dump_id
from pgsift.middleware.errors import DumpError

BODY = "body.zst"
META = "meta.json"
BUILDING = "building"


class FileDumpWriter:
    def __init__(self, store: FileDumpStore, header: DumpHeader) -> None:
        self.store = store
        self.header = header
        self.dump_id = new_dump_id(header.built_at)
        self._dir = store.root / BUILDING / self.dump_id
        self._dir.mkdir(parents=True)
        self._body = open(self._dir / BODY, "wb")  # noqa: SIM115 - closed by publish/abort

    def write(self, chunk: bytes) -> None:
        self._body.write(chunk)

    def keep_alive(self) -> None:
        """Nothing expires here (`sweep_abandoned` goes by age, past the build timeout)."""

    def publish(self, trailer: DumpTrailer) -> DumpInfo:
        self._body.flush()
        os.fsync(self._body.fileno())
        self._body.close()
        meta = {"header": self.header.to_json(), "trailer": trailer.to_json()}
        (self._dir / META).write_text(json.dumps(meta), encoding="utf-8")
        shape_dir = self.store.root / self.header.shape_key
        shape_dir.mkdir(exist_ok=True)
        self._dir.rename(shape_dir / self.dump_id)
        return DumpInfo(self.dump_id, self.header, trailer)

    def abort(self) -> None:
        self._body.close()
        shutil.rmtree(self._dir, ignore_errors=True)


class FileDumpStore:
    """`DumpStore` in a directory (for dumps too big to keep in Redis)."""

    def __init__(self, directory: str | Path, database: str) -> None:
        self.root = Path(directory) / database
        (self.root / BUILDING).mkdir(parents=True, exist_ok=True)

    def begin(self, header: DumpHeader) -> FileDumpWriter:
        return FileDumpWriter(self, header)

    def dumps(self, shape_key: str) -> list[DumpInfo]:
        shape_dir = self.root / shape_key
        if not shape_dir.is_dir():
            return []
        infos = (self._read(path) for path in shape_dir.iterdir())
        return sorted((i for i in infos if i), key=lambda i: i.dump_id, reverse=True)

    def shape_keys(self) -> set[str]:
        return {p.name for p in self.root.iterdir() if p.is_dir() and p.name != BUILDING}

    def all_dumps(self) -> list[DumpInfo]:
        return [info for shape in sorted(self.shape_keys()) for info in self.dumps(shape)]

    def body(self, info: DumpInfo) -> Iterator[bytes]:
        path = self.root / info.header.shape_key / info.dump_id / BODY
        try:
            file = open(path, "rb")  # noqa: SIM115 - closed below, also on early exit
        except FileNotFoundError as exc:
            raise DumpError(f"dump {info.dump_id} is gone") from exc
        with file:
            while chunk := file.read(CHUNK_BYTES):
                yield chunk

    def delete(self, info: DumpInfo) -> None:
        shutil.rmtree(self.root / info.header.shape_key / info.dump_id, ignore_errors=True)

    def sweep_abandoned(self, older_than_s: float) -> int:
        """Remove build directories nobody wrote to for `older_than_s` seconds."""
        cutoff = time.time() - older_than_s
        swept = 0
        for path in (self.root / BUILDING).iterdir():
            body = path / BODY
            mtime = (body if body.exists() else path).stat().st_mtime
            if mtime < cutoff:
                shutil.rmtree(path, ignore_errors=True)
                swept += 1
        return swept

    def _read(self, path: Path) -> DumpInfo | None:
        try:
            meta = json.loads((path / META).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None  # deleted between listing and reading
        return DumpInfo(path.name, DumpHeader.from_json(meta["header"]),
                        DumpTrailer.from_json(meta["trailer"]))
