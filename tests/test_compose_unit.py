"""stream.compose geometry (fit, letterbox) and the slate."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest
from av.video.frame import VideoFrame
from numpy.typing import NDArray

from stream.compose.compositor import letterbox
from stream.compose.layout import fit
from stream.compose.slate import EN, KO, slate_bgr, slate_i420

Y_BLACK, C_NEUTRAL = 16, 128


def yuv_frame(width: int, height: int, y: int, u: int, v: int) -> VideoFrame:
    """A flat yuv420p frame with known plane values."""
    planes = np.empty((height * 3 // 2, width), np.uint8)
    planes[:height] = y
    flat = planes.reshape(-1)
    q = width * height // 4
    flat[width * height : width * height + q] = u
    flat[width * height + q :] = v
    return VideoFrame.from_ndarray(planes, format="yuv420p")


def split_i420(img: NDArray[np.uint8], width: int, height: int) -> tuple[NDArray[np.uint8], ...]:
    flat = img.reshape(-1)
    q = width * height // 4
    y = flat[: width * height].reshape(height, width)
    u = flat[width * height : width * height + q].reshape(height // 2, width // 2)
    v = flat[width * height + q :].reshape(height // 2, width // 2)
    return y, u, v


# -- fit ---------------------------------------------------------------------------------------


def test_fit_4_3_into_16_9_is_pillarboxed() -> None:
    x, y, w, h = fit(640, 480, 1280, 720)
    assert h == 720 and w == 720 * 4 // 3
    assert y == 0 and x == (1280 - w) // 2


def test_fit_16_9_into_4_3_is_letterboxed() -> None:
    x, y, w, h = fit(1280, 720, 640, 480)
    assert w == 640 and h == 640 * 9 // 16
    assert x == 0 and y == (480 - h) // 2


def test_fit_same_aspect_fills() -> None:
    assert fit(1920, 1080, 1280, 720) == (0, 0, 1280, 720)
    assert fit(320, 180, 1280, 720) == (0, 0, 1280, 720)


SOURCES = [
    (640, 480), (1920, 1080), (720, 1280), (1080, 1920), (1366, 768), (1920, 1088),
    (352, 288), (176, 144), (2560, 1080), (1600, 900), (101, 77), (3, 2), (4000, 10),
]  # fmt: skip
TARGETS = [(1280, 720), (640, 360), (640, 480), (854, 480), (64, 64)]


@pytest.mark.parametrize("dst", TARGETS, ids=lambda d: f"{d[0]}x{d[1]}")
@pytest.mark.parametrize("src", SOURCES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_fit_properties(src: tuple[int, int], dst: tuple[int, int]) -> None:
    (sw, sh), (dw, dh) = src, dst
    x, y, w, h = fit(sw, sh, dw, dh)
    assert all(v % 2 == 0 for v in (x, y, w, h)), "I420 needs even geometry"
    assert 2 <= w <= dw and 2 <= h <= dh
    assert x + w <= dw and y + h <= dh
    assert abs((dw - w - x) - x) <= 2 and abs((dh - h - y) - y) <= 2, "centred"
    assert dw - w <= 2 or dh - h <= 2, "one side fills the frame"
    # aspect kept up to the rounding to even pixels
    assert min(abs(h - w * sh / sw), abs(w - h * sw / sh)) <= 2 + 1e-9, "aspect kept"


# -- letterbox ---------------------------------------------------------------------------------


def test_letterbox_4_3_into_16_9_has_black_bars_left_and_right() -> None:
    yy, uu, vv = 180, 90, 170
    out = letterbox(yuv_frame(640, 480, yy, uu, vv), 1280, 720)
    assert out.shape == (720 * 3 // 2, 1280)
    y, u, v = split_i420(out, 1280, 720)
    bar = (1280 - 960) // 2
    assert (y[:, :bar] == Y_BLACK).all() and (y[:, -bar:] == Y_BLACK).all()
    assert (u[:, : bar // 2] == C_NEUTRAL).all() and (u[:, -bar // 2 :] == C_NEUTRAL).all()
    assert (v[:, : bar // 2] == C_NEUTRAL).all() and (v[:, -bar // 2 :] == C_NEUTRAL).all()
    inner = (slice(None), slice(bar, 1280 - bar))
    chroma = (slice(None), slice(bar // 2, (1280 - bar) // 2))
    assert np.abs(y[inner].astype(int) - yy).max() <= 2
    assert np.abs(u[chroma].astype(int) - uu).max() <= 2
    assert np.abs(v[chroma].astype(int) - vv).max() <= 2


def test_letterbox_16_9_into_4_3_has_bars_top_and_bottom() -> None:
    out = letterbox(yuv_frame(1280, 720, 200, 60, 200), 640, 480)
    y, u, _ = split_i420(out, 640, 480)
    bar = (480 - 360) // 2
    assert (y[:bar] == Y_BLACK).all() and (y[-bar:] == Y_BLACK).all()
    assert (u[: bar // 2] == C_NEUTRAL).all() and (u[-bar // 2 :] == C_NEUTRAL).all()
    assert np.abs(y[bar:-bar].astype(int) - 200).max() <= 2
    assert np.abs(u[bar // 2 : -bar // 2].astype(int) - 60).max() <= 2


def test_letterbox_keeps_orientation() -> None:
    """A picture bright on its left and dark on its right stays that way, inside the box."""
    rgb = np.zeros((480, 640, 3), np.uint8)
    rgb[:, :320] = 255
    out = letterbox(VideoFrame.from_ndarray(rgb, format="rgb24"), 1280, 720)
    y, _, _ = split_i420(out, 1280, 720)
    x, _, w, _ = fit(640, 480, 1280, 720)
    left = y[:, x + 8 : x + w // 2 - 8].mean()
    right = y[:, x + w // 2 + 8 : x + w - 8].mean()
    assert left > 200 and right < 40


def test_letterbox_same_size_is_a_plain_conversion() -> None:
    out = letterbox(yuv_frame(640, 360, 100, 110, 120), 640, 360)
    y, u, v = split_i420(out, 640, 360)
    assert (y == 100).all() and (u == 110).all() and (v == 120).all()


LETTERBOX_CASES = [
    pytest.param((640, 480), (1280, 720), id="4:3-into-720p"),
    pytest.param((1920, 1080), (640, 480), id="1080p-into-4:3"),
    pytest.param((720, 1280), (1280, 720), id="portrait-phone"),
    pytest.param((352, 288), (640, 360), id="cif"),
    pytest.param((1366, 768), (1280, 720), id="laptop-screen-1366x768"),
    pytest.param((2560, 1080), (640, 480), id="ultrawide-into-4:3"),
]


@pytest.mark.parametrize(("src", "dst"), LETTERBOX_CASES)
def test_letterbox_any_source_size(src: tuple[int, int], dst: tuple[int, int]) -> None:
    (sw, sh), (dw, dh) = src, dst
    yy, uu, vv = 150, 80, 180
    out = letterbox(yuv_frame(sw, sh, yy, uu, vv), dw, dh)
    assert out.shape == (dh * 3 // 2, dw)
    x, y0, w, h = fit(sw, sh, dw, dh)
    y, u, v = split_i420(out, dw, dh)
    assert np.abs(y[y0 : y0 + h, x : x + w].astype(int) - yy).max() <= 2
    assert np.abs(u[y0 // 2 : (y0 + h) // 2, x // 2 : (x + w) // 2].astype(int) - uu).max() <= 2
    assert np.abs(v[y0 // 2 : (y0 + h) // 2, x // 2 : (x + w) // 2].astype(int) - vv).max() <= 2
    mask = np.ones((dh, dw), bool)
    mask[y0 : y0 + h, x : x + w] = False
    assert (y[mask] == Y_BLACK).all()
    cmask = mask[::2, ::2]
    assert (u[cmask] == C_NEUTRAL).all() and (v[cmask] == C_NEUTRAL).all()


# -- slate -------------------------------------------------------------------------------------

W, H = 640, 360


def ink(img: NDArray[Any]) -> NDArray[np.bool_]:
    """Text pixels: the background is a dark gradient (no channel above 60), the text near-white."""
    return np.asarray(img.min(axis=2) > 150)


def test_slate_background_is_blank_outside_the_text() -> None:
    img = slate_bgr(W, H)
    assert img.shape == (H, W, 3)
    mask = ink(img)
    assert not mask[: H // 4].any() and not mask[-H // 4 :].any()
    assert img[: H // 4].max() <= 60


def test_slate_has_hangul_ink_in_the_centre_band() -> None:
    img = slate_bgr(W, H)
    mask = ink(img)
    big = H // 12
    ko_band = mask[H // 2 - big * 3 // 2 : H // 2 + big // 4]  # the Korean line sits above centre
    en_band = mask[H // 2 + big // 4 : H // 2 + H // 8]
    assert ko_band.mean() > 0.02, "no visible Korean text"
    assert en_band.any(), "no English line"
    cols = np.nonzero(ko_band.any(axis=0))[0]
    assert cols[0] > 0 and cols[-1] < W - 1
    assert abs((cols[0] + cols[-1]) / 2 - W / 2) < W * 0.05, "centred"
    # the Korean line is the headline: wider than the English one
    en_cols = np.nonzero(en_band.any(axis=0))[0]
    assert cols[-1] - cols[0] > en_cols[-1] - en_cols[0]


def test_slate_font_draws_real_hangul_not_tofu() -> None:
    """Each distinct syllable of the slate renders a distinct glyph (a missing glyph is one box)."""
    face = cv2.FontFace("sans")
    glyphs: dict[str, bytes] = {}
    for ch in sorted(set(KO.replace(" ", ""))):
        canvas = np.zeros((64, 64, 3), np.uint8)
        cv2.putText(canvas, ch, (4, 48), (255, 255, 255), face, 40)
        assert canvas.any(), ch
        glyphs[ch] = np.packbits(canvas[:, :, 0] > 127).tobytes()
    assert len(set(glyphs.values())) == len(glyphs)
    assert EN.isascii()


def test_slate_is_cached_read_only_and_sized() -> None:
    a = slate_bgr(W, H)
    assert slate_bgr(W, H) is a
    assert not a.flags.writeable
    i420 = slate_i420(W, H)
    assert i420.shape == (H * 3 // 2, W)
    assert not i420.flags.writeable
    back = cv2.cvtColor(np.ascontiguousarray(i420), cv2.COLOR_YUV2BGR_I420)
    assert ink(back).sum() > 0.5 * ink(a).sum()  # the text survives the conversion
    small = slate_bgr(320, 180)
    assert small.shape == (180, 320, 3) and ink(small).any()
