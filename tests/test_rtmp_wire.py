"""RTMP's wire pieces on their own: AMF0, chunking both ways, URL masking and address checks,
and the publisher against a scripted server (what it sends, how it retries, what it reports)."""

from __future__ import annotations

import asyncio
import itertools
import socket
from typing import Any

import numpy as np
import pytest
from av import AudioFrame

from stream.deliver.rtmp import amf, destinations
from stream.deliver.rtmp import pusher as pusher_module
from stream.deliver.rtmp.chunks import AUDIO, VIDEO, ChunkReader, ChunkWriter, Message
from stream.deliver.rtmp.destinations import Destination
from stream.deliver.rtmp.pusher import Pusher, tls_context
from stream.deliver.rtmp.session import RtmpSession
from stream.encode.bus import FrameBus
from stream.encode.encoders import (
    AAC_CONFIG,
    VIDEO_TIME_BASE,
    AacEncoder,
    Codec,
    EncodedFrame,
    VideoEncoder,
)
from stream.ingest.synthetic import pattern_frame

from .rtmp_fake import FakeRtmpServer


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
    url = "rtmps://live-api-s.facebook.com:443/rtmp/FB-123-abc?s_bl=1&a=Zq8sEcReT"
    assert destinations.masked(url) == "rtmps://live-api-s.facebook.com/rtmp/****"
    assert destinations.masked("rtmp://h:1936/a/b/key") == "rtmp://h:1936/a/b/****"
    # a "/" in the key's query does not move where the key starts
    assert destinations.masked("rtmp://h/app/SECRETKEY123?token=abc/def") == "rtmp://h/app/****"
    # a server echoing the key, its bare part or a query value: none of it comes through
    for echoed in ("FB-123-abc", "FB-123-abc?s_bl=1&a=Zq8sEcReT", "Zq8sEcReT", url):
        assert "FB-123" not in destinations.scrub(f"refused {echoed}!", url)
        assert "Zq8s" not in destinations.scrub(f"refused {echoed}!", url)
    # IPv6 literals survive a round trip (and keep their brackets where they are written)
    target = destinations.parse("rtmp://[2606:4700::1111]/live/k")
    assert target.url == "rtmp://[2606:4700::1111]:1935/live/k"
    assert destinations.parse(target.url) == target
    assert target.tc_url == "rtmp://[2606:4700::1111]:1935/live"
    assert destinations.masked(target.url) == "rtmp://[2606:4700::1111]/live/****"


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("1.1.1.1", True), ("2606:4700::1111", True), ("127.0.0.1", False), ("10.1.2.3", False),
        ("100.100.100.200", False), ("169.254.169.254", False), ("::1", False),
        ("::ffff:127.0.0.1", False), ("2002:a00:1::1", False), ("fec0::1", False),
        ("fe80::1%eth0", False), ("224.0.0.1", False), ("0.0.0.0", False),
    ],
)  # fmt: skip
def test_what_counts_as_public(address: str, public: bool) -> None:
    assert destinations.public_address(address) is public


def _pusher(url: str, report: Any, video: FrameBus | None = None) -> Pusher:
    destination = Destination("d1", "test", url, "360p", 0)
    return Pusher(destination, video or FrameBus("video"), FrameBus("audio"), report,
                  allow_private=True, tls=lambda: tls_context(None))  # fmt: skip


class Statuses:
    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.changed = asyncio.Event()

    def __call__(self, status: dict[str, Any]) -> None:
        self.seen.append(status)
        self.changed.set()

    async def until(self, check: Any, timeout: float = 10) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while not (self.seen and check(self.seen[-1])):
                self.changed.clear()
                await self.changed.wait()
        return self.seen[-1]


async def test_the_connection_goes_to_the_address_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The name is resolved (and checked) once per connection; the connection goes to the
    address that passed, the name only names the certificate (no second lookup to rebind)."""
    lookups: list[str] = []
    real = socket.getaddrinfo

    def resolver(host: str, *args: Any, **kw: Any) -> Any:
        if host == "ingest.platform.example":
            lookups.append(host)
            return real("127.0.0.9", *args, **kw)
        return real(host, *args, **kw)

    opened: list[tuple[Any, ...]] = []

    async def open_(*args: Any) -> Any:
        opened.append(args)
        raise ConnectionRefusedError("nobody there")

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    monkeypatch.setattr(RtmpSession, "open", open_)
    statuses = Statuses()
    pusher = _pusher("rtmps://ingest.platform.example:4443/app/the-key", statuses)
    pusher.start()
    try:
        await statuses.until(lambda s: s["status"] == "retrying")
    finally:
        await pusher.aclose()
    address, port, tls, name, tc_url, app, key = opened[0]
    assert (address, port, name) == ("127.0.0.9", 4443, "ingest.platform.example")
    assert tls is not None and tls.check_hostname
    assert (tc_url, app, key) == ("rtmps://ingest.platform.example:4443/app", "app", "the-key")
    assert len(lookups) == len(opened) == 1


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


async def test_a_name_that_now_resolves_inside_is_never_dialled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A name that was public when it was added but resolves to loopback now (DNS rebinding)
    is refused before any connection: the push fails, nothing is dialled, it stops asking for
    frames."""
    listener = _Listener()
    port = await listener.start()
    real = socket.getaddrinfo

    def rebound(host: str, *args: Any, **kw: Any) -> Any:
        if host == "ingest.platform.example":
            return real("127.0.0.1", *args, **kw)
        return real(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", rebound)
    statuses = Statuses()
    video = FrameBus("video")
    destination = Destination(
        "d1", "rebinding", f"rtmp://ingest.platform.example:{port}/live/rebind-key", "360p", 0
    )
    pusher = Pusher(destination, video, FrameBus("audio"), statuses, allow_private=False,
                    tls=lambda: tls_context(None))  # fmt: skip
    pusher.start()
    try:
        failed = await statuses.until(lambda s: s["status"] == "failed")
    finally:
        await pusher.aclose()
        assert listener.server is not None
        listener.server.close()
    assert listener.connected == 0
    assert "loopback or private" in failed["last_error"]
    assert "rebind-key" not in str(statuses.seen)
    assert pusher not in video.subscribers


async def test_a_resolver_failure_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pusher_module, "BACKOFF_S", 0.01)
    fake = FakeRtmpServer("start")
    port = await fake.start()
    failures = [2]
    real = socket.getaddrinfo

    def flaky(host: str, *args: Any, **kw: Any) -> Any:
        if host == "ingest.platform.example":
            if failures[0]:
                failures[0] -= 1
                raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
            return real("127.0.0.1", *args, **kw)
        return real(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", flaky)
    statuses = Statuses()
    pusher = _pusher(f"rtmp://ingest.platform.example:{port}/live/k", statuses)
    pusher.start()
    try:
        await statuses.until(lambda s: s["status"] == "live")
    finally:
        await pusher.aclose()
        await fake.aclose()
    assert [s["status"] for s in statuses.seen][:4] == ["connecting", "retrying", "retrying",
                                                        "retrying"]  # fmt: skip
    assert "cannot resolve" in (statuses.seen[1]["last_error"] or "")


async def test_a_refusal_is_reported_without_the_key() -> None:
    fake = FakeRtmpServer("refuse")
    await fake.start()
    key = "sk-live-echo-7c1d9e?auth=Zq8sEcReT"
    statuses = Statuses()
    video = FrameBus("video", request_keyframe=lambda: asked.append(1))
    asked: list[int] = []
    pusher = _pusher(fake.url(key), statuses, video)
    pusher.start()
    try:
        d = await statuses.until(lambda s: s["status"] == "retrying")
        # not publishing: frames offered meanwhile are neither kept nor asked for
        for i in range(200):
            pusher.offer(EncodedFrame(b"", i * 3000, VIDEO_TIME_BASE, False, 0.0))
    finally:
        await pusher.aclose()
        await fake.aclose()
    assert "NetStream.Publish.BadName" in d["last_error"]
    assert "sk-live" not in str(statuses.seen) and "Zq8s" not in str(statuses.seen)
    assert asked == [] and not pusher._queue


async def test_a_platform_that_takes_the_key_then_hangs_up_backs_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pusher_module, "BACKOFF_S", 0.02)
    fake = FakeRtmpServer("drop")
    await fake.start()
    statuses = Statuses()
    pusher = _pusher(fake.url("dropped"), statuses)
    pusher.start()
    try:
        async with asyncio.timeout(10):
            while len(fake.connections) < 5:
                statuses.changed.clear()
                await statuses.changed.wait()
    finally:
        await pusher.aclose()
        await fake.aclose()
    gaps = [b - a for a, b in itertools.pairwise(fake.connections)]
    assert gaps[-1] > 4 * gaps[0], f"the waits double: {gaps}"


async def test_what_a_platform_receives_is_flv_from_the_first_keyframe() -> None:
    """Sequence headers first (AVC, AAC), then frames; time starts at 0 on the first keyframe
    and never goes back, per stream."""
    fake = FakeRtmpServer("start")
    await fake.start()
    video, audio = FrameBus("video"), FrameBus("audio")
    statuses = Statuses()
    destination = Destination("d1", "flv", fake.url("flv-key"), "180p", 0)
    pusher = Pusher(destination, video, audio, statuses, allow_private=True,
                    tls=lambda: tls_context(None))  # fmt: skip
    encoder = VideoEncoder(Codec.H264, 320, 180, 30, 300_000)
    aac = AacEncoder()
    pusher.start()
    try:
        await statuses.until(lambda s: s["status"] == "live")
        for i in range(45):
            video.publish(encoder.encode(pattern_frame(i, 320, 180), i, i % 30 == 0))
            tone = np.zeros((1, 960 * 2), np.int16)
            chunk = AudioFrame.from_ndarray(tone, format="s16", layout="stereo")
            chunk.sample_rate = 48000
            audio.publish(aac.encode(chunk, i))
            await asyncio.sleep(0)  # the pusher sends as frames come
        async with asyncio.timeout(10):
            while sum(m.type_id == VIDEO for m in fake.media) < 30:
                fake.got_media.clear()
                await fake.got_media.wait()
    finally:
        await pusher.aclose()
        await fake.aclose()
    videos = [m for m in fake.media if m.type_id == VIDEO]
    audios = [m for m in fake.media if m.type_id == AUDIO]
    assert videos[0].payload[:2] == b"\x17\x00" and videos[0].timestamp == 0  # avcC
    assert videos[1].payload[:2] == b"\x17\x01" and videos[1].timestamp == 0  # the keyframe
    assert all(m.payload[:2] in (b"\x17\x01", b"\x27\x01") for m in videos[1:])
    assert audios[0].payload == b"\xaf\x00" + AAC_CONFIG
    assert all(m.payload[:2] == b"\xaf\x01" for m in audios[1:])
    for stream in (videos, audios):
        stamps = [m.timestamp for m in stream]
        assert stamps == sorted(stamps)
    assert [m.timestamp for m in videos[1:4]] == [0, 33, 67]
