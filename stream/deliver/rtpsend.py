"""The fast fan-out: packetize each encoded frame once, then per viewer only header, SRTP, send.

aiortc's ``RTCRtpSender`` packetizes every frame again for every viewer and awaits four coroutine
layers per packet (sender → DTLS → ICE → aioice) -- about 30 µs of CPU per packet. Here:

* :class:`FastFanout` subscribes to a :class:`~stream.encode.bus.FrameBus` like one viewer would and
  packetizes each frame ONCE (aiortc's own packetizers: VP8 descriptor, H.264 FU-A/STAP-A, Opus).
* Per viewer (:class:`FastViewer`), per frame, one RTP header is built with aiortc's serializer
  (its SSRC, timestamp offset, negotiated extension ids: mid, abs-send-time); per packet only the
  sequence number and marker bit are patched, the packet is SRTP-protected with the viewer's
  keys and handed straight to the UDP socket of the ICE pair aiortc selected.
* A frame goes out packet by packet across all viewers (packet 0 to everyone, then packet 1…), so
  a keyframe reaches the last of many viewers only a little after the first.

aiortc keeps everything else: ICE, DTLS, consent, RTCP. The viewer's ``RTCRtpSender`` still
receives its RTCP: NACKs are answered from a per-viewer history that references the shared
payloads (``_retransmit``, with RTX when negotiated), PLI/FIR go to the shared encoder
(``fanout.route_keyframe_requests``), and its sender reports carry our counters. The hooks are on
private aiortc names (aiortc pinned in pyproject.toml, every name guarded by
tests/test_aiortc_hooks.py).

Backpressure: a viewer whose socket buffer holds more than :data:`MAX_BUFFERED` bytes is behind;
it skips frames until the next keyframe (and asks for one), so nothing queues without bound.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import struct
import time
from collections.abc import Callable
from typing import Any

import av
from aiortc import clock
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import RTP_HISTORY_SIZE, RtpPacket

from core.tasks import cancel_and_wait
from stream.encode.bus import FrameBus
from stream.encode.encoders import Codec, EncodedFrame

log = logging.getLogger(__name__)

HISTORY_FRAMES = 90  # frames whose packets a viewer can ask for again (3 s at 30 fps)
MAX_BUFFERED = 256 * 1024  # bytes waiting in a viewer's socket buffer before it counts as behind
MAX_FRAMES = 45  # frames waiting for the fan-out task (1.5 s at 30 fps); beyond: skip to keyframe
YIELD_EVERY = 1500  # sends between two yields to the event loop
# NACKs are answered within a budget: a viewer earns RETRANSMIT_SHARE of the bytes it is sent,
# up to RETRANSMIT_BURST banked, and each packet goes again at most once per REPEAT_S
RETRANSMIT_SHARE = 0.5
RETRANSMIT_BURST = 128 * 1024
REPEAT_S = 0.1

_MIME = {Codec.VP8: ("video/VP8", 90000), Codec.H264: ("video/H264", 90000),
         Codec.OPUS: ("audio/opus", 48000)}  # fmt: skip
_SEQ = struct.Struct("!H")
_TS = struct.Struct("!I")
_AST = struct.Struct("!I")  # the byte before abs-send-time's 3 bytes, and them

# aiortc 1.16's private RTCRtpSender state (name-mangled), see tests/test_aiortc_hooks.py
SENDER_FIELDS = (
    "_RTCRtpSender__rtp_started",
    "_RTCRtpSender__rtp_exited",
    "_RTCRtpSender__rtp_history",
    "_RTCRtpSender__rtp_header_extensions_map",
    "_RTCRtpSender__mid",
    "_RTCRtpSender__ntp_timestamp",
    "_RTCRtpSender__rtp_timestamp",
    "_RTCRtpSender__octet_count",
    "_RTCRtpSender__packet_count",
)


class Packetized:
    """One encoded frame as RTP payloads, shared by every viewer."""

    __slots__ = ("keyframe", "payloads", "size", "timestamp")

    def __init__(self, payloads: list[bytes], timestamp: int, keyframe: bool) -> None:
        self.payloads = payloads
        self.timestamp = timestamp
        self.keyframe = keyframe
        self.size = sum(len(p) for p in payloads)


class Packetizer:
    def __init__(self, codec: Codec) -> None:
        mime, rate = _MIME[codec]
        self._encoder: Any = get_encoder(RTCRtpCodecParameters(mimeType=mime, clockRate=rate))

    def pack(self, frame: EncodedFrame) -> Packetized:
        packet = av.Packet(frame.data)
        packet.pts = frame.pts
        packet.time_base = frame.time_base
        payloads, timestamp = self._encoder.pack(packet)
        return Packetized(payloads, timestamp, frame.keyframe)


class FastViewer:
    """One viewer's RTP stream on the fast path (its sender's SSRC, keys and socket)."""

    def __init__(self, sender: RTCRtpSender, codec: RTCRtpCodecParameters, video: bool) -> None:
        self.sender = sender
        self.pt = codec.payloadType or 0
        self.ssrc = sender._ssrc
        # the lower half, as aiortc does: a first keyframe that wraps past 65535 could leave the
        # receiver's SRTP with the wrong rollover counter
        self.seq = random.randint(0, 0x7FFF)
        self.ts_origin = random.getrandbits(32)
        self.waiting_keyframe = video
        # the frames sent lately: (first sequence number, RTP timestamp, shared payloads)
        self.history: collections.deque[tuple[int, int, Packetized]] = collections.deque(
            maxlen=HISTORY_FRAMES
        )
        self.packets = 0
        self.octets = 0
        self.skips = 0
        self.retransmits = 0
        self.retransmitted_bytes = 0
        self.nacks_refused = 0  # over the budget, or asked again too soon
        self.retransmit_budget = 0.0
        self._resent_at: dict[int, float] = {}  # sequence number → when it last went again
        self.closed = asyncio.Event()
        s: Any = sender
        self._extmap = s._RTCRtpSender__rtp_header_extensions_map
        self._mid = s._RTCRtpSender__mid
        dtls: Any = sender.transport
        self.protect = dtls._tx_srtp.protect
        self._ice: Any = dtls.transport._connection
        self.header = bytearray()
        self._ast_at: int | None = None  # offset of abs-send-time in our header, -1: none
        self.ts = 0

    def socket(self) -> tuple[Any, Any] | None:
        """The UDP transport and remote address of the ICE pair aiortc selected."""
        pair = self._ice._nominated.get(1)
        if pair is None or pair.protocol is None or pair.protocol.transport is None:
            return None
        return pair.protocol.transport, pair.remote_addr

    def _serialize(self, abs_send_time: int) -> bytes:
        packet = RtpPacket(payload_type=self.pt, sequence_number=self.seq, timestamp=self.ts,
                           ssrc=self.ssrc)  # fmt: skip
        packet.extensions.abs_send_time = abs_send_time
        packet.extensions.mid = self._mid
        return bytes(packet.serialize(self._extmap))

    def begin(self, frame: Packetized, abs_send_time: int) -> None:
        """The RTP header of this frame's packets. aiortc serializes it once per viewer (our
        negotiated extension ids); after that only the timestamp and abs-send-time are patched,
        at the offsets found by serializing two different values."""
        self.ts = (self.ts_origin + frame.timestamp) & 0xFFFFFFFF
        if self._ast_at is None:
            one, two = self._serialize(0x010203), self._serialize(0x0A0B0C)
            diff = [i for i in range(12, len(one)) if one[i] != two[i]]
            self._ast_at = diff[0] if len(diff) == 3 and diff[2] - diff[0] == 2 else -1
            self.header = bytearray(one)
        h = self.header
        if self._ast_at < 0:  # no abs-send-time extension negotiated: nothing to find
            self.header = h = bytearray(self._serialize(abs_send_time))
        else:
            _AST.pack_into(h, self._ast_at - 1, (h[self._ast_at - 1] << 24) | abs_send_time)
        _TS.pack_into(h, 4, self.ts)
        self.history.append((self.seq, self.ts, frame))

    def end(self, frame: Packetized, ntp: int) -> None:
        """Account the frame (the sender's RTCP sender reports read these)."""
        self.seq = (self.seq + len(frame.payloads)) & 0xFFFF
        self.packets += len(frame.payloads)
        self.octets += frame.size
        self.retransmit_budget = min(
            RETRANSMIT_BURST, self.retransmit_budget + frame.size * RETRANSMIT_SHARE
        )
        s: Any = self.sender
        s._RTCRtpSender__ntp_timestamp = ntp
        s._RTCRtpSender__rtp_timestamp = self.ts
        s._RTCRtpSender__packet_count = self.packets
        s._RTCRtpSender__octet_count = self.octets

    def may_retransmit(self, seq: int, size: int, now: float) -> bool:
        """Whether a NACK for ``seq`` (``size`` payload bytes) is answered: what a viewer can
        make us resend is bounded by what it is sent (a NACK flood costs the server at most
        half again its own stream), and a packet asked for again within REPEAT_S is not resent."""
        last = self._resent_at.get(seq)
        if (last is not None and now - last < REPEAT_S) or size > self.retransmit_budget:
            self.nacks_refused += 1
            return False
        self.retransmit_budget -= size
        if len(self._resent_at) >= 4096:  # keep it small: drop what is too old to matter
            self._resent_at = {k: t for k, t in self._resent_at.items() if now - t < REPEAT_S}
        self._resent_at[seq] = now
        self.retransmits += 1
        self.retransmitted_bytes += size
        return True

    def packet(self, seq: int) -> RtpPacket | None:
        """The packet ``seq`` as it was sent (for a retransmission), if still in the history."""
        for first, ts, frame in reversed(self.history):
            offset = (seq - first) & 0xFFFF
            if offset < len(frame.payloads):
                packet = RtpPacket(payload_type=self.pt, sequence_number=seq, timestamp=ts,
                                   ssrc=self.ssrc, payload=frame.payloads[offset],
                                   marker=int(offset == len(frame.payloads) - 1))  # fmt: skip
                packet.extensions.mid = self._mid
                return packet
        return None


def fast_fanout(bus: FrameBus, codec: Codec) -> FastFanout:
    """The fast fan-out of ``bus`` (created on first use; it subscribes while it has viewers)."""
    if bus.fanout is None:
        bus.fanout = FastFanout(bus, codec)
    assert isinstance(bus.fanout, FastFanout)
    return bus.fanout


class FastFanout:
    """Every fast viewer of one bus: it is the bus's one subscriber and sends to all of them."""

    def __init__(self, bus: FrameBus, codec: Codec) -> None:
        self.bus = bus
        self.codec = codec
        self.video = codec is not Codec.OPUS
        self.request_keyframe = bus.request_keyframe
        self.viewers: set[FastViewer] = set()
        self.packets_sent = 0
        self.octets_sent = 0  # payload bytes, as RTP senders count them
        self.cpu_s = 0.0  # CPU time spent sending (this thread's), for the benchmark
        self._packetizer = Packetizer(codec)
        self._queue: collections.deque[Packetized] = collections.deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        # per keyframe sent: seconds between the first and the last viewer having all of it
        self.keyframe_spreads: collections.deque[float] = collections.deque(maxlen=1000)

    # the FrameBus subscriber interface
    def offer(self, frame: EncodedFrame) -> None:
        if len(self._queue) >= MAX_FRAMES:  # the sending task fell behind: drop to a keyframe
            self._queue.clear()
            for v in self.viewers:
                v.waiting_keyframe = self.video
            if self.video and not frame.keyframe:
                self.request_keyframe()
                return
        self._queue.append(self._packetizer.pack(frame))
        self._wakeup.set()

    def close(self) -> None:
        self._closed = True
        self.bus.subscribers.discard(self)
        self._queue.clear()
        for v in self.viewers:
            v.closed.set()
        if self._task is not None:
            self._task.cancel()

    async def aclose(self) -> None:
        self.close()
        await cancel_and_wait(self._task)

    def add(self, viewer: FastViewer) -> None:
        self.viewers.add(viewer)
        self.bus.subscribers.add(self)  # the compositor encodes for buses with subscribers
        if self.video:
            self.request_keyframe()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"fanout-{self.codec.value}"
            )

    def remove(self, viewer: FastViewer) -> None:
        self.viewers.discard(viewer)
        if not self.viewers:  # nobody left: stop encoding for us (the task idles until close)
            self.bus.subscribers.discard(self)
            self._queue.clear()

    async def _run(self) -> None:
        while not self._closed:
            while not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            try:
                await self.send(self._queue.popleft())
            except Exception:  # one bad frame (or a peer torn down under us) must not stop all
                log.exception("fan-out of a %s frame failed", self.codec.value)

    async def send(self, frame: Packetized) -> None:
        """``frame`` to every viewer, packet by packet across viewers."""
        t0 = time.thread_time()
        targets = []
        for v in tuple(self.viewers):
            if v.waiting_keyframe:
                if not frame.keyframe:
                    continue
                v.waiting_keyframe = False
            sock = v.socket()
            if sock is None:
                continue
            if sock[0].get_write_buffer_size() > MAX_BUFFERED:  # behind: skip to a keyframe
                v.skips += 1
                v.waiting_keyframe = self.video
                if self.video:
                    self.request_keyframe()
                continue
            targets.append((v, sock[0], sock[1]))
        if not targets:
            return
        ntp = clock.current_ntp_time()
        abs_send_time = (ntp >> 14) & 0x00FFFFFF
        rows = []
        for v, udp, addr in targets:
            v.begin(frame, abs_send_time)
            rows.append((v.header, v.seq, v.protect, udp.sendto, addr))
        pack_into = _SEQ.pack_into
        payloads = frame.payloads
        last = len(payloads) - 1
        plain = [v.pt for v, _, _ in targets]  # byte 1 of the header: payload type …
        marked = [pt | 0x80 for pt in plain]  # … and with the marker bit, for the last packet
        sent = 0
        final_round = 0.0
        for i, payload in enumerate(payloads):
            if i == last:
                final_round = time.perf_counter()
            marks = marked if i == last else plain
            for (header, seq, protect, sendto, addr), mark in zip(rows, marks, strict=True):
                header[1] = mark
                pack_into(header, 2, (seq + i) & 0xFFFF)
                try:
                    sendto(protect(bytes(header) + payload), addr)
                except Exception:  # its socket closed under us: that viewer is leaving
                    continue
            sent += len(rows)
            if sent >= YIELD_EVERY and i < last:
                sent = 0
                self.cpu_s += time.thread_time() - t0
                await asyncio.sleep(0)
                t0 = time.thread_time()
        if frame.keyframe and self.video:
            self.keyframe_spreads.append(time.perf_counter() - final_round)
        for v, _, _ in targets:
            v.end(frame, ntp)
        self.packets_sent += len(payloads) * len(rows)
        self.octets_sent += frame.size * len(rows)
        self.cpu_s += time.thread_time() - t0


def codec_of(params: RTCRtpCodecParameters) -> Codec:
    mime = params.mimeType.lower()
    for codec, (name, _) in _MIME.items():
        if name.lower() == mime:
            return codec
    raise ValueError(f"no fast path for {params.mimeType}")


def install(sender: RTCRtpSender, fanout_for: Callable[[Codec], FastFanout]) -> None:
    """Make ``sender`` hand its RTP over to the fast fan-out once aiortc starts it.

    aiortc calls ``sender._run_rtp(codec)`` when DTLS is up; ours registers the viewer with the
    codec's :class:`FastFanout` and waits until the sender stops. ``_retransmit`` answers NACKs
    from the viewer's history (aiortc's own ``_retransmit`` adds RTX when negotiated).
    """
    s: Any = sender
    state: dict[str, FastViewer] = {}

    async def run_rtp(codec: RTCRtpCodecParameters) -> None:
        s._RTCRtpSender__rtp_started.set()
        fanout: FastFanout | None = None
        try:  # whatever happens, aiortc's stop() waits for __rtp_exited
            fanout = fanout_for(codec_of(codec))
            viewer = state["viewer"] = FastViewer(sender, codec, fanout.video)
            fanout.add(viewer)
            await viewer.closed.wait()
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("fast sender failed to start")
        finally:
            if fanout is not None and "viewer" in state:
                fanout.remove(state["viewer"])
            s._RTCRtpSender__rtp_exited.set()

    async def retransmit(sequence_number: int) -> None:
        viewer = state.get("viewer")
        packet = viewer.packet(sequence_number) if viewer else None
        if packet is None or viewer is None:
            return
        if not viewer.may_retransmit(sequence_number, len(packet.payload), time.monotonic()):
            return
        s._RTCRtpSender__rtp_history[sequence_number % RTP_HISTORY_SIZE] = packet
        await RTCRtpSender._retransmit(sender, sequence_number)

    s._run_rtp = run_rtp
    s._retransmit = retransmit
