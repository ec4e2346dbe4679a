"""Cutting one rendition's encoded frames into LL-HLS parts and segments (pure: frames in, bytes
out, time passed in).

Video decides the cuts: a part closes once it holds ``part_s`` of video, or before a frame that
would take it past that by more than a millisecond (a late frame; one longer than ``part_s``
alone is a part of its own), a segment closes at the first keyframe after ``segment_s`` (the
packager asks the rung's encoder for one in time), so every segment starts with a keyframe and
its first part is independent. Each part is one fMP4 fragment with a video run and the audio
frames that arrived for the same time; a segment is its parts back to back. A frame is held
until the next one arrives, which gives its duration. A new SPS (the rung's encoder was
restarted) starts a new init section: a discontinuity.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from stream.encode.encoders import AAC_CONFIG, EncodedFrame

from . import fmp4

VIDEO, AUDIO = 1, 2  # track ids
MIN_SHARE = 0.75  # a keyframe closes the segment once it holds this share of its target
ASK_LEAD_S = 0.1  # the keyframe that closes a segment is asked for this early …
ASK_AGAIN_S = 0.5  # … and again after this, until it comes
PART_S = 1 / 3
SEGMENT_S = 2.0
AAC_SAMPLES = 1024


@dataclasses.dataclass(frozen=True, slots=True)
class Part:
    msn: int
    index: int
    data: bytes
    duration: float
    independent: bool


@dataclasses.dataclass(slots=True)
class Segment:
    msn: int
    init: int  # which init section (EXT-X-MAP) its parts need
    started_at: float  # epoch seconds of its first picture (EXT-X-PROGRAM-DATE-TIME)
    parts: list[Part] = dataclasses.field(default_factory=list)
    complete: bool = False

    @property
    def duration(self) -> float:
        return sum(p.duration for p in self.parts)

    @property
    def data(self) -> bytes:
        return b"".join(p.data for p in self.parts)


class KeyframeCadence:
    """When a segmenter's owner should ask the rung's encoder for the keyframe that closes the
    open segment: a little before it is due, and again while it does not come."""

    def __init__(self, segmenter: Segmenter) -> None:
        self.segmenter = segmenter
        self._asked: tuple[int, float] | None = None  # (msn, elapsed) of the last ask

    def due(self) -> bool:
        current = self.segmenter.current
        if current is None:
            return False
        elapsed = self.segmenter.elapsed()
        if elapsed < self.segmenter.segment_s - ASK_LEAD_S:
            return False
        if self._asked and self._asked[0] == current.msn and elapsed - self._asked[1] < ASK_AGAIN_S:
            return False
        self._asked = (current.msn, elapsed)
        return True


def wall_time(frame: EncodedFrame) -> float:
    """When ``frame``'s picture was made, in epoch seconds (it carries a monotonic time)."""
    return time.time() - (time.monotonic() - frame.composed_at)


class Segmenter:
    """One rendition's parts and segments, as they are cut (see the module docstring)."""

    def __init__(
        self,
        part_s: float = PART_S,
        segment_s: float = SEGMENT_S,
        audio: bool = True,
        on_part: Callable[[Segment, Part], None] | None = None,
        first_msn: int = 0,
    ) -> None:
        self.part_s = part_s
        self.segment_s = segment_s
        self.audio = audio
        self.on_part = on_part
        self.inits: list[bytes] = []  # init sections, by number
        self.config: fmp4.H264Config | None = None
        self.segments: list[Segment] = []  # a window kept by the owner (trim_before)
        self.next_msn = first_msn
        self._held: tuple[EncodedFrame, bytes] | None = None  # the frame waiting for its duration
        self._video: list[fmp4.Sample] = []
        self._video_start = 0  # decode time of the first sample in _video (90 kHz)
        self._video_duration = 0
        self._audio: list[tuple[int, bytes]] = []  # (pts in samples, AAC frame) not yet written
        self._sequence = 1
        self._segment_keyframe = False

    @property
    def current(self) -> Segment | None:
        return self.segments[-1] if self.segments and not self.segments[-1].complete else None

    def feed_audio(self, frame: EncodedFrame) -> None:
        if self.audio and self.segments:  # audio before the first keyframe has nowhere to go
            self._audio.append((frame.pts, frame.data))

    def feed_video(self, frame: EncodedFrame) -> None:
        sample, config = fmp4.h264_sample(frame.data)
        if self._held is None and (not frame.keyframe or config is None):
            return  # wait for a keyframe that carries its SPS and PPS
        if config is not None and config != self.config:
            self.config = config
            tracks: list[fmp4.H264Config | fmp4.AacConfig] = [config]
            if self.audio:
                tracks.append(fmp4.AacConfig(48000, 2, AAC_CONFIG))
            self.inits.append(fmp4.init_segment(tracks))
        held, self._held = self._held, (frame, sample)
        if held is None:
            self._begin_segment(frame)
            return
        prev, prev_sample = held
        duration = max(1, frame.pts - prev.pts)
        if self._video and self._video_duration + duration > self.part_s * 90000 + 90:
            # a late frame (a compositor passing over ticks) starts the next part: a part never
            # runs past the target the playlist announces
            self._close_part(end=prev.pts)
        self._add(prev, prev_sample, duration)
        if frame.keyframe and self._segment_time() + duration / 90000 >= MIN_SHARE * self.segment_s:
            self._close_part(end=frame.pts)
            self._close_segment()
            self._begin_segment(frame)
        elif self._video_duration / 90000 >= self.part_s - 0.001:
            self._close_part(end=frame.pts)

    def flush(self) -> None:
        """End the stream: the held frame (one frame's duration) and what is open."""
        if self._held is not None:
            frame, sample = self._held
            self._add(frame, sample, 3000)
            self._held = None
            self._close_part(end=frame.pts + 3000)
            self._close_segment()

    def trim_before(self, msn: int) -> None:
        self.segments = [s for s in self.segments if s.msn >= msn]

    # -- cutting ---------------------------------------------------------------------------------
    def elapsed(self) -> float:
        """Seconds of video in the open segment so far (its parts and what is not cut yet)."""
        return self._segment_time()

    def _segment_time(self) -> float:
        current = self.current
        done = current.duration if current else 0.0
        return done + self._video_duration / 90000

    def _begin_segment(self, frame: EncodedFrame) -> None:
        segment = Segment(self.next_msn, len(self.inits) - 1, wall_time(frame))
        self.next_msn += 1
        self.segments.append(segment)
        self._video_start = frame.pts
        self._segment_keyframe = True

    def _add(self, frame: EncodedFrame, sample: bytes, duration: int) -> None:
        if not self._video:
            self._video_start = frame.pts
        self._video.append(fmp4.Sample(sample, duration, frame.keyframe))
        self._video_duration += duration

    def _close_part(self, end: int) -> None:
        segment = self.current
        if segment is None or not self._video:
            return
        runs = [(VIDEO, self._video_start, self._video)]
        if self.audio:
            # the audio up to the part's end (48 kHz ticks vs 90 kHz): what came late goes next
            limit = end * 48000 // 90000
            now = sorted(a for a in self._audio if a[0] < limit)
            self._audio = [a for a in self._audio if a[0] >= limit]
            if now:
                samples = [fmp4.Sample(data, AAC_SAMPLES, True) for _, data in now]
                runs.append((AUDIO, now[0][0], samples))
        data = fmp4.fragment(self._sequence, runs)
        self._sequence += 1
        part = Part(segment.msn, len(segment.parts), data, self._video_duration / 90000,
                    self._segment_keyframe)  # fmt: skip
        segment.parts.append(part)
        self._segment_keyframe = False
        self._video, self._video_duration = [], 0
        if self.on_part is not None:
            self.on_part(segment, part)

    def _close_segment(self) -> None:
        segment = self.current
        if segment is not None:
            segment.complete = True
