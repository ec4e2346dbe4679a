"""One compositor per broadcast: it owns the output size and rate.

Every ``1/fps`` s it takes the publishers' latest pictures (the host first, then co-hosts in join
order; the slate when nobody has video), places them in the output frame in the current
``layout`` (stream/compose/layout.py: in I420, no colour conversion), draws the overlay, scales
the result to every rung of the ladder that something consumes (stream/encode/ladder.py) and
encodes each once per codec (dynacast: a rung and codec nobody takes has no encoder; a new
encoder starts with a keyframe). Changing the layout, or a co-host leaving, changes only the
canvas: encoders and viewer sessions carry on. Every 20 ms it mixes the publishers' audio
(silence when there is none) under a soft limiter (stream/compose/mix.py) and encodes it once
with Opus. Pixel and codec work runs in the broadcast's own threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

import cv2
import numpy as np
from av.audio.frame import AudioFrame
from av.video.frame import VideoFrame
from numpy.typing import NDArray

from core import metrics
from core.tasks import cancel_all
from core.tokens import Role
from stream.encode.bus import FrameBus, Sink
from stream.encode.encoders import (
    AUDIO_SAMPLES,
    AacEncoder,
    AudioEncoder,
    Codec,
    EncodedFrame,
    VideoEncoder,
)
from stream.encode.ladder import Rung, scale_i420
from stream.ingest.publisher import Source

from .layout import DEFAULT_LAYOUT, MAX_PICTURES, check_layout, compose_sources, fit
from .mix import SoftLimiter, mix
from .overlay import Overlay

log = logging.getLogger(__name__)

I420 = NDArray[np.uint8]


def letterbox(frame: VideoFrame, width: int, height: int) -> I420:
    """``frame`` scaled into a ``width``x``height`` I420 canvas, black bars where aspect differs."""
    x, y, w, h = fit(frame.width, frame.height, width, height)
    scaled = np.asarray(frame.reformat(width=w, height=h, format="yuv420p").to_ndarray(), np.uint8)
    if (w, h) == (width, height):
        return scaled
    canvas = np.empty((height * 3 // 2, width), np.uint8)
    canvas[:height] = 16
    canvas[height:] = 128
    canvas[y : y + h, x : x + w] = scaled[:h]
    # U then V follow the luma plane, each a (h/2 x w/2) plane stored contiguously
    src, dst = scaled.reshape(-1), canvas.reshape(-1)
    sq, dq = w * h // 4, width * height // 4
    for i in (0, 1):
        plane = src[w * h + i * sq : w * h + (i + 1) * sq].reshape(h // 2, w // 2)
        out = dst[width * height + i * dq : width * height + (i + 1) * dq]
        out.reshape(height // 2, width // 2)[y // 2 : (y + h) // 2, x // 2 : (x + w) // 2] = plane
    return canvas


BusKey = tuple[Codec, str]  # (codec, rung name)


class Compositor:
    def __init__(
        self,
        bid: str,
        width: int,
        height: int,
        fps: int,
        bitrate: int,
        ladder: Sequence[Rung] = (),
    ) -> None:
        self.bid = bid
        self.width = width
        self.height = height
        self.fps = fps
        self.bitrate = bitrate
        self.ladder = tuple(ladder) or (Rung(f"{min(width, height)}p", width, height, bitrate),)
        if (self.ladder[0].width, self.ladder[0].height) != (width, height):
            raise ValueError("the ladder's top rung must be the composed size")
        self.rungs = {r.name: r for r in self.ladder}
        self.top = self.ladder[0].name
        self.sources: dict[str, Source] = {}
        self.video_buses: dict[BusKey, FrameBus] = {}
        self.audio_bus = FrameBus("audio", lambda: None)  # Opus, for WebRTC
        self.aac_bus = FrameBus("audio", lambda: None)  # AAC, for HLS, recordings and RTMP
        self.sinks: dict[Codec, Sink] = {}  # the fast fan-out of each codec (stream/deliver)
        self.frames_composed = 0
        self.last_picture: I420 | None = None
        self.overlay = Overlay(width, height)  # its model is set by the broadcast's event feed
        self.on_slate = True  # no publisher has fresh video
        self._layout = DEFAULT_LAYOUT
        self._limiter = SoftLimiter(AUDIO_SAMPLES / 48000)
        self._encoders: dict[BusKey, VideoEncoder] = {}  # touched only in the video thread
        self._audio_encoder: AudioEncoder | None = None
        self._aac_encoder: AacEncoder | None = None
        self._video_pool = concurrent.futures.ThreadPoolExecutor(1, f"compose-{bid}")
        self._audio_pool = concurrent.futures.ThreadPoolExecutor(1, f"audio-{bid}")
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._video_index = self._audio_index = 0  # of the latest frames published
        # called on the loop after each composed frame with its index (benchmarks, snapshots)
        self.taps: list[Callable[[int], None]] = []

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._video_loop(), name=f"compose-video-{self.bid}"),
            loop.create_task(self._audio_loop(), name=f"compose-audio-{self.bid}"),
        ]

    async def stop(self) -> None:
        """Compose and encode no more; the buses stay, with their subscribers (another node
        composes the broadcast now and its frames are handed to them: stream/handover.py)."""
        await cancel_all(self._tasks)
        self._tasks = []

    def clock_s(self) -> float:
        """The time of the latest frame handed to the buses (video or audio), in seconds."""
        return max(self._video_index / self.fps, self._audio_index * AUDIO_SAMPLES / 48000)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await cancel_all(self._tasks)
        for bus in (*self.video_buses.values(), self.audio_bus, self.aac_bus):
            bus.close()
        for sink in list(self.sinks.values()):
            await sink.aclose()
        self._video_pool.shutdown(wait=True)
        self._audio_pool.shutdown(wait=True)

    # -- inputs and outputs ----------------------------------------------------------------------
    def add_source(self, source: Source) -> None:
        self.sources[source.publisher_id] = source

    def remove_source(self, source: Source) -> None:
        self.sources.pop(source.publisher_id, None)

    def host(self) -> Source | None:
        hosts = [s for s in self.sources.values() if s.role is Role.HOST]
        return hosts[-1] if hosts else None

    @property
    def layout(self) -> str:
        """``solo``, ``side_by_side`` or ``pip``; may be switched at any time (next frame)."""
        return self._layout

    @layout.setter
    def layout(self, value: str) -> None:
        self._layout = check_layout(value)

    def on_air(self) -> list[Source]:
        """The publishers in picture order: the host first, then co-hosts in join order."""
        host = self.host()
        return ([host] if host else []) + [
            s for s in list(self.sources.values()) if s.role is not Role.HOST
        ]

    def pictures(self, now: float) -> list[VideoFrame]:
        """Fresh pictures to draw, in :meth:`on_air` order (a publisher whose video is older than
        1 s is left out until it comes back)."""
        fresh = [p for s in self.on_air() if (p := s.fresh_video(now)) is not None]
        return fresh[:MAX_PICTURES]

    def bus(self, codec: Codec, rung: str | None = None) -> FrameBus:
        """The bus of ``codec`` at ``rung`` (the top one by default): its encoder runs while the
        bus has subscribers, and forces keyframes its own limiter allows."""
        if codec is Codec.OPUS:
            return self.audio_bus
        if codec is Codec.AAC:
            return self.aac_bus
        rung = rung or self.top
        if rung not in self.rungs:
            raise KeyError(f"no rung {rung!r} in this broadcast's ladder")
        key = (codec, rung)
        if key not in self.video_buses:
            self.video_buses[key] = FrameBus("video", rung=rung)
        return self.video_buses[key]

    def keyframes_forced(self) -> int:
        return sum(b.limiter.forced for b in self.video_buses.values() if b.limiter)

    # -- video -----------------------------------------------------------------------------------
    async def _video_loop(self) -> None:
        loop = asyncio.get_running_loop()
        period = 1 / self.fps
        index = 0
        next_at = loop.time()
        while True:
            next_at += period
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -2 * period:  # far behind: skip ticks rather than burst
                skipped = int(-delay / period)
                next_at += skipped * period
                index += skipped
            index += 1
            wanted = [k for k, b in self.video_buses.items() if b.subscribers]
            pictures = self.pictures(time.monotonic())
            self.on_slate = not pictures
            now = time.monotonic()
            forced = {k for k in wanted if (lim := self.video_buses[k].limiter) and lim.take(now)}
            try:
                out = await loop.run_in_executor(
                    self._video_pool, self._compose_and_encode, pictures, index, wanted, forced
                )
            except Exception:
                log.exception("compose failed", extra={"bid": self.bid})
                continue
            # every rung of this tick in one go: a fan-out sees them together (rung switches)
            for key, frames in out.items():
                self.video_buses[key].publish(frames)
            self._video_index = index
            for tap in self.taps:
                tap(index)

    def _compose(self, pictures: Sequence[VideoFrame]) -> I420:
        """A new writable canvas: ``pictures`` (main first) in the current layout, or the slate."""
        return compose_sources(pictures, self.layout, self.width, self.height)

    def _compose_and_encode(
        self, pictures: list[VideoFrame], index: int, wanted: list[BusKey], forced: set[BusKey]
    ) -> dict[BusKey, list[EncodedFrame]]:
        canvas = self._compose(pictures)
        canvas.setflags(write=False)  # kept without the overlay (flash-product snapshots)
        self.last_picture = canvas
        canvas = self.overlay.draw(canvas, [s.name for s in self.on_air() if s.name])
        self.frames_composed += 1
        metrics.FRAMES_COMPOSED.inc()
        out: dict[BusKey, list[EncodedFrame]] = {}
        frames: dict[str, VideoFrame] = {}  # each rung scaled once, whatever the codecs
        # each from the smallest picture already made that is larger (720p → 360p → 180p: a
        # halving is a fraction of the cost of a quartering)
        made: list[tuple[int, int, I420]] = [(self.width, self.height, canvas)]
        for key in sorted(wanted, key=lambda k: (self.ladder.index(self.rungs[k[1]]), k[0])):
            codec, name = key
            rung = self.rungs[name]
            if name not in frames:
                w, h, src = min((m for m in made if m[0] >= rung.width and m[1] >= rung.height),
                                key=lambda m: m[0] * m[1])  # fmt: skip
                picture = (
                    src
                    if (w, h) == (rung.width, rung.height)
                    else scale_i420(src, w, h, rung.width, rung.height)
                )
                made.append((rung.width, rung.height, picture))
                frames[name] = VideoFrame.from_ndarray(picture, format="yuv420p")
            encoder = self._encoders.get(key)
            force = key in forced
            if encoder is None:  # dynacast: a rung someone now takes starts with a keyframe
                encoder = self._encoders[key] = VideoEncoder(
                    codec, rung.width, rung.height, self.fps, rung.bitrate
                )
                force = True
            if key in forced:
                metrics.KEYFRAMES_FORCED.inc()
            t0 = time.perf_counter()
            out[key] = encoder.encode(frames[name], index, force)
            metrics.ENCODE_SECONDS.inc(time.perf_counter() - t0, codec=codec.value)
            metrics.FRAMES_ENCODED.inc(codec=codec.value)
        for key in set(self._encoders) - set(wanted):
            del self._encoders[key]  # nobody takes this rung in this codec any more
        return out

    def encoding(self) -> list[BusKey]:
        """The (codec, rung) pairs with a running encoder."""
        return sorted(self._encoders)

    def snapshot_bgr(self) -> NDArray[np.uint8] | None:
        """The last composed picture as BGR (for the flash-product snapshot)."""
        pic = self.last_picture
        if pic is None:
            return None
        return np.asarray(cv2.cvtColor(pic, cv2.COLOR_YUV2BGR_I420), np.uint8)

    # -- audio -----------------------------------------------------------------------------------
    def _mix(self) -> NDArray[np.int16]:
        """Every publisher's next 20 ms, summed and limited (never clipped)."""
        chunks = [
            chunk
            for source in list(self.sources.values())
            if (chunk := source.audio.pull(AUDIO_SAMPLES)) is not None
        ]
        return self._limiter.process(mix(chunks, AUDIO_SAMPLES * 2))

    def _encode_audio(
        self, samples: NDArray[np.int16], index: int, opus: bool, aac: bool
    ) -> tuple[list[EncodedFrame], list[EncodedFrame]]:
        """This tick's mix as Opus and as AAC, each encoded once if anything takes it."""
        out: tuple[list[EncodedFrame], list[EncodedFrame]] = ([], [])
        for i, (wanted, name) in enumerate(((opus, "_audio_encoder"), (aac, "_aac_encoder"))):
            if not wanted:
                setattr(self, name, None)  # nobody listens: the next one starts afresh
                continue
            encoder = getattr(self, name) or (AudioEncoder() if i == 0 else AacEncoder())
            setattr(self, name, encoder)
            frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="stereo")
            frame.sample_rate = 48000
            out[i].extend(encoder.encode(frame, index))
        return out

    async def _audio_loop(self) -> None:
        loop = asyncio.get_running_loop()
        period = AUDIO_SAMPLES / 48000
        index = 0
        next_at = loop.time()
        while True:
            next_at += period
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -5 * period:
                skipped = int(-delay / period)
                next_at += skipped * period
                index += skipped
            index += 1
            samples = self._mix()  # always drain the sources, even with no listener
            opus, aac = bool(self.audio_bus.subscribers), bool(self.aac_bus.subscribers)
            if not opus and not aac:
                self._audio_encoder = self._aac_encoder = None
                continue
            with contextlib.suppress(RuntimeError):  # pool shut down while closing
                opus_frames, aac_frames = await loop.run_in_executor(
                    self._audio_pool, self._encode_audio, samples, index, opus, aac
                )
                self.audio_bus.publish(opus_frames)
                self.aac_bus.publish(aac_frames)
                self._audio_index = index
