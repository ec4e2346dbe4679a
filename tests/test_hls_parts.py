"""LL-HLS parts never run over the part target the playlist announces, whatever the spacing of
the frames: a compositor that passes over ticks on a loaded machine leaves gaps between frames,
and a part that took a late frame on top of a full one ran past its target (RFC 8216bis: every
Partial Segment's duration is at most the Part Target Duration)."""

from __future__ import annotations

import dataclasses

import av
import numpy as np
import pytest

from stream.deliver.hls.segmenter import PART_S, Segmenter
from stream.encode.encoders import Codec, EncodedFrame, VideoEncoder

TARGET = PART_S + 0.001  # what EXT-X-PART-INF announces
TICK = 3000  # one frame at 30 fps, 90 kHz


def _frames(count: int) -> list[EncodedFrame]:
    """``count`` real H.264 access units (the first a keyframe with its SPS and PPS)."""
    encoder = VideoEncoder(Codec.H264, 64, 64, 30, 200_000)
    out: list[EncodedFrame] = []
    for i in range(count * 2):
        picture = np.full((64, 64, 3), (i * 7) % 255, np.uint8)
        frame = av.VideoFrame.from_ndarray(picture, format="bgr24").reformat(format="yuv420p")
        out += encoder.encode(frame, i, keyframe=i == 0)
        if len(out) >= count:
            break
    assert len(out) >= count and out[0].keyframe
    return out[:count]


def _cut(gaps: list[int]) -> list[float]:
    """Feed frames ``gaps[i]`` ticks apart, then end; the parts' durations, in seconds."""
    frames = _frames(len(gaps) + 1)
    segmenter = Segmenter(audio=False, segment_s=60.0)
    pts = 0
    for frame, gap in zip(frames, [0, *gaps], strict=True):
        pts += gap
        segmenter.feed_video(dataclasses.replace(frame, pts=pts))
    segmenter.flush()  # the last frame is given one tick
    return [p.duration for s in segmenter.segments for p in s.parts]


def test_evenly_spaced_frames_fill_parts_to_the_target() -> None:
    parts = _cut([TICK] * 39)
    assert len(parts) == 4
    assert all(p == pytest.approx(PART_S) for p in parts)


@pytest.mark.parametrize("late", [2, 4, 6])
def test_a_late_frame_starts_the_next_part(late: int) -> None:
    # nine frames on time, then one ``late`` ticks after the ninth (a loaded compositor)
    gaps = [TICK] * 9 + [late * TICK] + [TICK] * 30
    parts = _cut(gaps)
    assert parts and all(0 < d <= TARGET for d in parts), parts
    assert sum(parts) == pytest.approx((sum(gaps) + TICK) / 90000)  # no time dropped or added


def test_a_frame_longer_than_a_part_is_a_part_of_its_own() -> None:
    gaps = [TICK] * 5 + [15 * TICK] + [TICK] * 20  # the picture stood still for half a second
    parts = _cut(gaps)
    long = [d for d in parts if d > TARGET]
    assert long == [pytest.approx(0.5)], parts
