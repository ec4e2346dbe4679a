"""Ingest: what a publisher (WHIP peer or the synthetic studio) feeds the compositor.

A :class:`Source` holds the publisher's latest decoded picture and a short, bounded buffer of its
audio resampled to 48 kHz s16 stereo. :class:`Publisher` is one WHIP session: its peer connection
and the reader tasks that move aiortc's decoded frames into its source.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import time

import numpy as np
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler
from av.video.frame import VideoFrame
from numpy.typing import NDArray

from core.tasks import TaskSet
from core.tokens import Claims, Role
from stream.deliver.rtc import close_peer
from stream.encode.encoders import AUDIO_RATE

log = logging.getLogger(__name__)

AUDIO_MAX_S = 0.3  # beyond this much buffered audio, the oldest is dropped (bounds latency)
AUDIO_TARGET_S = 0.08
AUDIO_PREBUFFER_S = 0.04


class AudioBuffer:
    """Interleaved s16 stereo samples waiting for the mixer; bounded."""

    def __init__(self) -> None:
        self._chunks: collections.deque[NDArray[np.int16]] = collections.deque()
        self.samples = 0  # per channel
        self._primed = False
        self.dropped = 0

    def push(self, interleaved: NDArray[np.int16]) -> None:
        self._chunks.append(interleaved.reshape(-1))
        self.samples += interleaved.size // 2
        if self.samples <= int(AUDIO_MAX_S * AUDIO_RATE):
            return
        # past the cap, trim down to the target so a start-up burst does not keep the delay high
        target = int(AUDIO_TARGET_S * AUDIO_RATE)
        while self.samples > target and len(self._chunks) > 1:
            old = self._chunks.popleft()
            self.samples -= old.size // 2
            self.dropped += old.size // 2

    def pull(self, n: int) -> NDArray[np.int16] | None:
        """``n`` samples per channel, or None while (re)filling after an underrun."""
        if not self._primed:
            if self.samples < int(AUDIO_PREBUFFER_S * AUDIO_RATE) + n:
                return None
            self._primed = True
        if self.samples < n:
            self._primed = False
            return None
        out = np.empty(n * 2, np.int16)
        pos = 0
        while pos < n * 2:
            chunk = self._chunks[0]
            take = min(chunk.size, n * 2 - pos)
            out[pos : pos + take] = chunk[:take]
            if take == chunk.size:
                self._chunks.popleft()
            else:
                self._chunks[0] = chunk[take:]
            pos += take
        self.samples -= n
        return out


class Source:
    """A publisher's feed into the compositor."""

    def __init__(self, publisher_id: str, role: Role, user_id: str, name: str) -> None:
        self.publisher_id = publisher_id
        self.role = role
        self.user_id = user_id
        self.name = name
        self.video: VideoFrame | None = None
        self.video_at = 0.0
        self.video_frames = 0
        self.audio = AudioBuffer()
        self._resampler = AudioResampler(format="s16", layout="stereo", rate=AUDIO_RATE)

    def push_video(self, frame: VideoFrame) -> None:
        self.video = frame
        self.video_at = time.monotonic()
        self.video_frames += 1

    def push_audio(self, frame: AudioFrame) -> None:
        for out in self._resampler.resample(frame):
            self.audio.push(np.asarray(out.to_ndarray(), np.int16))

    def fresh_video(self, now: float, max_age: float = 1.0) -> VideoFrame | None:
        if self.video is not None and now - self.video_at <= max_age:
            return self.video
        return None


class PublisherState:
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSED = "closed"


@dataclasses.dataclass(eq=False)
class Publisher:
    """One WHIP session."""

    id: str
    claims: Claims
    pc: RTCPeerConnection
    source: Source
    state: str = PublisherState.CONNECTING
    tasks: TaskSet = dataclasses.field(default_factory=TaskSet)

    def connected(self) -> None:
        """Its peer connected (a closed session stays closed)."""
        if self.state == PublisherState.CONNECTING:
            self.state = PublisherState.CONNECTED

    def attach(self, track: MediaStreamTrack) -> None:
        self.tasks.spawn(self._read(track), name=f"ingest-{self.id}-{track.kind}")

    async def _read(self, track: MediaStreamTrack) -> None:
        push = self.source.push_video if track.kind == "video" else self.source.push_audio
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                push(frame)  # type: ignore[arg-type]

    async def aclose(self) -> None:
        if self.state == PublisherState.CLOSED:
            return
        self.state = PublisherState.CLOSED
        await self.tasks.aclose()
        await close_peer(self.pc)
