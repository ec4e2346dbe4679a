"""stream.compose.layout (where each publisher's picture goes) and stream.compose.mix (the soft
limiter)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import cv2
import numpy as np
import pytest
from av.video.frame import VideoFrame
from numpy.typing import NDArray

from core.tokens import Role
from stream.compose.compositor import Compositor
from stream.compose.layout import LAYOUTS, MAX_PICTURES, SAFE_MARGIN, Box, boxes, compose_sources
from stream.compose.mix import FULL_SCALE, SoftLimiter, mix
from stream.compose.slate import slate_i420
from stream.encode.encoders import AUDIO_SAMPLES
from stream.ingest.publisher import Source

W, H = 640, 360
Y_BLACK, C_NEUTRAL = 16, 128
# distinct publishers' colours as (Y, U, V): red, green, blue, yellow (BT.601 limited range)
COLOURS = [(81, 90, 240), (145, 54, 34), (41, 240, 110), (210, 16, 146)]
WHITE = (235, 128, 128)


def yuv_frame(width: int, height: int, yuv: tuple[int, int, int]) -> VideoFrame:
    """A flat yuv420p frame (any size: odd ones are made through BGR, as a camera's would be)."""
    if width % 2 or height % 2:
        bgr = cv2.cvtColor(np.array([[yuv]], np.uint8), cv2.COLOR_YUV2BGR)
        return VideoFrame.from_ndarray(
            np.tile(bgr, (height, width, 1)).astype(np.uint8), format="bgr24"
        )
    planes = np.empty((height * 3 // 2, width), np.uint8)
    planes[:height] = yuv[0]
    flat = planes.reshape(-1)
    q = width * height // 4
    flat[width * height : width * height + q] = yuv[1]
    flat[width * height + q :] = yuv[2]
    return VideoFrame.from_ndarray(planes, format="yuv420p")


def publishers(n: int, width: int = 1280, height: int = 720) -> list[VideoFrame]:
    return [yuv_frame(width, height, COLOURS[i]) for i in range(n)]


def planes(img: NDArray[np.uint8], width: int = W, height: int = H) -> Iterator[NDArray[np.uint8]]:
    flat = img.reshape(-1)
    q = width * height // 4
    yield flat[: width * height].reshape(height, width)
    yield flat[width * height : width * height + q].reshape(height // 2, width // 2)
    yield flat[width * height + q :].reshape(height // 2, width // 2)


def region(
    img: NDArray[np.uint8], box: Box, inset: int = 0, size: tuple[int, int] = (W, H)
) -> list[NDArray[np.uint8]]:
    """Each plane's pixels of ``box`` shrunk by ``inset`` px (chroma edges blend when scaled)."""
    x, y, w, h = box.x + inset, box.y + inset, box.w - 2 * inset, box.h - 2 * inset
    out = []
    for i, plane in enumerate(planes(img, *size)):
        k = 1 if i == 0 else 2
        out.append(plane[y // k : (y + h) // k, x // k : (x + w) // k])
    return out


def assert_colour(
    img: NDArray[np.uint8],
    box: Box,
    yuv: tuple[int, int, int],
    inset: int = 2,
    size: tuple[int, int] = (W, H),
) -> None:
    for plane, value, name in zip(region(img, box, inset, size), yuv, "YUV", strict=True):
        assert plane.size
        err = int(np.abs(plane.astype(int) - value).max())
        assert err <= 3, f"{name} in {box}: off by {err} from {value}"


def bgr_at(img: NDArray[np.uint8], x: int, y: int) -> NDArray[np.int16]:
    return np.asarray(cv2.cvtColor(img, cv2.COLOR_YUV2BGR_I420)[y, x], np.int16)


# -- geometry ----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(1280, 720), (640, 360), (854, 480), (720, 1280), (64, 36)])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_boxes_are_even_inside_the_canvas_and_do_not_overlap(
    layout: str, size: tuple[int, int]
) -> None:
    width, height = size
    for n in range(0, MAX_PICTURES + 2):
        placed = boxes(layout, n, width, height)
        assert len(placed) == (0 if n == 0 else 1 if layout == "solo" else min(n, MAX_PICTURES))
        for b in placed:
            assert all(v % 2 == 0 for v in (b.x, b.y, b.w, b.h, b.border)), b
            assert b.w > 2 * b.border and b.h > 2 * b.border
            assert b.x >= 0 and b.x + b.w <= width and b.y >= 0 and b.y + b.h <= height
        if layout == "side_by_side" and n >= 2:
            area = np.zeros((height, width), np.int32)
            for b in placed:
                area[b.y : b.y + b.h, b.x : b.x + b.w] += 1
            assert area.max() == 1, "tiles overlap"
        if layout == "pip" and n >= 2:
            insets = placed[1:]
            mx, my = width * SAFE_MARGIN, height * SAFE_MARGIN
            portrait = height > width
            for a, b in itertools.pairwise(insets):
                if portrait:
                    assert a.y == b.y and b.x + b.w < a.x, "a row, right to left, with gaps"
                else:
                    assert a.x == b.x and a.y + a.h < b.y, "a column, top down, with gaps"
            for b in insets:
                assert b.border >= 2
                assert b.x >= mx - 2 and b.x + b.w <= width - mx + 2, "inside the safe area"
                assert b.y >= my - 2 and b.y + b.h <= height - my + 2, "inside the safe area"
                if portrait:
                    assert b.y + b.h < height / 3, "along the top"
                else:
                    assert b.x > width / 2, "in the right-hand column"


def test_unknown_layout_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown layout"):
        boxes("grid", 2, W, H)
    with pytest.raises(ValueError, match="unknown layout"):
        compose_sources(publishers(1), "mosaic", W, H)


# -- pictures in their places --------------------------------------------------------------------


def test_side_by_side_two_publishers_left_and_right() -> None:
    out = compose_sources(publishers(2), "side_by_side", W, H)
    assert out.shape == (H * 3 // 2, W) and out.dtype == np.uint8
    assert_colour(out, Box(0, 0, W // 2, H), COLOURS[0])
    assert_colour(out, Box(W // 2, 0, W // 2, H), COLOURS[1])
    # decoded as a viewer would see it: red on the left, green on the right
    left, right = bgr_at(out, W // 4, H // 2), bgr_at(out, W * 3 // 4, H // 2)
    assert left[2] > 200 and left[1] < 40 and right[1] > 200 and right[2] < 40


def test_side_by_side_four_publishers_in_a_2x2_grid() -> None:
    out = compose_sources(publishers(4), "side_by_side", W, H)
    cells = [Box(0, 0, W // 2, H // 2), Box(W // 2, 0, W // 2, H // 2),
             Box(0, H // 2, W // 2, H // 2), Box(W // 2, H // 2, W // 2, H // 2)]  # fmt: skip
    for cell, colour in zip(cells, COLOURS, strict=True):
        assert_colour(out, cell, colour)


def test_side_by_side_three_publishers_leave_the_last_cell_black() -> None:
    out = compose_sources(publishers(3), "side_by_side", W, H)
    assert_colour(out, Box(0, 0, W // 2, H // 2), COLOURS[0])
    assert_colour(out, Box(W // 2, 0, W // 2, H // 2), COLOURS[1])
    assert_colour(out, Box(0, H // 2, W // 2, H // 2), COLOURS[2])
    assert_colour(out, Box(W // 2, H // 2, W // 2, H // 2), (Y_BLACK, C_NEUTRAL, C_NEUTRAL), 0)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_pip_host_full_frame_cohosts_in_bordered_insets(n: int) -> None:
    out = compose_sources(publishers(n), "pip", W, H)
    _main, *insets = boxes("pip", n, W, H)
    assert len(insets) == n - 1
    for inset, colour in zip(insets, COLOURS[1:], strict=False):
        b = inset.border
        assert_colour(out, inset, colour, inset=b + 2)
        # the thin white border around it
        assert_colour(out, Box(inset.x, inset.y, inset.w, b), WHITE, 0)
        assert_colour(out, Box(inset.x, inset.y + inset.h - b, inset.w, b), WHITE, 0)
        assert_colour(out, Box(inset.x, inset.y, b, inset.h), WHITE, 0)
    # the host everywhere else: left of the inset column, and below the last inset
    assert_colour(out, Box(0, 0, insets[0].x - 2, H), COLOURS[0], 0)
    last = insets[-1]
    assert_colour(out, Box(last.x, last.y + last.h + 2, last.w, H - last.y - last.h - 2),
                  COLOURS[0], 0)  # fmt: skip


def test_solo_shows_only_the_host() -> None:
    out = compose_sources(publishers(4), "solo", W, H)
    assert_colour(out, Box(0, 0, W, H), COLOURS[0], 0)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_one_publisher_fills_the_frame_in_every_layout(layout: str) -> None:
    out = compose_sources(publishers(1), layout, W, H)
    assert_colour(out, Box(0, 0, W, H), COLOURS[0], 0)


def test_a_cohost_without_the_host_takes_the_main_place() -> None:
    """Pictures are main first: without the host's, the first co-host's is main."""
    cohosts = publishers(3)[1:]
    out = compose_sources(cohosts, "pip", W, H)
    assert_colour(out, Box(0, 0, W // 2, H), COLOURS[1], 0)
    assert_colour(out, boxes("pip", 2, W, H)[1], COLOURS[2], inset=8)


def test_nobody_with_video_is_the_slate_as_a_fresh_writable_copy() -> None:
    out = compose_sources([], "side_by_side", W, H)
    cached = slate_i420(W, H)
    assert np.array_equal(out, cached) and out is not cached
    assert out.flags.writeable and not cached.flags.writeable
    out[:] = 0  # the overlay draws on it; the cache stays intact
    assert np.array_equal(compose_sources([], "pip", W, H), slate_i420(W, H))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_canvas_is_new_and_writable(layout: str) -> None:
    pics = publishers(2, W, H)  # same size as the output: no scaling at all
    a = compose_sources(pics, layout, W, H)
    b = compose_sources(pics, layout, W, H)
    assert a is not b and not np.shares_memory(a, b)
    assert a.flags.writeable and a.flags.c_contiguous
    a[:] = 0
    assert np.array_equal(b, compose_sources(pics, layout, W, H))
    for pic in pics:  # the publishers' frames are not touched
        assert int(pic.to_ndarray()[0, 0]) == COLOURS[pics.index(pic)][0]


ODD_SIZES = [(101, 77), (3, 2), (641, 359), (1081, 1921), (4000, 10)]


@pytest.mark.parametrize("size", ODD_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("layout", LAYOUTS)
def test_odd_input_sizes(layout: str, size: tuple[int, int]) -> None:
    pics = [yuv_frame(*size, COLOURS[i]) for i in range(4)]
    out = compose_sources(pics, layout, W, H)
    assert out.shape == (H * 3 // 2, W)
    placed = boxes(layout, 4, W, H)
    for box, colour in zip(placed, COLOURS, strict=False):
        y, _, _ = region(out, box, box.border + 2)
        # each box shows its publisher, at least in its middle (very odd shapes letterbox);
        # odd frames went through BGR, so match the nearest publisher's luma
        column = y[:, y.shape[1] // 2].astype(int)
        lit = column[np.abs(column - Y_BLACK) > 6]
        assert lit.size >= 2, (box, "nothing drawn")
        mid = float(np.median(lit))
        nearest = min(COLOURS, key=lambda c: abs(c[0] - mid))
        assert nearest == colour and abs(mid - colour[0]) < 16, (box, colour, mid)


def test_tiles_are_filled_by_cropping_and_keep_orientation() -> None:
    """A 16:9 camera in a half-width tile is centre-cropped to fill it (no black bars)."""
    bgr = np.zeros((720, 1280, 3), np.uint8)
    bgr[:, :640] = 255  # bright left half, dark right half
    host = VideoFrame.from_ndarray(bgr, format="bgr24")
    out = compose_sources([host, *publishers(2)[1:]], "side_by_side", W, H)
    y, _, _ = planes(out)
    tile = y[:, : W // 2]
    assert tile[:, : W // 4 - 4].min() > 200 and tile[:, W // 4 + 4 :].max() < 40
    assert (tile > Y_BLACK + 4).any(axis=1).all(), "no letterbox rows"


def test_a_picture_far_from_its_tile_shape_is_letterboxed_not_cropped_to_nothing() -> None:
    wide = yuv_frame(4000, 100, COLOURS[0])
    out = compose_sources([wide, *publishers(2)[1:]], "side_by_side", W, H)
    y, _, _ = planes(out)
    col = y[:, W // 4]
    assert (col == Y_BLACK).sum() > H // 2, "black bars above and below"
    assert (np.abs(col.astype(int) - COLOURS[0][0]) <= 3).sum() >= 6


# -- the compositor's order and layout switch ----------------------------------------------------


def _source(pid: str, role: Role, colour: int, now: float, age: float = 0.0) -> Source:
    s = Source(pid, role, f"u_{pid}", pid)
    s.push_video(yuv_frame(64, 36, COLOURS[colour]))
    s.video_at = now - age
    return s


def test_compositor_pictures_host_first_then_cohosts_in_join_order() -> None:
    comp = Compositor("b", W, H, 30, 1_000_000)
    try:
        now = time.monotonic()
        c1 = _source("c1", Role.COHOST, 1, now)
        host = _source("h", Role.HOST, 0, now)
        c2 = _source("c2", Role.COHOST, 2, now)
        for s in (c1, host, c2):
            comp.add_source(s)
        assert comp.pictures(now) == [host.video, c1.video, c2.video]
        host.video_at = now - 1.5  # the host's video went stale: the first co-host is main
        assert comp.pictures(now) == [c1.video, c2.video]
        comp.remove_source(c1)  # a co-host leaves
        assert comp.pictures(now) == [c2.video]
        c2.video_at = now - 1.5
        assert comp.pictures(now) == []
        assert comp.layout == "side_by_side"
        comp.layout = "pip"
        assert comp.layout == "pip"
        with pytest.raises(ValueError):
            comp.layout = "grid"
        assert comp.layout == "pip"
    finally:
        comp._video_pool.shutdown()
        comp._audio_pool.shutdown()


# -- audio: the soft limiter ---------------------------------------------------------------------


def sine(freq: float, start: int, frames: int, amplitude: float = FULL_SCALE) -> NDArray[np.int16]:
    t = (np.arange(frames) + start) / 48000
    mono = np.rint(np.sin(2 * np.pi * freq * t) * amplitude).astype(np.int16)
    return np.repeat(mono, 2)


def longest_flat_run_near_full_scale(x: NDArray[np.int16]) -> int:
    """The longest run of equal consecutive samples (one channel) above 90 % of full scale."""
    mono = x[::2].astype(np.int32)
    best = run = 1
    for a, b in itertools.pairwise(mono):
        run = run + 1 if a == b and abs(a) > 0.9 * FULL_SCALE else 1
        best = max(best, run)
    return best


def test_two_full_scale_tones_are_limited_not_clipped() -> None:
    limiter = SoftLimiter()
    chunks, sums = [], []
    for i in range(50):  # one second
        a = sine(440, i * AUDIO_SAMPLES, AUDIO_SAMPLES)
        b = sine(660, i * AUDIO_SAMPLES, AUDIO_SAMPLES)
        mixed = mix([a, b], AUDIO_SAMPLES * 2)
        assert np.abs(mixed).max() > FULL_SCALE * 1.5  # the sum really is over full scale
        sums.append(mixed)
        chunks.append(limiter.process(mixed))
    out = np.concatenate(chunks)
    assert out.dtype == np.int16
    assert np.abs(out.astype(np.int32)).max() <= FULL_SCALE
    assert longest_flat_run_near_full_scale(out) <= 2, "flat tops: clipped"
    # the waveform is the sum's, scaled: a gain, not distortion
    total = np.concatenate(sums).astype(np.float64)
    gain = out.astype(np.float64) / np.where(total == 0, 1, total)
    steady = gain[AUDIO_SAMPLES * 2 * 10 :][np.abs(total[AUDIO_SAMPLES * 2 * 10 :]) > 4000]
    assert steady.std() < 0.01 and 0.45 < steady.mean() < 0.6
    assert abs(np.abs(out).max() - FULL_SCALE) < 600, "loud, not over-attenuated"
    # what the old hard clip did to the same input, for contrast
    clipped = np.clip(total, -32768, 32767).astype(np.int16)
    assert longest_flat_run_near_full_scale(clipped) > 10


def test_a_quiet_source_passes_through_unchanged() -> None:
    limiter = SoftLimiter()
    for i in range(20):
        chunk = sine(440, i * AUDIO_SAMPLES, AUDIO_SAMPLES, amplitude=8192)
        assert np.array_equal(limiter.process(mix([chunk], AUDIO_SAMPLES * 2)), chunk)
        assert limiter.gain == 1.0
    one_loud = sine(440, 0, AUDIO_SAMPLES)  # a single full-scale voice still fits: untouched
    assert np.array_equal(limiter.process(mix([one_loud], AUDIO_SAMPLES * 2)), one_loud)


def test_the_gain_recovers_smoothly_after_a_loud_moment() -> None:
    limiter = SoftLimiter()
    loud = mix([sine(440, 0, AUDIO_SAMPLES), sine(440, 0, AUDIO_SAMPLES)], AUDIO_SAMPLES * 2)
    out = limiter.process(loud)
    assert np.abs(out.astype(np.int32)).max() <= FULL_SCALE and limiter.gain < 0.51
    gains = [limiter.gain]
    quiet = mix([sine(440, 0, AUDIO_SAMPLES, amplitude=3000)], AUDIO_SAMPLES * 2)
    for _ in range(100):  # two seconds of quiet
        limiter.process(quiet)
        gains.append(limiter.gain)
    steps = np.diff(gains)
    assert (steps >= 0).all() and steps.max() < 0.05, "rises smoothly, never jumps"
    assert gains[10] < 0.9, "not at once"
    assert gains[-1] == 1.0


def test_compositor_mix_of_two_full_scale_publishers_does_not_clip() -> None:
    comp = Compositor("b", W, H, 30, 1_000_000)
    try:
        for i, freq in enumerate((440, 1000)):
            s = Source(f"p{i}", Role.HOST if i == 0 else Role.COHOST, f"u{i}", f"p{i}")
            s.audio.push(sine(freq, 0, 48000 // 2))
            comp.add_source(s)
        out = np.concatenate([comp._mix() for _ in range(10)])
        assert np.abs(out.astype(np.int32)).max() <= FULL_SCALE
        assert np.abs(out).max() > FULL_SCALE // 2
        assert longest_flat_run_near_full_scale(out) <= 2
    finally:
        comp._video_pool.shutdown()
        comp._audio_pool.shutdown()


# -- portrait ------------------------------------------------------------------------------------
PW, PH = 360, 640


@pytest.mark.parametrize("layout", LAYOUTS)
def test_portrait_fills_the_screen_with_a_landscape_camera(layout: str) -> None:
    """A landscape camera into a portrait show is cropped to cover (its centre), not
    letterboxed and not stretched: the middle column of the picture, at its own scale."""
    cam = _stripes(640, 360)
    out = compose_sources([cam], layout, PW, PH)
    # covering 360x640 with 16:9 scales by 640/360: the centre 360 of 1138 columns are seen
    scale = PH / 360
    img = cv2.cvtColor(out, cv2.COLOR_YUV2BGR_I420)
    offset = (640 * scale - PW) / 2
    seen = 0
    for k in range(16):  # each stripe's centre where it should be: no squeeze, no shift
        x = round((40 * k + 20) * scale - offset)
        if not 8 <= x < PW - 8:
            continue
        got = img[PH // 2, x]
        assert np.abs(got.astype(int) - STRIPES[k % len(STRIPES)]).max() < 60, (k, x, got)
        seen += 1
    assert seen >= 4  # 360 of the 1138 columns: the middle stripes, about five
    assert img[:8].mean() > 40 and img[-8:].mean() > 40, "no letterbox bars"


def test_portrait_two_publishers_are_stacked() -> None:
    out = compose_sources(publishers(2), "side_by_side", PW, PH)
    assert_colour(out, Box(0, 0, PW, PH // 2), COLOURS[0], size=(PW, PH))
    assert_colour(out, Box(0, PH // 2, PW, PH // 2), COLOURS[1], size=(PW, PH))


STRIPES = [(0, 0, 255), (0, 255, 0), (255, 0, 0), (255, 255, 255)]


def _stripes(w: int, h: int) -> VideoFrame:
    """Vertical stripes 40 px wide, cycling through STRIPES (BGR)."""
    img = np.zeros((h, w, 3), np.uint8)
    for x in range(0, w, 40):
        img[:, x : x + 40] = STRIPES[(x // 40) % len(STRIPES)]
    return VideoFrame.from_ndarray(img, format="bgr24")
