"""RTMP's wire pieces on their own: AMF0, chunking both ways, URL masking, and the address
check made again right before connecting (no DNS rebinding)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from stream.deliver.rtmp import amf, destinations
from stream.deliver.rtmp.chunks import AUDIO, VIDEO, ChunkReader, ChunkWriter, Message
from stream.deliver.rtmp.destinations import Destination
from stream.deliver.rtmp.pusher import Pusher, tls_context
from stream.encode.bus import FrameBus


def test_amf0_round_trip() -> None:
    values = [
        "connect", 1.0, {"app": "live", "tcUrl": "rtmp://h/live", "fpad": False},
        None, amf.EcmaArray({"width": 720.0, "stereo": True}), [1.0, "두"], "장터",
    ]  # fmt: skip
    decoded = amf.decode(amf.encode(*values))
    assert decoded == values
    assert isinstance(decoded[4], amf.EcmaArray)
    with pytest.raises(ValueError):
        amf.decode(amf.encode("cut")[:-1])


@pytest.mark.parametrize("chunk_size", [128, 4096, 1])
def test_chunks_round_trip_interleaved_and_byte_by_byte(chunk_size: int) -> None:
    writer = ChunkWriter()
    writer.chunk_size = chunk_size
    sent = [
        Message(6, VIDEO, 1, 0, bytes(range(256)) * 40),
        Message(4, AUDIO, 1, 21, b"\xaf\x01" + b"a" * 300),
        Message(6, VIDEO, 1, 0x1000000 + 33, b"big timestamp" * 50),  # extended timestamp
        Message(4, AUDIO, 1, 0xFFFFFF, b""),
        Message(4, AUDIO, 1, 42, b"x"),
    ]
    wire = b"".join(writer.message(m) for m in sent)
    reader = ChunkReader()
    reader.chunk_size = chunk_size
    got = [m for i in range(len(wire)) for m in reader.feed(wire[i : i + 1])]
    assert got == sent
    assert reader.received == len(wire)


def test_a_server_message_bigger_than_a_server_sends_is_refused() -> None:
    writer = ChunkWriter()
    wire = writer.message(Message(3, 20, 0, 0, bytes(2 << 20)))
    with pytest.raises(ValueError):
        ChunkReader().feed(wire[:64])


def test_masking_and_scrubbing() -> None:
    url = "rtmps://live-api-s.facebook.com:443/rtmp/FB-123-abc?s_bl=1"
    assert destinations.masked(url) == "rtmps://live-api-s.facebook.com/rtmp/****"
    assert destinations.masked("rtmp://h:1936/a/b/key") == "rtmp://h:1936/a/b/****"
    said = f"connect to {url} failed: FB-123-abc?s_bl=1 unknown"
    assert "FB-123" not in destinations.scrub(said, url)
    target = destinations.parse("rtmp://[2001:db8::1]/live/k")
    assert target.at("2001:db8::1") == "rtmp://[2001:db8::1]:1935/live/k"


class _Listener:
    """A TCP listener that counts who connects (a destination's would-be target)."""

    def __init__(self) -> None:
        self.connected = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        def accepted(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            self.connected += 1
            w.close()

        self.server = await asyncio.start_server(accepted, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])


async def test_the_address_is_checked_again_when_connecting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A name that resolved to a public address when it was added but to loopback now (DNS
    rebinding) is refused before any connection: the push fails, nothing is dialled."""
    listener = _Listener()
    port = await listener.start()
    real = socket.getaddrinfo

    def rebound(host: str, *args: Any, **kw: Any) -> Any:
        if host == "ingest.platform.example":
            return real("127.0.0.1", *args, **kw)
        return real(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", rebound)
    url = f"rtmp://ingest.platform.example:{port}/live/rebind-key"
    statuses: list[dict[str, Any]] = []
    done = asyncio.Event()

    def report(status: dict[str, Any]) -> None:
        statuses.append(status)
        if status["status"] == "failed":
            done.set()

    destination = Destination("d1", "rebinding", url, "360p", 0)
    pusher = Pusher(destination, FrameBus("video"), FrameBus("audio"), report,
                    allow_private=False, tls=tls_context(None))  # fmt: skip
    pusher.start()
    try:
        await asyncio.wait_for(done.wait(), 10)
    finally:
        await pusher.aclose()
        assert listener.server is not None
        listener.server.close()
    assert listener.connected == 0
    failed = statuses[-1] if statuses[-1]["status"] == "failed" else statuses[-2]
    assert "private" in failed["last_error"] or "loopback" in failed["last_error"]
    assert "rebind-key" not in str(statuses)
