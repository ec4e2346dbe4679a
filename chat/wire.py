"""Chat frames straight onto the sockets' transports: a frame's WebSocket bytes are built once and
written to every socket of the broadcast, with no per-socket encoding, task or ASGI call.

RFC 6455 §5.2: a server's text frame is FIN + opcode 1, the payload length (7 bits, or 126 and
16 bits, or 127 and 64 bits), unmasked payload. Written between whole frames of the server's own
WebSocket protocol (handshake, pings, close), on the one event loop, so frames never interleave.
Only where it is safe: uvicorn's ``websockets-sansio`` protocol (its default), no extension
negotiated (per-message deflate is off: jangteo/app.py), the socket open (no close frame sent,
the transport not closing). Anything else falls back to ``send_text`` (chat/client.py keeps that
path).

A :class:`Wire` is a socket's protocol and its transport's bound methods, looked up once: the
hub's hot loop (chat/hub.py) is one attribute check, one C call and one ``write`` per socket.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

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


@dataclass(frozen=True, slots=True)
class Wire:
    """One socket's way onto its transport."""

    protocol: Any  # uvicorn's protocol: ``close_sent`` once it has written a close frame
    write: Callable[[bytes], object]  # transport.write
    is_closing: Callable[[], bool]  # transport.is_closing
    buffered: Callable[[], int]  # transport.get_write_buffer_size

    def gone(self) -> bool:
        return bool(self.protocol.close_sent) or self.is_closing()

    def send(self, frame: bytes) -> int:
        """Write one frame; the bytes the transport now holds unsent. SocketGone if closed."""
        if self.gone():
            raise SocketGone("the chat socket is closed")
        self.write(frame)
        return int(self.buffered())


def writer_of(asgi_callable: Any) -> Wire | None:
    """The wire of the socket whose protocol's bound ASGI callable this is, or None."""
    proto = getattr(asgi_callable, "__self__", None)
    if proto is None or type(proto).__name__ != PROTOCOL:
        return None
    transport = getattr(proto, "transport", None)
    conn = getattr(proto, "conn", None)
    if transport is None or conn is None or getattr(conn, "extensions", None):
        return None
    return Wire(proto, transport.write, transport.is_closing, transport.get_write_buffer_size)


K = TypeVar("K", bound=Hashable)


class Fanout(Generic[K]):
    """Sockets written together, each under a key (the hub's clients): :meth:`write` is the hot
    loop, per socket one attribute, one C call and the ``write``, over rows built once per change
    of membership."""

    def __init__(self) -> None:
        self._wires: dict[K, Wire] = {}
        self._rows: list[tuple[K, Any, Callable[[], bool], Callable[[bytes], object]]] | None = None
        self._meters: list[tuple[K, Callable[[], int]]] | None = None

    def __len__(self) -> int:
        return len(self._wires)

    def __contains__(self, key: object) -> bool:
        return key in self._wires

    def __iter__(self) -> Iterator[K]:
        return iter(tuple(self._wires))

    def add(self, key: K, wire: Wire) -> None:
        self._wires[key] = wire
        self._rows = self._meters = None

    def discard(self, key: K) -> bool:
        """Take ``key`` out; whether it was in."""
        if self._wires.pop(key, None) is None:
            return False
        self._rows = self._meters = None
        return True

    def clear(self) -> None:
        self._wires.clear()
        self._rows = self._meters = None

    def write(self, frame: bytes) -> list[K]:
        """Write ``frame`` to every socket; the keys of those found closing (taken out)."""
        rows = self._rows
        if rows is None:
            rows = self._rows = [
                (k, w.protocol, w.is_closing, w.write) for k, w in self._wires.items()
            ]
        gone: list[K] = []
        for key, protocol, is_closing, write in rows:
            if protocol.close_sent or is_closing():
                gone.append(key)
                continue
            try:
                write(frame)
            except (OSError, RuntimeError):  # closed under us (uvloop: the handle is closed)
                gone.append(key)
        for key in gone:
            self.discard(key)
        return gone

    def meters(self) -> list[tuple[K, Callable[[], int]]]:
        """Every socket's key and its transport's ``get_write_buffer_size`` (the unsent bytes)."""
        meters = self._meters
        if meters is None:
            meters = self._meters = [(k, w.buffered) for k, w in self._wires.items()]
        return meters
