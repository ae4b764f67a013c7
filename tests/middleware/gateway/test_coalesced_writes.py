"""One socket write per websocket connection per loop turn (`coalesced_writes`), under
asyncio's loop and uvloop: joined in order, flushed on close, dropped on abort; and
uvicorn serving websockets through it delivers every frame in order, then the close."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvicorn
import uvloop
import websockets
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from pgsift.middleware.gateway.coalesced_writes import (
    CoalescedTransport,
    CoalescedWebSocketsProtocol,
)

LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


def run_on(loop_name: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        runner.run(main())


class Counted:
    """A real transport, counting the writes that reach it."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        self.transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


async def connected_pair() -> tuple[Counted, asyncio.StreamReader, Callable[[], None]]:
    """A transport to a real socket peer (its reading end) and how to clean up."""
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    transport, _ = await loop.create_connection(asyncio.Protocol, sock=ours)
    reader, writer = await asyncio.open_connection(sock=theirs)

    def done() -> None:
        transport.abort()
        writer.close()

    return Counted(transport), reader, done


@pytest.mark.parametrize("loop_name", list(LOOPS))
def test_writes_of_one_turn_reach_the_socket_once_in_order(loop_name: str) -> None:
    async def main() -> None:
        counted, reader, done = await connected_pair()
        coalesced = CoalescedTransport(counted, asyncio.get_running_loop())  # type: ignore[arg-type]
        for part in (b"one,", b"two,", bytearray(b"three,")):
            coalesced.write(part)
        assert counted.writes == []  # nothing written before the turn ends
        assert coalesced.get_write_buffer_size() >= len(b"one,two,three,")
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert counted.writes == [b"one,two,three,"]
        coalesced.write(b"four")
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert counted.writes == [b"one,two,three,", b"four"]
        assert await reader.readexactly(18) == b"one,two,three,four"
        done()

    run_on(loop_name, main)


@pytest.mark.parametrize("loop_name", list(LOOPS))
def test_close_writes_what_is_pending_and_abort_drops_it(loop_name: str) -> None:
    async def main() -> None:
        counted, reader, done = await connected_pair()
        coalesced = CoalescedTransport(counted, asyncio.get_running_loop())  # type: ignore[arg-type]
        coalesced.write(b"last words")
        coalesced.close()
        assert counted.writes == [b"last words"]
        assert await reader.read() == b"last words"  # then end of file
        done()

        counted, reader, done = await connected_pair()
        coalesced = CoalescedTransport(counted, asyncio.get_running_loop())  # type: ignore[arg-type]
        coalesced.write(b"never")
        coalesced.abort()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert counted.writes == []
        assert await reader.read() == b""
        done()

    run_on(loop_name, main)


FRAMES = 200


async def burst_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Sends FRAMES text frames without yielding in between, then closes with 4000."""
    websocket = WebSocket(scope, receive, send)
    await websocket.accept()
    for number in range(FRAMES):
        await websocket.send_text(f"frame {number}")
    await websocket.close(4000, "done")


@pytest.mark.parametrize("loop_name", list(LOOPS))
def test_uvicorn_on_coalesced_writes_delivers_every_frame_then_the_close(
    loop_name: str,
) -> None:
    async def main() -> None:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        config = uvicorn.Config(
            burst_app, ws=CoalescedWebSocketsProtocol, log_level="warning", lifespan="off"
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve(sockets=[listener]))
        try:
            while not server.started:
                await asyncio.sleep(0.01)
            async with websockets.connect(f"ws://127.0.0.1:{port}/") as client:
                received = [await client.recv() for _ in range(FRAMES)]
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await client.recv()
            assert received == [f"frame {number}" for number in range(FRAMES)]
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
        finally:
            server.should_exit = True
            await serving
            listener.close()

    run_on(loop_name, main)
