"""A minimal keep-alive HTTP/1.1 client for the writes benchmark's load generators."""

from __future__ import annotations

import asyncio
import json
from typing import Any


class KeepAlive:
    """A minimal HTTP/1.1 client on one keep-alive connection: POST JSON, read JSON.

    The load generator shares the CPUs with the gateway and Postgres: httpx spends
    about 3 ms of CPU a request here, more than the gateway itself, which would
    measure the load generator instead of the gateway.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, base_url: str) -> KeepAlive:
        host, port = base_url.removeprefix("http://").split(":")
        return cls(*await asyncio.open_connection(host, int(port)))

    async def post(self, path: str, body: object, headers: dict[str, str]) -> tuple[int, Any]:
        data = json.dumps(body).encode()
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n{head}\r\n".encode() + data
        )
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return int(status_line.split()[1]), json.loads(await self.reader.readexactly(length))

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()
