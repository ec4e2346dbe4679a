"""Garbage at the media ports of a live broadcast: empty, random, truncated and lying RTP, RTCP,
STUN and DTLS datagrams from a socket that is none of the peers, at the server's ICE ports of the
publisher's and both viewers' sessions. The broadcast goes on and the viewers keep decoding.

Anyone who learns a port (it is in every answer, and host ports can be scanned) can send these;
aioice hands every datagram that does not parse as STUN to aiortc, whatever its source address.
The datagrams are drawn from a seeded generator: a failure reproduces.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import re
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable

import aioice.ice
import pytest
from aioice import stun
from aiortc import RTCPeerConnection

from conftest import ICE_ADDRESS, make_settings
from jangteo.testkit.clients import Received, WhepClient, WhipClient
from jangteo.testkit.server import RunningServer, running_server
from stream.deliver import rtc_hooks
from stream.deliver.whep import Viewer
from stream.ingest import pattern
from stream.ingest.publisher import PublisherState
from stream.ingest.synthetic import PatternTrack, ToneTrack

from .helpers import is_pattern, wait_for_frame

pytestmark = pytest.mark.timeout(120)

SEED = 20261201
FLOOD_S = 4.0
TICK_S = 0.01
PER_TICK = 6  # datagrams per port per tick: 600 a second, 2,400 per port over the flood
OUR_LOGGERS = ("stream", "chat", "jangteo", "core")
MAX_GROWTH_MB = 50


# -- the garbage (pure: a seeded generator in, bytes out) ----------------------------------------
def _empty(rng: random.Random, username: str) -> bytes:
    return b""


def _random(rng: random.Random, username: str) -> bytes:
    n = rng.choice((1, 2, 3, 19, 20, 21)) if rng.random() < 0.2 else rng.randint(4, 1500)
    return rng.randbytes(n)


def _rtp_truncated(rng: random.Random, username: str) -> bytes:
    return b"\x80" + rng.randbytes(rng.randint(0, 10))  # 1-11 bytes: less than a header


def _rtp_header(rng: random.Random) -> bytes:
    first = 0x80 | rng.getrandbits(6)  # padding, extension and CSRC count bits: lying
    return struct.pack("!BBHII", first, rng.getrandbits(8), rng.getrandbits(16),
                       rng.getrandbits(32), rng.getrandbits(32))  # fmt: skip


def _rtp(rng: random.Random, username: str) -> bytes:
    """A header with a random SSRC and payload type, then garbage (extension words lying)."""
    ext = struct.pack("!HH", 0xBEDE, rng.getrandbits(16)) if rng.random() < 0.3 else b""
    return _rtp_header(rng) + ext + rng.randbytes(rng.choice((0, 1, 3, 100, 1000, 1188)))


def _rtp_oversized(rng: random.Random, username: str) -> bytes:
    """RTP-looking and longer than an MTU: two IP fragments carry it across real networks."""
    return _rtp_header(rng) + rng.randbytes(rng.randint(1500 - 12 + 1, 2800))


def _rtcp(rng: random.Random, username: str) -> bytes:
    """SR, RR, SDES, BYE, APP, RTPFB, PSFB with lying counts and lengths, some truncated, some
    compound."""
    out = b""
    for _ in range(rng.choice((1, 1, 2, 3))):
        first = rng.choice((0x80, 0x81)) | (rng.getrandbits(5) if rng.random() < 0.3 else 0)
        length = rng.choice((0, 1, 2, 6, 0xFFFF, rng.getrandbits(16)))
        body = rng.randbytes(rng.choice((0, 2, 4, 8, 20, 24, 44, 300)))
        out += struct.pack("!BBH", first, rng.randint(200, 206), length) + body
    return out[: rng.randint(1, len(out))] if rng.random() < 0.3 else out


_STUN_ATTRIBUTES = (0x0006, 0x0008, 0x0009, 0x0020, 0x0024, 0x0025, 0x8028, 0x8029, 0x802A)


def _stun(rng: random.Random, username: str) -> bytes:
    """Binding requests (mostly) without or with a wrong MESSAGE-INTEGRITY, lengths that lie,
    attributes too short, too long or claiming 64 KiB."""
    kind = rng.choice((0x0001, 0x0001, 0x0001, 0x0011, 0x0101, 0x0111, 0x0003, rng.getrandbits(14)))
    attrs = b""
    for _ in range(rng.randint(0, 5)):
        attr = rng.choice(_STUN_ATTRIBUTES) if rng.random() < 0.9 else rng.getrandbits(16)
        if attr == 0x0006:
            value = username.encode() if rng.random() < 0.5 else rng.randbytes(rng.randint(0, 40))
        else:
            value = rng.randbytes(rng.choice((0, 1, 2, 3, 4, 8, 12, 19, 20, 21)))
        declared = len(value) if rng.random() < 0.6 else rng.choice(
            (0xFFFF, len(value) + 4, max(0, len(value) - 1), rng.getrandbits(16)))  # fmt: skip
        attrs += struct.pack("!HH", attr, declared) + value + bytes(-len(value) % 4)
    length = len(attrs) if rng.random() < 0.7 else rng.choice((0, 0xFFFF, rng.getrandbits(16)))
    message = struct.pack("!HHI", kind, length, stun.COOKIE) + rng.randbytes(12) + attrs
    return message[: rng.randint(1, len(message))] if rng.random() < 0.15 else message


def _stun_bad_integrity(rng: random.Random, username: str) -> bytes:
    """A well-formed Binding request with the session's real USERNAME, signed with the wrong
    password (or with MESSAGE-INTEGRITY missing)."""
    message = stun.Message(message_method=stun.Method.BINDING,
                           message_class=stun.Class.REQUEST)  # fmt: skip
    message.attributes["USERNAME"] = username
    message.attributes["PRIORITY"] = rng.getrandbits(31)
    message.attributes["ICE-CONTROLLING"] = rng.getrandbits(64)
    if rng.random() < 0.3:
        message.attributes["USE-CANDIDATE"] = None
    if rng.random() < 0.8:
        message.add_message_integrity(rng.randbytes(22))
    message.add_fingerprint()
    return bytes(message)


def _dtls(rng: random.Random, username: str) -> bytes:
    """Records (content type 20-63) of any epoch, lying lengths, ClientHello-looking fragments."""
    out = b""
    for _ in range(rng.choice((1, 1, 2))):
        content = rng.randint(20, 63)
        body = rng.randbytes(rng.choice((0, 1, 12, 13, 64, 300, 1100)))
        if content == 22 and rng.random() < 0.5:  # handshake: ClientHello, fragment fields lying
            body = struct.pack("!BI", 1, rng.getrandbits(32))[:4] + rng.randbytes(8) + body
        version = rng.choice((0xFEFF, 0xFEFD, 0xFEFC, rng.getrandbits(16)))
        header = struct.pack("!BHH", content, version, rng.choice((0, 1, 2, rng.getrandbits(16))))
        declared = len(body) if rng.random() < 0.5 else rng.getrandbits(16)
        out += header + rng.randbytes(6) + struct.pack("!H", declared) + body
    return out[: rng.randint(1, len(out))] if rng.random() < 0.2 else out


GARBAGE: dict[str, Callable[[random.Random, str], bytes]] = {
    "empty": _empty,
    "random": _random,
    "rtp_truncated": _rtp_truncated,
    "rtp": _rtp,
    "rtp_oversized": _rtp_oversized,
    "rtcp": _rtcp,
    "stun": _stun,
    "stun_bad_integrity": _stun_bad_integrity,
    "dtls": _dtls,
}


def plan(rng: random.Random, username: str, count: int) -> list[tuple[str, bytes]]:
    """``count`` datagrams, every kind in turn."""
    kinds = list(GARBAGE)
    return [(kinds[i % len(kinds)], GARBAGE[kinds[i % len(kinds)]](rng, username))
            for i in range(count)]  # fmt: skip


# -- the session's ports, from the SDP -----------------------------------------------------------
_HOST = re.compile(r"^a=candidate:\S+ 1 udp \d+ (\S+) (\d+) typ host", re.I | re.M)
_UFRAG = re.compile(r"^a=ice-ufrag:(\S+)", re.M)


def server_port(pc: RTCPeerConnection) -> tuple[tuple[str, int], str]:
    """The server's host candidate in the answer, and the USERNAME of a request to it."""
    answer, offer = pc.remoteDescription.sdp, pc.localDescription.sdp
    (address,) = {(a, int(p)) for a, p in _HOST.findall(answer)}  # one address, BUNDLE: one port
    server_ufrag, client_ufrag = _UFRAG.findall(answer)[0], _UFRAG.findall(offer)[0]
    return address, f"{server_ufrag}:{client_ufrag}"


def udp_drops(ports: list[tuple[str, int]]) -> dict[int, int]:
    """Datagrams the kernel dropped at these ports, their receive buffers full (for the log)."""
    wanted, drops = {p for _, p in ports}, {}
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        with open(name) as f:
            for line in f.read().splitlines()[1:]:
                fields = line.split()
                port = int(fields[1].rsplit(":", 1)[1], 16)
                if port in wanted:
                    drops[port] = int(fields[-1])
    return drops


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def received_by_server(pc: RTCPeerConnection) -> int:
    """Datagrams the server's DTLS transport of this session has taken in (what is not STUN)."""
    stats = await pc.getStats()
    return sum(s.packetsReceived for s in stats.values() if s.type == "transport")


async def flood(
    sock: socket.socket, plans: dict[tuple[str, int], list[tuple[str, bytes]]]
) -> tuple[collections.Counter[str], collections.Counter[tuple[str, int]]]:
    """Send every plan at its port, PER_TICK a tick; returns the counts sent per kind and the
    STUN responses each port sent back."""
    sent: collections.Counter[str] = collections.Counter()
    answers: collections.Counter[tuple[str, int]] = collections.Counter()
    ticks = int(FLOOD_S / TICK_S)
    start = time.monotonic()
    for tick in range(ticks):
        for port, datagrams in plans.items():
            for kind, data in datagrams[tick * PER_TICK : (tick + 1) * PER_TICK]:
                sock.sendto(data, port)
                sent[kind] += 1
        while True:
            try:
                data, addr = sock.recvfrom(2048)
            except BlockingIOError:
                break
            message = stun.parse_message(data)  # a response to our garbage, or the test fails
            assert message.message_class == stun.Class.ERROR, message
            answers[addr[0], addr[1]] += 1
        await asyncio.sleep(max(0.0, start + (tick + 1) * TICK_S - time.monotonic()))
    return sent, answers


# -- the broadcast -------------------------------------------------------------------------------
@pytest.fixture
async def small_server(redis_url: str) -> AsyncIterator[RunningServer]:
    """320x180: the publisher, the server and three decoding viewers share one process."""
    settings = make_settings(redis_url, video_width=320, video_height=180)
    async with running_server(settings) as s:
        yield s


def _pattern_frame(f: Received) -> bool:
    return f.image is not None and is_pattern(f.image)


def snapshot(viewer: WhepClient) -> tuple[int, int | None]:
    """The latest kept picture's index and its stamped counter (None unless a clean pattern)."""
    for i in range(len(viewer.frames) - 1, -1, -1):
        image = viewer.frames[i].image
        if image is not None:
            return i, pattern.read_counter(image) if is_pattern(image) else None
    return -1, None


async def test_garbage_at_the_media_ports_leaves_the_broadcast_running(
    small_server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    server = small_server
    b = await server.create_broadcast()
    bid = b["id"]
    pub = WhipClient(server.base_url, bid, b["host_token"])
    viewers: list[WhepClient] = []
    try:
        await pub.publish(PatternTrack(320, 180, 30), ToneTrack(440))
        await pub.connected()
        for name in ("a", "b"):
            token = await server.token(bid, "viewer", name)
            viewers.append(WhepClient(server.base_url, bid, token, keep_images=10, sample_every=3))
            await viewers[-1].play()
        for v in viewers:
            await wait_for_frame(v, _pattern_frame, 15)
        media = server.ctx.hub.get(bid)
        assert media is not None
        (pid,) = media.publishers
        server_viewers = list(media.viewers)
        assert len(server_viewers) == 2
        server_pcs = [media.publishers[pid].pc]
        for vid in server_viewers:
            viewer = media.viewers[vid]
            assert isinstance(viewer, Viewer)
            server_pcs.append(viewer.pc)

        rng = random.Random(SEED)
        count = int(FLOOD_S / TICK_S) * PER_TICK
        users = dict(server_port(pc) for pc in [pub.pc, *(v.pc for v in viewers)])
        assert len(users) == 3, users  # three sessions, three ports
        assert all(address == ICE_ADDRESS for address, _ in users)
        plans = {port: plan(rng, username, count) for port, username in users.items()}
        family = socket.AF_INET6 if ":" in ICE_ADDRESS else socket.AF_INET
        before_rx = [await received_by_server(pc) for pc in server_pcs]
        rss_before = rss_mb()

        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.bind((ICE_ADDRESS, 0))
            flood_started = time.time()
            flooding = asyncio.get_running_loop().create_task(flood(sock, plans))
            snapshots: list[list[tuple[int, int | None]]] = []
            health: list[tuple[int, float]] = []
            while not flooding.done():  # once a second: what the viewers show, /healthz
                await asyncio.wait({flooding}, timeout=1.0)
                snapshots.append([snapshot(v) for v in viewers])
                t0 = time.monotonic()
                health.append(((await server.http.get("/healthz")).status_code,
                               time.monotonic() - t0))  # fmt: skip
            sent, answers = flooding.result()
            flood_ended = time.time()
        rss_after = rss_mb()
        after_rx = [await received_by_server(pc) for pc in server_pcs]

        print(f"\nsent per kind ({sum(sent.values())} in {flood_ended - flood_started:.1f} s, "
              f"{len(plans)} ports): {dict(sent)}")  # fmt: skip
        print(f"STUN error responses per port: {dict(answers)}")
        print(f"taken in by the server's DTLS transports: "
              f"{[a - b for a, b in zip(after_rx, before_rx, strict=True)]}")  # fmt: skip
        print(f"kernel drops (full receive buffers) per port: {udp_drops(list(plans))}")
        print(f"RSS {rss_before:.0f} → {rss_after:.0f} MB; snapshots {snapshots}; health {health}")

        # every session is the one it was, still connected
        assert list(media.publishers) == [pid]
        assert media.publishers[pid].state == PublisherState.CONNECTED
        assert sorted(media.viewers) == sorted(server_viewers)
        for pc in [pub.pc, *(v.pc for v in viewers), *server_pcs]:
            assert pc.connectionState == "connected"

        # every port got its share, and the garbage reached the ICE agent and aiortc behind it
        assert sum(sent.values()) == 3 * count and min(sent.values()) >= 3 * count // 10
        for port in plans:
            assert answers[port] > 0, f"{port} never answered a STUN request"
        # (empty and oversized ones stop at the ICE layer: stream/deliver/rtc_hooks.py)
        to_dtls = sum(sent[k] for k in ("random", "rtp_truncated", "rtp", "rtcp", "dtls"))
        for before, after in zip(before_rx, after_rx, strict=True):
            assert after - before > to_dtls // len(plans) // 2, "the garbage did not reach DTLS"

        # the server answered all along, and its memory stayed put
        assert all(status == 200 and took < 1.0 for status, took in health), health
        assert (await server.http.get("/healthz")).status_code == 200
        assert rss_after - rss_before < MAX_GROWTH_MB, f"grew {rss_after - rss_before:.0f} MB"

        # the viewers decoded the pattern during the flood, its counter running on
        assert len(snapshots) >= int(FLOOD_S)
        for i, v in enumerate(viewers):
            seen = [s[i] for s in snapshots]
            assert all(n is not None for _, n in seen), f"viewer {i}: {seen}"
            counters = [n for _, n in seen if n is not None]
            assert counters == sorted(set(counters)), f"viewer {i}: counters {counters}"
            # the publisher's pictures, not one frozen picture repeated: ≥ 15 new ones a second
            (first, n0), (last, n1) = seen[0], seen[-1]
            span = v.frames[last].at - v.frames[first].at
            assert (n1 or 0) - (n0 or 0) >= 15 * span, f"viewer {i}: counters {counters}"
            last_second = [f for f in v.frames if flood_ended - 1 <= f.at <= flood_ended]
            assert len(last_second) >= 15, f"viewer {i}: {len(last_second)} fps at the end"
        # … and after it
        for v in viewers:
            mark = len(v.frames)
            frame = await wait_for_frame(v, _pattern_frame, 5, start=mark + 30)
            assert frame.image is not None
            assert (pattern.read_counter(frame.image) or 0) > max(
                n or 0 for s in snapshots for _, n in s)  # fmt: skip

        # a new viewer joins and decodes
        late = WhepClient(server.base_url, bid, await server.token(bid, "viewer", "late"),
                          keep_images=5)  # fmt: skip
        viewers.append(late)
        await late.play()
        await wait_for_frame(late, _pattern_frame, 10)
    finally:
        for v in viewers:
            await v.aclose()
        await pub.aclose()

    # no traceback from our code, and none from the libraries' datagram paths either
    tracebacks = [r for r in caplog.records
                  if r.name.split(".")[0] in OUR_LOGGERS and r.exc_info]  # fmt: skip
    assert not tracebacks, [r.getMessage() for r in tracebacks]
    library = [r for r in caplog.records
               if r.name.startswith(("asyncio", "aiortc", "aioice"))]  # fmt: skip
    assert not library, [r.getMessage()[:300] for r in library]


# -- the hooks that make it so (stream/deliver/rtc_hooks.py) --------------------------------------
def test_datagrams_that_would_end_a_session_are_dropped_before_aiortc() -> None:
    """aiortc 1.16's DTLS receive loop ends the session on an exception other than
    pylibsrtp.Error: an empty datagram (it reads ``data[0]``) and an RTP/RTCP-looking one over
    1,500 bytes (pylibsrtp raises ValueError) -- from any source address."""
    assert rtc_hooks.SRTP_MAX_BYTES == 1500
    connection = aioice.ice.Connection(ice_controlling=False)
    for data in (b"", b"\x80" * 1501, b"\xbf" + bytes(9000)):
        connection.data_received(data, 1)
    assert connection._queue.empty()
    for data in (b"\x80" * 1500, b"\x16" * 3000, b"\x00"):  # SRTP-sized, DTLS, other: aiortc's
        connection.data_received(data, 1)
    assert connection._queue.qsize() == 3


def test_a_stun_attribute_of_the_wrong_length_is_not_stun() -> None:
    """aioice 0.13's attribute parsers raise struct.error for a short PRIORITY, FINGERPRINT or
    ICE-CONTROLLING: it escaped the datagram callback (an ERROR with a traceback per datagram)."""
    short = struct.pack("!HH", 0x0024, 2) + b"\0\0\0\0"  # PRIORITY, two bytes of four
    data = struct.pack("!HHI", 0x0001, len(short), stun.COOKIE) + bytes(12) + short
    with pytest.raises(struct.error):
        rtc_hooks.original_parse_message(data)
    with pytest.raises(ValueError):
        stun.parse_message(data)
