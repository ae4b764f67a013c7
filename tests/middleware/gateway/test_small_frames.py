"""permessage-deflate leaving small messages uncompressed (`small_frames`): small
messages go out as they are, large ones compressed, and a standard decoder reads
every one of a mixed sequence (the compression context is not disturbed); uvicorn
on `CoalescedWebSocketsProtocol` negotiates it with a `websockets` client."""

from __future__ import annotations

import asyncio
import json
import socket

import uvicorn
import websockets
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from websockets.extensions.permessage_deflate import (
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from websockets.frames import Frame, Opcode

from pgsift.middleware.gateway.coalesced_writes import CoalescedWebSocketsProtocol
from pgsift.middleware.gateway.small_frames import (
    COMPRESS_FROM_BYTES,
    SmallFramesPlain,
    small_frames_plain,
)


def message(size: int, number: int) -> bytes:
    """A JSON text of about `size` bytes, repetitive as sync messages are."""
    rows = [{"id": str(number * 1000 + i), "value": "x" * 20} for i in range(size // 40 + 1)]
    return json.dumps({"type": "next", "id": str(number), "rows": rows}).encode()[:size]


def test_small_messages_go_out_plain_and_a_standard_decoder_reads_all() -> None:
    sender = SmallFramesPlain(False, False, 12, 12)
    receiver = PerMessageDeflate(False, False, 12, 12)  # what any client runs
    sizes = [100, 5000, 300, 20_000, COMPRESS_FROM_BYTES - 1, COMPRESS_FROM_BYTES, 50, 8000]
    for number, size in enumerate(sizes):
        data = message(size, number)
        sent = sender.encode(Frame(Opcode.TEXT, data))
        small = len(data) < COMPRESS_FROM_BYTES
        assert sent.rsv1 is not small  # RSV1: compressed
        assert (sent.data == data) is small
        if not small:
            assert len(sent.data) < len(data)
        assert receiver.decode(sent).data == data


def test_the_factory_keeps_uvicorns_settings() -> None:
    original = ServerPerMessageDeflateFactory(
        server_max_window_bits=12, client_max_window_bits=12, compress_settings={"memLevel": 5}
    )
    wrapped = small_frames_plain(original)
    assert isinstance(wrapped, ServerPerMessageDeflateFactory) and wrapped is not original
    assert (wrapped.server_max_window_bits, wrapped.client_max_window_bits) == (12, 12)
    assert wrapped.compress_settings == {"memLevel": 5}
    _, extension = wrapped.process_request_params([], [])
    assert isinstance(extension, SmallFramesPlain)
    assert extension.local_max_window_bits == 12


SIZES = [200, 4000, 600, 30_000, 100]


async def mixed_app(scope: Scope, receive: Receive, send: Send) -> None:
    websocket = WebSocket(scope, receive, send)
    await websocket.accept()
    for number, size in enumerate(SIZES):
        await websocket.send_text(message(size, number).decode())
    await websocket.close(4000, "done")


def test_uvicorn_negotiates_it_and_the_client_reads_every_message() -> None:
    async def main() -> None:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        config = uvicorn.Config(
            mixed_app, ws=CoalescedWebSocketsProtocol, log_level="warning", lifespan="off"
        )
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve(sockets=[listener]))
        try:
            while not server.started:
                await asyncio.sleep(0.01)
            async with websockets.connect(f"ws://127.0.0.1:{port}/") as client:
                assert [type(e) for e in client.protocol.extensions] == [PerMessageDeflate]
                received = [await client.recv() for _ in SIZES]
            assert received == [message(size, n).decode() for n, size in enumerate(SIZES)]
        finally:
            server.should_exit = True
            await serving
            listener.close()

    asyncio.run(main())
