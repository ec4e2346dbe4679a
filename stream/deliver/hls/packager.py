"""A broadcast's Low-Latency HLS, packaged from the encoded frames it already has.

:class:`HlsPackager` starts on the first HLS request and subscribes to every rung's H.264 bus and
to the AAC bus, so while anyone plays HLS the whole ladder is encoded (once, for WebRTC viewers
too); it asks each rung's encoder for a keyframe about every ``SEGMENT_S`` so segments can start
on one. Parts and the newest segments are kept in memory (``WINDOW`` segments) and served from
there; a request for the part being made waits for it (blocking reload, preload hints). With no
HLS request for ``IDLE_S`` it unsubscribes (dynacast: the rungs nobody else takes stop).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from core.tasks import TaskSet
from stream.encode.bus import BusSource, FrameBus
from stream.encode.encoders import Codec, EncodedFrame
from stream.encode.ladder import Rung

from .segmenter import KeyframeCadence, Part, Segment, Segmenter

WINDOW = 6  # segments kept per rendition (12 s)
IDLE_S = 60.0  # without an HLS request for this long, packaging stops


class Rendition:
    """One rung's segmenter and the clients waiting on it."""

    def __init__(self, rung: Rung, bus: FrameBus) -> None:
        self.rung = rung
        self.bus = bus
        self.segmenter = Segmenter(on_part=self._on_part)
        self.cadence = KeyframeCadence(self.segmenter)
        self.changed = asyncio.Event()  # set and replaced at every new part
        self.frames = 0
        self.cpu_s = 0.0  # this thread's CPU spent packaging it (the benchmark)

    # the FrameBus subscriber interface
    def offer(self, frame: EncodedFrame) -> None:
        t0 = time.thread_time()
        self.frames += 1
        self.segmenter.feed_video(frame)
        if self.cadence.due():
            self.bus.request_keyframe()
        self.cpu_s += time.thread_time() - t0

    def close(self) -> None:
        self.changed.set()

    def _on_part(self, segment: Segment, part: Part) -> None:
        if len(self.segmenter.segments) > WINDOW + 1:
            self.segmenter.trim_before(self.segmenter.segments[-WINDOW - 1].msn)
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    # -- reading ---------------------------------------------------------------------------------
    @property
    def codec(self) -> str | None:
        config = self.segmenter.config
        return f"{config.codec},mp4a.40.2" if config else None

    def segments(self) -> list[Segment]:
        return self.segmenter.segments

    def next_part(self) -> tuple[int, int] | None:
        """(msn, index) of the part being made."""
        current = self.segmenter.current
        if current is not None:
            return current.msn, len(current.parts)
        return (self.segmenter.next_msn, 0) if self.segmenter.segments else None

    def part(self, msn: int, index: int) -> Part | None:
        for s in self.segmenter.segments:
            if s.msn == msn:
                return s.parts[index] if index < len(s.parts) else None
        return None

    def segment(self, msn: int) -> Segment | None:
        return next((s for s in self.segmenter.segments if s.msn == msn and s.complete), None)

    def has(self, msn: int, part: int | None) -> bool:
        """Whether segment ``msn`` (its part ``part``, or the whole segment) exists yet."""
        for s in self.segmenter.segments:
            if s.msn == msn:
                return s.complete if part is None else part < len(s.parts) or s.complete
        return bool(self.segmenter.segments) and msn < self.segmenter.segments[0].msn

    async def wait(self, msn: int, part: int | None, timeout: float) -> bool:
        """Until ``has(msn, part)``; False on timeout."""
        deadline = time.monotonic() + timeout
        while not self.has(msn, part):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except TimeoutError:
                return False
        return True


class HlsPackager:
    def __init__(self, source: BusSource) -> None:
        self.source = source
        self.renditions: dict[str, Rendition] = {}
        self.last_request = time.monotonic()
        self._tasks = TaskSet()
        self._audio_bus: FrameBus | None = None
        self.started = False

    def start(self) -> None:
        if self.started:
            return
        self.started = True
        for rung in self.source.ladder:
            bus = self.source.bus(Codec.H264, rung.name)
            rendition = self.renditions[rung.name] = Rendition(rung, bus)
            bus.add(rendition)
            bus.request_keyframe()
        self._audio_bus = self.source.bus(Codec.AAC)
        self._audio_bus.add(self)
        self._tasks.spawn(self._idle_watch(), name="hls-idle")

    def touch(self) -> None:
        self.last_request = time.monotonic()

    # the AAC bus's subscriber interface: audio goes to every rendition
    def offer(self, frame: EncodedFrame) -> None:
        for r in self.renditions.values():
            t0 = time.thread_time()
            r.segmenter.feed_audio(frame)
            r.cpu_s += time.thread_time() - t0

    def close(self) -> None:
        for r in self.renditions.values():
            r.close()

    async def _idle_watch(self) -> None:
        idle = 0.0
        while idle < IDLE_S:  # a deadline that requests push back: no event marks "none came"
            await asyncio.sleep(max(1.0, IDLE_S - idle))
            idle = time.monotonic() - self.last_request
        self.stop()

    def stop(self) -> None:
        """Unsubscribe (the rungs nobody else takes stop encoding) and forget the segments."""
        for r in self.renditions.values():
            r.bus.discard(r)
            r.close()
        if self._audio_bus is not None:
            self._audio_bus.discard(self)
        self.renditions.clear()
        self.started = False

    async def aclose(self) -> None:
        self.stop()
        await self._tasks.aclose()

    async def codecs(self, timeout: float) -> dict[str, str] | None:
        """Every rendition's CODECS, once each has its first keyframe (None on timeout)."""
        deadline = time.monotonic() + timeout
        for r in list(self.renditions.values()):
            while r.codec is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                try:
                    await asyncio.wait_for(r.changed.wait(), left)
                except TimeoutError:
                    return None
        return {name: r.codec or "" for name, r in self.renditions.items()}

    @property
    def ladder(self) -> Sequence[Rung]:
        return [r.rung for r in self.renditions.values()]
