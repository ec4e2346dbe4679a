"""Synthetic publishers: the moving test pattern and a tone.

:class:`PatternTrack` and :class:`ToneTrack` are aiortc tracks for real WHIP peers (tests,
benchmarks). :class:`SyntheticStudio` feeds a compositor in-process, with no network at all: the
demo's built-in host.
"""

from __future__ import annotations

import asyncio
import fractions
import functools
import time

import cv2
import numpy as np
from aiortc.mediastreams import MediaStreamTrack
from av.audio.frame import AudioFrame
from av.video.frame import VideoFrame
from numpy.typing import NDArray

from core.tasks import cancel_all
from core.tokens import Role
from stream.compose.compositor import Compositor
from stream.encode.encoders import AUDIO_RATE, AUDIO_SAMPLES, VIDEO_CLOCK

from . import pattern
from .publisher import Source


def pattern_frame(
    n: int, width: int, height: int, hue: int = 0, texture: bool = False
) -> VideoFrame:
    """Frame ``n`` of the test pattern as I420. Without texture the bars repeat every
    ``period`` frames, so each phase is drawn once and only the counter is stamped per frame."""
    if texture:
        bgr = pattern.draw(n, width, height, hue=hue, texture=True)
        i420 = np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420), np.uint8)
    else:
        i420 = _phase(n % pattern.period(width), width, height, hue).copy()
        pattern.stamp_i420(i420, width, n)
    return VideoFrame.from_ndarray(i420, format="yuv420p")


@functools.lru_cache(maxsize=1024)
def _phase(phase: int, width: int, height: int, hue: int) -> NDArray[np.uint8]:
    bgr = pattern.draw(phase, width, height, hue=hue)
    i420 = np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420), np.uint8)
    i420.setflags(write=False)
    return i420


def tone_frame(index: int, freq: float) -> AudioFrame:
    frame = AudioFrame.from_ndarray(
        pattern.tone(index * AUDIO_SAMPLES, AUDIO_SAMPLES, freq), format="s16", layout="stereo"
    )
    frame.sample_rate = AUDIO_RATE
    frame.pts = index * AUDIO_SAMPLES
    frame.time_base = fractions.Fraction(1, AUDIO_RATE)
    return frame


class _Paced:
    """Frame ``n`` is due at ``t0 + n * period`` (wall clock, so other processes can compare)."""

    def __init__(self, period: float) -> None:
        self.period = period
        self.t0: float | None = None
        self.n = -1

    async def next(self) -> int:
        if self.t0 is None:
            self.t0 = time.time()
        self.n += 1
        delay = self.t0 + self.n * self.period - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        return self.n

    def due(self, n: int) -> float:
        assert self.t0 is not None
        return self.t0 + n * self.period


class PatternTrack(MediaStreamTrack):
    kind = "video"

    def __init__(
        self, width: int = 640, height: int = 360, fps: int = 30, hue: int = 0,
        texture: bool = False,
    ) -> None:  # fmt: skip
        super().__init__()
        self.width, self.height, self.fps, self.hue = width, height, fps, hue
        self.texture = texture  # fresh noise in the bottom quarter: encoders spend their bitrate
        self.clock = _Paced(1 / fps)
        self.offset = 0  # added to the stamped counter (a republish continues the count)

    async def recv(self) -> VideoFrame:
        n = await self.clock.next()
        frame = pattern_frame(n + self.offset, self.width, self.height, self.hue, self.texture)
        frame.pts = n * (VIDEO_CLOCK // self.fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        return frame


class ToneTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self, freq: float = 440.0) -> None:
        super().__init__()
        self.freq = freq
        self.clock = _Paced(AUDIO_SAMPLES / AUDIO_RATE)

    async def recv(self) -> AudioFrame:
        return tone_frame(await self.clock.next(), self.freq)


class SyntheticStudio:
    """A host made of a test pattern and a tone, fed straight into a compositor."""

    def __init__(
        self,
        compositor: Compositor,
        *,
        name: str = "데모 스튜디오",
        width: int = 1280,
        height: int = 720,
        fps: int = 30,
        freq: float = 440.0,
        texture: bool = False,
        prerender: int = 0,
    ) -> None:
        self.compositor = compositor
        self.texture = texture
        # >0: draw this many pictures once and cycle them, restamping only the counter, so the
        # studio itself costs next to nothing (benchmarks measure the server, not the studio)
        self.prerender = prerender
        self._cache: list[np.ndarray] = []
        self.source = Source("synthetic", Role.HOST, "u_synthetic", name)
        self.width, self.height, self.fps, self.freq = width, height, fps, freq
        self._tasks: list[asyncio.Task[None]] = []
        self._clock = _Paced(1 / fps)

    def clock_t0(self) -> float | None:
        """Wall time of frame 0: frame ``n`` was made at ``t0 + n / fps`` (for latency probes)."""
        return self._clock.t0

    def start(self) -> None:
        self.compositor.add_source(self.source)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._video(), name="synthetic-video"),
            loop.create_task(self._audio(), name="synthetic-audio"),
        ]

    def _cached_frame(self, n: int) -> VideoFrame:
        i420 = self._cache[n % len(self._cache)].copy()
        pattern.stamp_i420(i420, self.width, n)
        return VideoFrame.from_ndarray(i420, format="yuv420p")

    def _render_cache(self) -> None:
        for n in range(self.prerender):
            bgr = pattern.draw(n, self.width, self.height, texture=self.texture)
            self._cache.append(np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420), np.uint8))

    async def _video(self) -> None:
        loop = asyncio.get_running_loop()
        if self.prerender:
            await loop.run_in_executor(None, self._render_cache)
        clock = self._clock
        while True:
            n = await clock.next()
            if self._cache:
                frame = self._cached_frame(n)
            else:
                frame = await loop.run_in_executor(
                    None, pattern_frame, n, self.width, self.height, 0, self.texture
                )
            self.source.push_video(frame)

    async def _audio(self) -> None:
        clock = _Paced(AUDIO_SAMPLES / AUDIO_RATE)
        while True:
            self.source.push_audio(tone_frame(await clock.next(), self.freq))

    async def aclose(self) -> None:
        await cancel_all(self._tasks)
        self.compositor.remove_source(self.source)
