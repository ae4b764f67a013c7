"""permessage-deflate that sends small messages uncompressed.

With the extension negotiated (every browser and `websockets` client asks for
it), uvicorn compresses every message the gateway sends. Most are one change of
one subscription, a few hundred bytes: compressing each costs a zlib call and a
sync flush on both ends for a few dozen bytes saved. In a profile of `serve`
under `bench/e2e/run.py` at 2,000 commits/s, `PerMessageDeflate.encode` was the
largest single function (8.5 % of the process's CPU).

RFC 7692 lets a sender leave any message uncompressed (RSV1 unset): the
receiver takes it as it is, and the compression context of the messages that
are compressed is unaffected (it only ever holds what went through it). So
messages of one frame shorter than `COMPRESS_FROM_BYTES` go out as they are;
larger ones (snapshots, big transactions) are compressed as before, with
uvicorn's window and memory settings.
"""

from __future__ import annotations

from collections.abc import Sequence

from websockets.extensions.base import Extension, ServerExtensionFactory
from websockets.extensions.permessage_deflate import (
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from websockets.frames import CTRL_OPCODES, Frame, Opcode
from websockets.typing import ExtensionParameter

__all__ = ["COMPRESS_FROM_BYTES", "SmallFramesPlain", "small_frames_plain"]

# Below this, a message's frame goes out uncompressed. Deflate's fixed costs (the
# sync flush's 4-6 bytes, a call into zlib each way) dwarf what it saves on a
# message this short; a snapshot page or a big transaction is far longer.
COMPRESS_FROM_BYTES = 1024


class SmallFramesPlain(PerMessageDeflate):
    """`PerMessageDeflate` leaving whole messages under COMPRESS_FROM_BYTES uncompressed."""

    def encode(self, frame: Frame) -> Frame:
        # Only a message in one frame: the continuation frames of a fragmented
        # message must follow its first frame's choice (compressed).
        if (frame.fin and frame.opcode is not Opcode.CONT and frame.opcode not in CTRL_OPCODES
                and len(frame.data) < COMPRESS_FROM_BYTES):
            return frame
        return super().encode(frame)


class SmallFramesPlainFactory(ServerPerMessageDeflateFactory):
    """The server's permessage-deflate negotiation, handing out `SmallFramesPlain`."""

    def process_request_params(
        self, params: Sequence[ExtensionParameter], accepted_extensions: Sequence[Extension]
    ) -> tuple[list[ExtensionParameter], PerMessageDeflate]:
        response, negotiated = super().process_request_params(params, accepted_extensions)
        return response, SmallFramesPlain(
            negotiated.remote_no_context_takeover,
            negotiated.local_no_context_takeover,
            negotiated.remote_max_window_bits,
            negotiated.local_max_window_bits,
            self.compress_settings,
        )


def small_frames_plain(factory: ServerExtensionFactory) -> ServerExtensionFactory:
    """`factory` as it was, or, a permessage-deflate one, the same settings handing out
    `SmallFramesPlain`."""
    if type(factory) is not ServerPerMessageDeflateFactory:
        return factory
    return SmallFramesPlainFactory(
        server_no_context_takeover=factory.server_no_context_takeover,
        client_no_context_takeover=factory.client_no_context_takeover,
        server_max_window_bits=factory.server_max_window_bits,
        client_max_window_bits=factory.client_max_window_bits,
        compress_settings=factory.compress_settings,
        require_client_max_window_bits=factory.require_client_max_window_bits,
    )
