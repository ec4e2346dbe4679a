"""Fuzzing the RTCP a viewer sends us (stream/deliver/fastfanout.py ``install``, rtpsend.py,
abr.py).

aiortc parses the datagram (``RtcpPacket.parse``: packets or ValueError, which its DTLS
transport drops); everything after that is ours: NACKs answered from the shared history within
the viewer's budget (RTX or the packet again), PLI/FIR to the rung's encoder, REMB and receiver
reports into the viewer's :class:`~stream.deliver.abr.RateController`. Whatever the viewer sends,
our handler raises nothing (an exception there ends aiortc's DTLS loop: the viewer's connection),
every retransmission is a well-formed RTP packet of what was sent, and the controller's rung is
always one of the ladder's. Profiles: tests/fuzz_profiles.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any, cast

from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpParameters,
)
from aiortc.rtp import HeaderExtensionsMap, RtcpPacket, RtpPacket
from hypothesis import example, given
from hypothesis import strategies as st

from stream.deliver.abr import RateController
from stream.deliver.fastfanout import FastFanout, install
from stream.deliver.rtpsend import RETRANSMIT_SHARE, SEQ, FastViewer, Packetized
from stream.encode.bus import FrameBus
from stream.encode.encoders import Codec
from stream.encode.ladder import Rung

from .fuzz_profiles import fuzz

SSRC, RTX_SSRC, PT, RTX_PT = 0x11223344, 0x55667788, 96, 97
LADDER = (Rung("720p", 1280, 720, 2_500_000), Rung("360p", 640, 360, 800_000),
          Rung("180p", 320, 180, 250_000))  # fmt: skip
SR, RR, SDES, BYE, RTPFB, PSFB = 200, 201, 202, 203, 205, 206


class Source:
    """The broadcast's buses, as FastFanout takes them (stream/encode/bus.py BusSource)."""

    def __init__(self) -> None:
        self.ladder: tuple[Rung, ...] = LADDER
        self.sinks: dict[Codec, Any] = {}
        self.buses: dict[str, FrameBus] = {}

    def bus(self, codec: Codec, rung: str | None = None) -> FrameBus:
        name = rung or LADDER[0].name
        return self.buses.setdefault(name, FrameBus("video", rung=name))


class Udp:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendto(self, data: bytes, addr: object) -> None:
        self.sent.append(data)

    def get_write_buffer_size(self) -> int:
        return 0


class Sender:
    """What FastViewer and install() take from aiortc's RTCRtpSender; SRTP is left out (the
    datagrams stay readable)."""

    def __init__(self, rtx: bool) -> None:
        extmap = HeaderExtensionsMap()
        extmap.configure(RTCRtpParameters(headerExtensions=[
            RTCRtpHeaderExtensionParameters(id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
            RTCRtpHeaderExtensionParameters(
                id=3, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"),
        ]))  # fmt: skip
        self.extmap = extmap
        self._ssrc, self._rtx_ssrc = SSRC, RTX_SSRC
        self._RTCRtpSender__rtx_payload_type = RTX_PT if rtx else None
        self._RTCRtpSender__rtp_header_extensions_map = extmap
        self._RTCRtpSender__mid = "0"
        self._RTCRtpSender__rtp_started = asyncio.Event()
        self._RTCRtpSender__rtp_exited = asyncio.Event()
        self.udp = Udp()
        pair = SimpleNamespace(protocol=SimpleNamespace(transport=self.udp),
                               remote_addr=("192.0.2.7", 9))  # fmt: skip
        self.transport = SimpleNamespace(
            _tx_srtp=SimpleNamespace(protect=bytes),
            transport=SimpleNamespace(_connection=SimpleNamespace(_nominated={1: pair})),
        )
        self.to_aiortc: list[object] = []  # what our handler passed on to aiortc's own

    async def _handle_rtcp_packet(self, packet: object) -> None:
        self.to_aiortc.append(packet)


class Rig:
    def __init__(self, sender: Sender, fanout: FastFanout, viewer: FastViewer) -> None:
        self.sender, self.fanout, self.viewer = sender, fanout, viewer
        self.payloads: dict[int, bytes] = {}  # sequence number → the payload sent with it
        self.budget = 0.0

    async def send_frames(self, sizes: list[list[int]]) -> None:
        for n, frame_sizes in enumerate(sizes):
            payloads = [bytes([n % 256, i % 256]) * (s // 2 + 1) for i, s in enumerate(frame_sizes)]
            seq = self.viewer.seq
            await self.fanout.send(self.viewer.rung, Packetized(payloads, 3000 * n, n == 0))
            for i, p in enumerate(payloads):
                self.payloads[(seq + i) & 0xFFFF] = p
            self.budget += sum(len(p) for p in payloads) * RETRANSMIT_SHARE

    async def feed(self, datagram: bytes) -> None:
        """One RTCP datagram as aiortc's DTLS transport hands it on (_handle_rtcp_data)."""
        try:
            packets = RtcpPacket.parse(datagram)
        except ValueError:
            return  # aiortc drops it
        handle: Any = self.sender._handle_rtcp_packet  # ours, after install()
        for packet in packets:
            await handle(packet)


@contextlib.asynccontextmanager
async def rig(rtx: bool, first_seq: int) -> AsyncIterator[Rig]:
    sender = Sender(rtx)
    fanout = FastFanout(Source(), Codec.VP8)
    install(
        cast(Any, sender), lambda codec: fanout, "", lambda f: RateController(f.bitrates, 0, 0.0)
    )
    codec = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=PT)
    run: Any = sender._run_rtp  # type: ignore[attr-defined]
    task = asyncio.get_running_loop().create_task(run(codec))
    await sender._RTCRtpSender__rtp_started.wait()  # set, then the viewer added: one step
    (viewer,) = fanout.viewers
    viewer.seq = first_seq
    try:
        yield Rig(sender, fanout, viewer)
    finally:
        await fanout.aclose()
        await task


# -- datagrams ------------------------------------------------------------------------------------


def rtcp(pt: int, count: int, payload: bytes, padding: int = 0) -> bytes:
    payload += b"\0" * (-len(payload) % 4)
    if padding:
        payload += b"\0" * (padding - 1) + bytes([padding])
    return struct.pack("!BBH", 0x80 | (0x20 if padding else 0) | count, pt, len(payload) // 4) + (
        payload
    )


u16, u32 = st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)
ssrcs = st.sampled_from([SSRC, RTX_SSRC, 0]) | u32


@st.composite
def nacks(draw: st.DrawFn) -> bytes:
    pairs = draw(st.lists(st.tuples(u16 | st.integers(0xFFF0, 0xFFFF), u16), max_size=40))
    fci = b"".join(struct.pack("!HH", pid, blp) for pid, blp in pairs)
    return rtcp(RTPFB, draw(st.sampled_from([1, 1, 1, 0, 3])), struct.pack("!LL", 1, draw(ssrcs))
                + fci)  # fmt: skip


@st.composite
def psfbs(draw: st.DrawFn) -> bytes:
    fmt = draw(st.sampled_from([1, 4, 15, 15, 15, 2, 3, 0]))
    if fmt == 15 and draw(st.booleans()):  # REMB: bitrate, then as many SSRCs as it says (or not)
        listed = draw(st.lists(ssrcs, max_size=4))
        declared = draw(st.integers(0, 255) | st.just(len(listed)))
        exp, mantissa = draw(st.integers(0, 63)), draw(st.integers(0, 0x3FFFF))
        fci = (
            b"REMB"
            + bytes([declared, exp << 2 | mantissa >> 16])
            + struct.pack("!H", mantissa & 0xFFFF)
        )
        fci += b"".join(struct.pack("!L", s) for s in listed)
    else:
        fci = draw(st.binary(max_size=24))
    return rtcp(PSFB, fmt, struct.pack("!LL", 1, draw(ssrcs)) + fci)


@st.composite
def reports(draw: st.DrawFn) -> bytes:
    blocks = draw(st.lists(st.tuples(ssrcs, st.integers(0, 255), st.binary(min_size=19,
                                                                            max_size=19)),
                           max_size=3))  # fmt: skip
    body = b"".join(struct.pack("!LB", s, f) + rest for s, f, rest in blocks)
    if draw(st.booleans()):
        return rtcp(RR, len(blocks), struct.pack("!L", 1) + body)
    return rtcp(SR, len(blocks), struct.pack("!L", 1) + draw(st.binary(min_size=20, max_size=20))
                + body)  # fmt: skip


packets = (
    nacks()
    | psfbs()
    | reports()
    | st.builds(
        rtcp, st.sampled_from([SDES, BYE, 204, 207]), st.integers(0, 31), st.binary(max_size=32)
    )
)


@st.composite
def datagrams(draw: st.DrawFn) -> bytes:
    data = bytearray(b"".join(draw(st.lists(packets, min_size=1, max_size=3))))
    if draw(st.integers(0, 4)) == 0 and data:  # damaged on the way
        i = draw(st.integers(0, len(data) - 1))
        data[i] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)


REMB_SHORT = rtcp(PSFB, 15, struct.pack("!LL", 1, 0) + b"REMB\x03\x00\x10\x00" + struct.pack(
    "!L", SSRC))  # fmt: skip  # says three SSRCs, carries one
NACK_WRAP = rtcp(RTPFB, 1, struct.pack("!LLHH", 1, SSRC, 0xFFFF, 0x0003))  # 65535, 0, 1


# -- properties -----------------------------------------------------------------------------------


def _check_retransmissions(r: Rig, sent: list[bytes], rtx: bool) -> None:
    for data in sent:
        packet = RtpPacket.parse(data, r.sender.extmap)
        if rtx:
            assert (packet.ssrc, packet.payload_type) == (RTX_SSRC, RTX_PT)
            (seq,) = SEQ.unpack(packet.payload[:2])
            payload = packet.payload[2:]
        else:
            assert (packet.ssrc, packet.payload_type) == (SSRC, PT)
            seq, payload = packet.sequence_number, packet.payload
        assert r.payloads[seq] == payload  # exactly what went out under that number
    assert r.viewer.retransmitted_bytes <= r.budget  # a NACK flood costs at most the share


@fuzz(0.5)
@given(
    rtx=st.booleans(),
    first_seq=st.integers(0xFFF0, 0xFFFF) | u16,
    sizes=st.lists(st.lists(st.integers(0, 1200), min_size=1, max_size=6), min_size=1,
                   max_size=4),
    incoming=st.lists(datagrams() | st.binary(max_size=64), min_size=1, max_size=6),
)  # fmt: skip
@example(rtx=True, first_seq=0xFFFE, sizes=[[900] * 4], incoming=[NACK_WRAP])  # was struct.error
@example(rtx=False, first_seq=0xFFFE, sizes=[[900] * 4], incoming=[NACK_WRAP])  # (RTP serialize)
@example(rtx=True, first_seq=0, sizes=[[10]], incoming=[REMB_SHORT])  # was struct.error
async def test_any_rtcp_is_handled_and_retransmissions_are_what_was_sent(
    rtx: bool, first_seq: int, sizes: list[list[int]], incoming: list[bytes]
) -> None:
    async with rig(rtx, first_seq) as r:
        await r.send_frames(sizes)
        before = len(r.sender.udp.sent)
        for datagram in incoming:
            await r.feed(datagram)
        _check_retransmissions(r, r.sender.udp.sent[before:], rtx)
        assert r.viewer.rung in r.fanout.rungs and r.viewer.target in r.fanout.rungs
        assert r.viewer.abr is not None and 0 <= r.viewer.abr.rung < len(LADDER)
        assert len(r.viewer._nacked) <= 0x10000 and len(r.viewer._resent_at) <= 0x10000


@fuzz(0.25)
@given(
    first_seq=u16 | st.integers(0xFFF0, 0xFFFF), lost=st.lists(st.integers(0, 0x1000F), max_size=64)
)
@example(first_seq=0xFFFE, lost=[0xFFFF, 0x10000, 0x10001])  # was struct.error
async def test_nacks_at_the_sequence_wrap_get_the_packet_they_name(
    first_seq: int, lost: list[int]
) -> None:
    async with rig(True, first_seq) as r:
        await r.send_frames([[1000] * 8])
        r.viewer.retransmit_budget = float("inf")  # here: which packet, not how many
        r.budget = float("inf")
        before = len(r.sender.udp.sent)
        r.fanout.retransmit(r.viewer, lost)
        sent = r.sender.udp.sent[before:]
        _check_retransmissions(r, sent, True)
        wanted = {s & 0xFFFF for s in lost} & set(r.payloads)
        got = {SEQ.unpack(RtpPacket.parse(d, r.sender.extmap).payload[:2])[0] for d in sent}
        assert got == wanted


# -- the rate controller alone (pure) -------------------------------------------------------------

events = st.lists(
    st.tuples(
        st.sampled_from(["observe", "report", "remb", "keyframe", "backlog", "decide",
                         "switched"]),
        st.floats(0, 3, allow_nan=False),  # seconds since the previous event
        st.integers(0, 400),  # packets sent since (observe)
        st.integers(0, 2**40),  # a REMB's bitrate (up to what 6+18 bits can say)
        st.integers(0, 255),  # a receiver report's fraction lost, in 256ths
    ),
    max_size=80,
)  # fmt: skip


@fuzz()
@given(st.lists(st.integers(1, 20_000_000), min_size=1, max_size=5), st.integers(-3, 8), events)
def test_the_controller_always_picks_a_rung_of_the_ladder(
    bitrates: list[int], start: int, seq: list[tuple[str, float, int, int, int]]
) -> None:
    now, packets, octets, lost = 0.0, 0, 0, 0
    c = RateController(sorted(bitrates, reverse=True), start, now)
    for kind, dt, n, bitrate, fraction in seq:
        now += dt
        if kind == "observe":
            packets, octets, lost = packets + n, octets + n * 1100, lost + fraction % (n + 1)
            c.observe(packets, octets, lost, now)
        elif kind == "report":
            c.report(fraction / 256, now)
        elif kind == "remb":
            c.remb(bitrate, now)
        elif kind == "keyframe":
            c.keyframe_request(now)
        elif kind == "backlog":
            c.backlog(now)
        elif kind == "switched":
            c.switched(now)
        else:
            assert 0 <= c.decide(now) < len(bitrates)
        assert 0 <= c.rung < len(bitrates)
        loss = c.loss(now)
        assert loss is None or 0.0 <= loss <= 1.0
        rate = c.rate(now)
        assert rate is None or rate >= 0.0
    assert len(c._slices) <= len(seq)
