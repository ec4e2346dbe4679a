"""Encode once per broadcast: one video encoder per negotiated codec, one Opus encoder.

The encoders run in the broadcast's compose thread, never on the event loop. Their output,
:class:`EncodedFrame`, is immutable and shared by every viewer of that codec.
"""

from __future__ import annotations

import dataclasses
import enum
import fractions
import time
from typing import Any

import av
from av.audio.frame import AudioFrame
from av.video.frame import VideoFrame

VIDEO_CLOCK = 90000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)
AUDIO_RATE = 48000
AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_RATE)
AUDIO_SAMPLES = 960  # 20 ms


class Codec(enum.StrEnum):
    VP8 = "vp8"
    H264 = "h264"
    OPUS = "opus"
    AAC = "aac"  # for HLS, recordings and RTMP (never sent over WebRTC)

    @property
    def audio(self) -> bool:
        return self in (Codec.OPUS, Codec.AAC)

    @classmethod
    def from_mime(cls, mime: str) -> Codec:
        return cls(mime.split("/")[-1].lower())


@dataclasses.dataclass(frozen=True, slots=True)
class EncodedFrame:
    data: bytes
    pts: int  # in time_base
    time_base: fractions.Fraction
    keyframe: bool
    composed_at: float  # time.monotonic() when the picture (or audio tick) was made


class VideoEncoder:
    """A libvpx (VP8) or libx264 (H.264 constrained baseline, Annex-B) realtime encoder."""

    def __init__(self, codec: Codec, width: int, height: int, fps: int, bitrate: int) -> None:
        self.codec = codec
        self.fps = fps
        name = {Codec.VP8: "libvpx", Codec.H264: "libx264"}[codec]
        ctx: Any = av.CodecContext.create(name, "w")
        ctx.width = width
        ctx.height = height
        ctx.pix_fmt = "yuv420p"
        ctx.bit_rate = bitrate
        ctx.time_base = fractions.Fraction(1, fps)
        ctx.framerate = fractions.Fraction(fps, 1)
        ctx.gop_size = fps * 10  # safety net; viewers get keyframes on demand
        if codec is Codec.VP8:
            ctx.qmin = 2
            ctx.qmax = 56
            ctx.options = {
                "deadline": "realtime",
                "cpu-used": "12",
                "lag-in-frames": "0",
                "bufsize": str(bitrate),
                "minrate": str(bitrate),
                "maxrate": str(bitrate),
                "undershoot-pct": "100",
                "overshoot-pct": "15",
                "static-thresh": "1",
                "error-resilient": "1",
                "partitions": "0",
            }
            # one thread up to 720p: a second one costs more CPU than it saves wall time here
            ctx.thread_count = 2 if width * height > 1280 * 720 else 1
        else:
            ctx.profile = "Baseline"
            ctx.options = {
                "preset": "veryfast",
                "tune": "zerolatency",
                "level": "31" if width * height <= 1280 * 720 else "40",
                "forced-idr": "1",
                "bf": "0",
                # the pictures are BT.601, limited range (PyAV's and OpenCV's conversions): say
                # so, or a browser takes an unmarked stream for BT.709 and shifts every colour
                "x264-params": "repeat-headers=1:annexb=1:colorprim=smpte170m:"
                "transfer=smpte170m:colormatrix=smpte170m",
            }
            ctx.thread_count = 2 if width * height > 1280 * 720 else 1
            ctx.color_range = 1  # limited ("tv"), written into the stream's VUI
        self.ctx = ctx
        self.frames = 0
        self.encode_seconds = 0.0

    def encode(self, frame: VideoFrame, index: int, keyframe: bool) -> list[EncodedFrame]:
        """Encode composed frame ``index``; ``frame`` must be yuv420p at the encoder's size."""
        frame.pts = index
        frame.time_base = self.ctx.time_base
        frame.pict_type = (
            av.video.frame.PictureType.I if keyframe else av.video.frame.PictureType.NONE
        )
        t0 = time.perf_counter()
        packets = self.ctx.encode(frame)
        self.encode_seconds += time.perf_counter() - t0
        self.frames += 1
        now = time.monotonic()
        step = VIDEO_CLOCK // self.fps
        return [
            EncodedFrame(
                data=bytes(p),
                pts=(p.pts if p.pts is not None else index) * step,
                time_base=VIDEO_TIME_BASE,
                keyframe=bool(p.is_keyframe),
                composed_at=now,
            )
            for p in packets
            if p.size
        ]


class AudioEncoder:
    """Opus, 48 kHz stereo, 20 ms frames."""

    def __init__(self, bitrate: int = 64000) -> None:
        ctx: Any = av.CodecContext.create("libopus", "w")
        ctx.bit_rate = bitrate
        ctx.sample_rate = AUDIO_RATE
        ctx.format = "s16"
        ctx.layout = "stereo"
        ctx.time_base = AUDIO_TIME_BASE
        ctx.options = {"application": "audio", "frame_duration": "20"}
        self.ctx = ctx

    def encode(self, frame: AudioFrame, index: int) -> list[EncodedFrame]:
        frame.pts = index * AUDIO_SAMPLES
        frame.time_base = AUDIO_TIME_BASE
        now = time.monotonic()
        return [
            EncodedFrame(
                data=bytes(p),
                pts=index * AUDIO_SAMPLES,
                time_base=AUDIO_TIME_BASE,
                keyframe=True,
                composed_at=now,
            )
            for p in self.ctx.encode(frame)
            if p.size
        ]


AAC_SAMPLES = 1024  # per AAC frame
# AudioSpecificConfig of AAC-LC, 48 kHz, stereo (object type 2, frequency index 3, 2 channels)
AAC_CONFIG = bytes([0x11, 0x90])


class AacEncoder:
    """AAC-LC, 48 kHz stereo, 128 kbit/s, from the same 20 ms mix as Opus (PyAV regroups the
    samples into 1024-sample frames). Timestamps are in samples from the mix's first tick; the
    encoder's priming frame (before it) is left out."""

    def __init__(self, bitrate: int = 128_000) -> None:
        ctx: Any = av.CodecContext.create("aac", "w")
        ctx.bit_rate = bitrate
        ctx.sample_rate = AUDIO_RATE
        ctx.format = "fltp"
        ctx.layout = "stereo"
        ctx.time_base = AUDIO_TIME_BASE
        self.ctx = ctx

    def encode(self, frame: AudioFrame, index: int) -> list[EncodedFrame]:
        frame.pts = index * AUDIO_SAMPLES
        frame.time_base = AUDIO_TIME_BASE
        now = time.monotonic()
        return [
            EncodedFrame(bytes(p), p.pts, AUDIO_TIME_BASE, True, now)
            for p in self.ctx.encode(frame)
            if p.size and p.pts is not None and p.pts >= 0
        ]


class KeyframeLimiter:
    """At most one forced keyframe per ``interval`` per broadcast; early requests wait."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self._last = -1e9
        self._pending = False
        self.forced = 0
        self.requests = 0

    def request(self) -> None:
        self.requests += 1
        self._pending = True

    def take(self, now: float) -> bool:
        """Called once per composed frame: should this frame be a forced keyframe?"""
        if self._pending and now - self._last >= self.interval:
            self._pending = False
            self._last = now
            self.forced += 1
            return True
        return False
