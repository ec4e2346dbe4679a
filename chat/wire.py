"""Chat frames straight onto the sockets' transports: a frame's WebSocket bytes are built once and
written to every socket of the broadcast, with no per-socket encoding, task or ASGI call.

RFC 6455 §5.2: a server's text frame is FIN + opcode 1, the payload length (7 bits, or 126 and
16 bits, or 127 and 64 bits), unmasked payload. Written between whole frames of the server's own
WebSocket protocol (handshake, pings, close), on the one event loop, so frames never interleave.
Only where it is safe: uvicorn's ``websockets-sansio`` protocol (its default), no extension
negotiated (per-message deflate is off: jangteo/app.py), the socket open. Anything else falls back
to ``send_text`` (chat/client.py keeps that path).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

Writer = Callable[[bytes], int]  # writes one frame; returns the transport's buffered bytes
PROTOCOL = "WebSocketsSansIOProtocol"


def text_frame(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 1 << 16:
        return bytes((0x81, 126)) + struct.pack("!H", n) + payload
    return bytes((0x81, 127)) + struct.pack("!Q", n) + payload


class SocketGone(ConnectionError):
    """The socket closed (or began to): nothing more is written to it."""


def writer_of(asgi_callable: Any) -> Writer | None:
    """A direct writer for the socket whose protocol's bound ASGI callable this is, or None."""
    proto = getattr(asgi_callable, "__self__", None)
    if proto is None or type(proto).__name__ != PROTOCOL:
        return None
    transport = getattr(proto, "transport", None)
    conn = getattr(proto, "conn", None)
    if transport is None or conn is None or getattr(conn, "extensions", None):
        return None

    is_closing, send, buffered = (
        transport.is_closing,
        transport.write,
        transport.get_write_buffer_size,
    )

    def write(frame: bytes) -> int:  # per socket per frame: kept to the bone
        if proto.close_sent or is_closing():
            raise SocketGone("the chat socket is closed")
        send(frame)
        return int(buffered())

    return write
