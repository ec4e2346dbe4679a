"""The fast fan-out: packetize each encoded frame once, then per viewer only header, SRTP, send.

aiortc's ``RTCRtpSender`` packetizes every frame again for every viewer and awaits four coroutine
layers per packet (sender → DTLS → ICE → aioice) -- about 30 µs of CPU per packet. Here one
:class:`FastFanout` per codec of a broadcast (per process: the origin, or a worker):

* subscribes to the bus of each rung some viewer is on or moving to, and to no other (so the
  compositor encodes only those: dynacast), and packetizes each frame ONCE per rung (aiortc's
  own packetizers: VP8 descriptor, H.264 FU-A/STAP-A, Opus);
* takes the frames of one tick (every rung's) together: a viewer moving to another rung switches
  at that rung's keyframe, before anything of that tick is sent, so it gets exactly one picture
  per tick and its sequence numbers and timestamps run on (stream/deliver/rtpsend.py);
* sends each frame packet by packet across the viewers of its rung (packet 0 to everyone, then
  packet 1…), so a keyframe reaches the last of many viewers only a little after the first;
* answers each viewer's RTCP itself (:func:`install`): NACKs from the shared history (RTX when
  negotiated), PLI/FIR to the rung's rate-limited encoder, receiver reports and REMB into the
  viewer's :class:`~stream.deliver.abr.RateController`, which picks its rung.

aiortc keeps everything else: ICE, DTLS, consent, sender reports (from our counters).

Backpressure: a viewer whose socket buffer holds more than :data:`MAX_BUFFERED` bytes is behind;
it skips frames until the next keyframe (and asks for one), so nothing queues without bound.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import struct
import time
from collections.abc import Callable
from typing import Any

from aiortc import clock
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    unpack_remb_fci,
)

from core.tasks import cancel_and_wait
from stream.encode.bus import BusSource, FrameBus
from stream.encode.encoders import Codec, EncodedFrame

from .abr import RateController
from .rtpsend import SEQ, FastViewer, Packetized, Packetizer, codec_of

log = logging.getLogger(__name__)

MAX_BUFFERED = 256 * 1024  # bytes waiting in a viewer's socket buffer before it counts as behind
MAX_TICKS = 45  # ticks waiting for the fan-out task (1.5 s at 30 fps); beyond: skip to keyframe
YIELD_EVERY = 1500  # sends between two yields to the event loop
DECIDE_EVERY = 8  # ticks between two looks at the viewers' links (≈ 4 a second at 30 fps)
ASK_AGAIN_S = 1.0  # a switch still waiting for its keyframe asks again after this


class RungTap:
    """The fan-out's subscription to one rung's bus."""

    def __init__(self, fanout: FastFanout, rung: str, bus: FrameBus) -> None:
        self.fanout, self.rung, self.bus = fanout, rung, bus

    def offer(self, frame: EncodedFrame) -> None:
        self.fanout.offer(self.rung, frame)

    def close(self) -> None:  # the bus closed: the broadcast has ended here
        self.fanout.close()


def fast_fanout(source: BusSource, codec: Codec) -> FastFanout:
    """The fast fan-out of ``codec`` (created on first use; it subscribes while it has viewers)."""
    fanout = source.sinks.get(codec)
    if fanout is None:
        fanout = source.sinks[codec] = FastFanout(source, codec)
    assert isinstance(fanout, FastFanout)
    return fanout


class FastFanout:
    """Every fast viewer of one codec of a broadcast, on whichever rung each is."""

    def __init__(self, source: BusSource, codec: Codec) -> None:
        self.source = source
        self.codec = codec
        self.video = codec is not Codec.OPUS
        self.rungs = [r.name for r in source.ladder] if self.video else [""]
        self.bitrates = [r.bitrate for r in source.ladder] if self.video else [0]
        self.viewers: set[FastViewer] = set()
        self.on_rung: dict[str, set[FastViewer]] = {r: set() for r in self.rungs}
        self.moving: set[FastViewer] = set()  # viewers whose target is another rung
        self.taps: dict[str, RungTap] = {}
        self.packets_sent = 0
        self.octets_sent = 0  # payload bytes, as RTP senders count them
        self.retransmissions = 0
        self.switches_up = self.switches_down = 0
        self.cpu_s = 0.0  # CPU time spent sending (this thread's), for the benchmark
        self._packetizers = {r: Packetizer(codec) for r in self.rungs}
        self._queue: collections.deque[tuple[int, str, Packetized]] = collections.deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._ticks = 0
        # per keyframe sent: seconds between the first and the last viewer having all of it
        self.keyframe_spreads: collections.deque[float] = collections.deque(maxlen=1000)

    # -- the buses -------------------------------------------------------------------------------
    def bus(self, rung: str) -> FrameBus:
        return self.source.bus(self.codec, rung or None)

    def request_keyframe(self, rung: str) -> None:
        if self.video:
            self.bus(rung).request_keyframe()

    def _want(self, rung: str) -> None:
        if rung not in self.taps and not self._closed:
            bus = self.bus(rung)
            tap = self.taps[rung] = RungTap(self, rung, bus)
            bus.add(tap)  # the encoder of this rung runs while someone takes it

    def _prune(self) -> None:
        """Leave the buses of rungs nobody is on or moving to (their encoders stop)."""
        needed = {r for r, vs in self.on_rung.items() if vs} | {v.target for v in self.moving}
        for rung in [r for r in self.taps if r not in needed]:
            tap = self.taps.pop(rung)
            tap.bus.discard(tap)

    def offer(self, rung: str, frame: EncodedFrame) -> None:
        """A frame of ``rung`` from its bus (the rungs of one tick arrive together)."""
        if len(self._queue) >= MAX_TICKS * max(1, len(self.taps)):  # the task fell behind
            self._queue.clear()
            for v in self.viewers:
                v.waiting_keyframe = self.video
            for r in self.taps:
                self.request_keyframe(r)
            if self.video and not frame.keyframe:
                return
        self._queue.append((frame.pts, rung, self._packetizers[rung].pack(frame)))
        self._wakeup.set()

    # -- viewers ---------------------------------------------------------------------------------
    def add(self, viewer: FastViewer) -> None:
        if viewer.rung not in self.on_rung:
            viewer.rung = viewer.target = self.rungs[0]
        self.viewers.add(viewer)
        self.on_rung[viewer.rung].add(viewer)
        self._want(viewer.rung)
        self.request_keyframe(viewer.rung)
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"fanout-{self.codec.value}"
            )

    def remove(self, viewer: FastViewer) -> None:
        self.viewers.discard(viewer)
        self.moving.discard(viewer)
        self.on_rung.get(viewer.rung, set()).discard(viewer)
        self._prune()
        if not self.viewers:  # nobody left: the task idles until close
            self._queue.clear()

    def retarget(self, viewer: FastViewer, rung: str, now: float) -> None:
        """Move ``viewer`` to ``rung`` at that rung's next keyframe."""
        viewer.target = rung
        if rung == viewer.rung:
            self.moving.discard(viewer)
            self._prune()
            return
        self.moving.add(viewer)
        self._want(rung)
        self.request_keyframe(rung)
        viewer.asked_at = now
        self._prune()

    def keyframe_request(self, viewer: FastViewer) -> None:
        """A viewer's PLI/FIR: its rung's encoder, rate-limited -- unless its link is losing so
        much that it goes down a rung instead (that switch brings its own keyframe)."""
        now = time.monotonic()
        if viewer.abr is not None:
            viewer.abr.keyframe_request(now)
            if self._decide(viewer, now):
                return
        self.request_keyframe(viewer.rung)

    def _decide(self, viewer: FastViewer, now: float) -> bool:
        """Ask the viewer's controller; True when it moves the viewer."""
        abr = viewer.abr
        assert abr is not None
        abr.observe(viewer.packets, viewer.octets, viewer.lost, now)
        want = self.rungs[abr.decide(now)]
        if want == viewer.target:
            return False
        rate, loss = abr.rate(now), abr.loss(now)  # for the log line only
        down = self.rungs.index(want) > self.rungs.index(viewer.rung)
        if down:
            self.switches_down += 1
        else:
            self.switches_up += 1
        log.info(
            "viewer %x %s %s → %s (sent %.0f kbit/s, lost %s)", viewer.ssrc,
            "down" if down else "up", viewer.rung, want, (rate or 0) / 1000,
            "-" if loss is None else f"{loss:.0%}",
        )  # fmt: skip
        self.retarget(viewer, want, now)
        return True

    # -- sending ---------------------------------------------------------------------------------
    def close(self) -> None:
        self._closed = True
        for tap in list(self.taps.values()):
            tap.bus.discard(tap)
        self.taps.clear()
        self._queue.clear()
        for v in self.viewers:
            v.closed.set()
        if self._task is not None:
            self._task.cancel()

    async def aclose(self) -> None:
        self.close()
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while not self._closed:
            while not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            pts = self._queue[0][0]
            tick = []
            while self._queue and self._queue[0][0] == pts:
                tick.append(self._queue.popleft())
            try:
                await self.send_tick([(rung, frame) for _, rung, frame in tick])
            except Exception:  # one bad frame (or a peer torn down under us) must not stop all
                log.exception("fan-out of a %s frame failed", self.codec.value)

    async def send_tick(self, frames: list[tuple[str, Packetized]]) -> None:
        """One tick: the switches it allows first, then each rung's frame to its viewers."""
        now = time.monotonic()
        if self.moving:
            keyframes = {rung for rung, f in frames if f.keyframe}
            for v in list(self.moving):
                if v.target in keyframes:  # at the target's keyframe, before anything is sent
                    self.on_rung[v.rung].discard(v)
                    v.rung = v.target
                    self.on_rung[v.rung].add(v)
                    v.waiting_keyframe = False
                    v.switches += 1
                    self.moving.discard(v)
                    if v.abr is not None:
                        v.abr.switched(now)
                elif now - v.asked_at > ASK_AGAIN_S:
                    self.request_keyframe(v.target)
                    v.asked_at = now
            self._prune()
        for rung, frame in frames:
            await self.send(rung, frame)
        self._ticks += 1
        if self._ticks % DECIDE_EVERY == 0:
            for v in [v for v in self.viewers if v.abr is not None]:
                self._decide(v, now)

    async def send(self, rung: str, frame: Packetized) -> None:
        """``frame`` to every viewer of ``rung``, packet by packet across viewers."""
        t0 = time.thread_time()
        targets = []
        for v in tuple(self.on_rung.get(rung, ())):
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
                self.request_keyframe(rung)
                if v.abr is not None:
                    v.abr.backlog(time.monotonic())
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
        pack_into = SEQ.pack_into
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

    def retransmit(self, viewer: FastViewer, lost: list[int]) -> None:
        """Answer a viewer's NACK from the shared history, straight to its socket."""
        # aiortc reads a NACK's bitmask as pid + 1..16 without wrapping: 65535 → 65536 is 0
        lost = [seq & 0xFFFF for seq in lost]
        now = time.monotonic()
        viewer.newly_lost(lost, now)
        sock = viewer.socket()
        if sock is None:
            return
        t0 = time.thread_time()
        for seq in lost:
            data = viewer.retransmission(seq, now)
            if data is not None:
                try:
                    sock[0].sendto(data, sock[1])
                except Exception:
                    return
                self.retransmissions += 1
        self.cpu_s += time.thread_time() - t0


def install(
    sender: RTCRtpSender,
    fanout_for: Callable[[Codec], FastFanout],
    rung: str = "",
    abr: Callable[[FastFanout], RateController | None] = lambda f: None,
) -> None:
    """Make ``sender`` hand its RTP over to the fast fan-out once aiortc starts it, starting on
    ``rung`` (the top when empty), with the rate controller ``abr`` makes (None: it stays).

    aiortc calls ``sender._run_rtp(codec)`` when DTLS is up; ours registers the viewer with the
    codec's :class:`FastFanout` and waits until the sender stops. Its RTCP goes to the fan-out
    (:meth:`FastFanout.retransmit`, :meth:`FastFanout.keyframe_request`, the controller); what
    aiortc does with receiver reports (round-trip time, stats) it still does.
    """
    s: Any = sender
    state: dict[str, Any] = {}
    handle_rtcp = sender._handle_rtcp_packet

    async def run_rtp(codec: RTCRtpCodecParameters) -> None:
        s._RTCRtpSender__rtp_started.set()
        fanout: FastFanout | None = None
        try:  # whatever happens, aiortc's stop() waits for __rtp_exited
            fanout = state["fanout"] = fanout_for(codec_of(codec))
            start = rung if fanout.video else ""
            viewer = FastViewer(sender, codec, fanout.video, start, abr(fanout))
            state["viewer"] = viewer
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
        viewer, fanout = state.get("viewer"), state.get("fanout")
        if viewer is not None and fanout is not None:
            fanout.retransmit(viewer, [sequence_number])

    async def rtcp(packet: Any) -> None:
        viewer: FastViewer | None = state.get("viewer")
        fanout: FastFanout | None = state.get("fanout")
        if viewer is None or fanout is None:
            await handle_rtcp(packet)
            return
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            fanout.retransmit(viewer, list(packet.lost))
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
            fanout.keyframe_request(viewer)
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            if viewer.abr is not None:
                try:
                    bitrate, ssrcs = unpack_remb_fci(packet.fci)
                except (ValueError, struct.error):  # fewer SSRCs than it says: struct.error
                    return
                if viewer.ssrc in ssrcs:
                    viewer.abr.remb(bitrate, time.monotonic())
        else:
            if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)) and viewer.abr is not None:
                for report in packet.reports:
                    if report.ssrc == viewer.ssrc:
                        viewer.abr.report(report.fraction_lost / 256, time.monotonic())
            await handle_rtcp(packet)

    s._run_rtp = run_rtp
    s._retransmit = retransmit
    s._handle_rtcp_packet = rtcp
