"""Where each publisher's picture goes in the output, and the I420 canvas that results.

Pictures come host first, then co-hosts in join order; whoever is first takes the main place (a
co-host does while the host is away). At most :data:`MAX_PICTURES` are drawn.

- ``solo``: the first picture only, letterboxed over the whole canvas (portrait: covering it,
  centre-cropped, however much that cuts: a phone show fills the phone).
- ``side_by_side``: one picture fills the canvas (as ``solo``); two are tiles side by side (1x2;
  portrait: stacked, 2x1); three or four a 2x2 grid in reading order (with three, the last cell
  stays black). Tiles are filled edge to edge: each picture is scaled to cover its tile and
  centre-cropped — unless that would throw away more than half of it (a picture far from the
  tile's shape), then letterboxed.
- ``pip``: the first picture over the whole canvas (as ``solo``); the others as insets
  (:data:`INSET_WIDTH` of the width, the output's aspect, cropped to fill) stacked in a column at
  the top right of the safe area (:data:`SAFE_MARGIN` margins; portrait: a row along the top,
  :data:`PORTRAIT_INSET_WIDTH` wide, from the right), each inside a thin white border.

Every rectangle is even-aligned (I420 subsamples chroma 2x2). Pictures are scaled in I420 by
swscale (``VideoFrame.reformat``) and their planes copied into place: nothing converts to BGR.
Pure functions, no I/O; :func:`compose_sources` returns a new writable array on every call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from av.video.frame import VideoFrame
from numpy.typing import NDArray

from stream.encode.ladder import scale_i420

from .slate import slate_i420

I420 = NDArray[np.uint8]

SOLO, SIDE_BY_SIDE, PIP = "solo", "side_by_side", "pip"
LAYOUTS = (SOLO, SIDE_BY_SIDE, PIP)
# With one publisher side_by_side is the full picture; when a co-host joins, the merchant and the
# creator are shown as equals without anyone touching a control.
DEFAULT_LAYOUT = SIDE_BY_SIDE
MAX_PICTURES = 4  # the host and up to 3 co-hosts
SAFE_MARGIN = 0.05
INSET_WIDTH = 0.2
INSET_GAP = 0.02  # of the height, between insets
PORTRAIT_INSET_WIDTH = 0.24  # portrait insets: narrower (9:16), in a row
MAX_CROP = 2.0  # a covering scale may be at most this many times the tile's area
CUT_FIRST = 1.5  # past this, the part that shows is cut out before scaling
Y_BLACK, C_NEUTRAL = 16, 128
BORDER_YUV = (235, 128, 128)  # the inset border: white


@dataclasses.dataclass(frozen=True)
class Box:
    """A picture's place on the canvas: even x, y, w, h; ``cover``: fill and crop (else
    letterbox); ``border``: width of the frame drawn inside the box around the picture."""

    x: int
    y: int
    w: int
    h: int
    cover: bool = False
    border: int = 0
    max_crop: float = MAX_CROP


def _even(v: float) -> int:
    return max(2, int(v) // 2 * 2)


def _even_up(v: float) -> int:
    return max(2, -(-int(np.ceil(v)) // 2) * 2)


def fit(src_w: int, src_h: int, dst_w: int, dst_h: int) -> tuple[int, int, int, int]:
    """Letterbox: (x, y, w, h) of the largest even-sized src-aspect box centred in dst."""
    scale = min(dst_w / src_w, dst_h / src_h)
    w = min(dst_w, max(2, int(src_w * scale) // 2 * 2))
    h = min(dst_h, max(2, int(src_h * scale) // 2 * 2))
    x = (dst_w - w) // 4 * 2
    y = (dst_h - h) // 4 * 2
    return x, y, w, h


def check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}: one of {', '.join(LAYOUTS)}")
    return layout


def boxes(layout: str, count: int, width: int, height: int) -> list[Box]:
    """The boxes of the first ``min(count, MAX_PICTURES)`` pictures (fewer for ``solo``)."""
    check_layout(layout)
    if width % 2 or height % 2 or width < 4 or height < 4:
        raise ValueError(f"the output size must be even and at least 4x4, not {width}x{height}")
    count = min(count, MAX_PICTURES)
    if count <= 0:
        return []
    portrait = height > width
    # portrait: a phone's picture fills the screen, whatever the camera's shape (cover-cropped)
    full = Box(0, 0, width, height, cover=portrait, max_crop=float("inf"))
    if layout == SOLO or count == 1:
        return [full]
    if layout == SIDE_BY_SIDE:
        xs = (0, width) if portrait and count == 2 else (0, _even(width / 2), width)
        ys = (0, height) if count == 2 and not portrait else (0, _even(height / 2), height)
        cells = [
            Box(xs[c], ys[r], xs[c + 1] - xs[c], ys[r + 1] - ys[r], cover=True)
            for r in range(len(ys) - 1)
            for c in range(len(xs) - 1)
        ]
        return cells[:count]
    mx, my = _even(width * SAFE_MARGIN), _even(height * SAFE_MARGIN)
    iw = _even(width * (PORTRAIT_INSET_WIDTH if portrait else INSET_WIDTH))
    ih = _even(iw * height / width)
    gap = _even(max(width, height) * INSET_GAP)
    border = _even(min(width, height) / 180)
    insets = [  # portrait: a row along the top, from the right; landscape: a column at the right
        Box(width - mx - iw - i * (iw + gap), my, iw, ih, cover=True, border=border)
        if portrait
        else Box(width - mx - iw, my + i * (ih + gap), iw, ih, cover=True, border=border)
        for i in range(count - 1)
    ]
    return [full, *insets]


def blank(width: int, height: int) -> I420:
    """A new black I420 canvas."""
    canvas = np.empty((height * 3 // 2, width), np.uint8)
    canvas[:height] = Y_BLACK
    canvas[height:] = C_NEUTRAL
    return canvas


def _planes(img: I420, width: int, height: int) -> tuple[I420, I420, I420]:
    """Views of the Y, U and V planes of a contiguous I420 array."""
    flat = img.reshape(-1)
    n, q = width * height, width * height // 4
    y = flat[:n].reshape(height, width)
    u = flat[n : n + q].reshape(height // 2, width // 2)
    v = flat[n + q : n + 2 * q].reshape(height // 2, width // 2)
    return y, u, v


def _blit(
    dst: I420,
    size: tuple[int, int],
    src: I420,
    src_size: tuple[int, int],
    at: tuple[int, int],
    rect: Box,
) -> None:
    """Copy ``rect`` (even geometry) of I420 ``src`` into ``dst`` with its top left at ``at``."""
    dx, dy = at
    sx, sy, w, h = rect.x, rect.y, rect.w, rect.h
    for i, (d, s) in enumerate(zip(_planes(dst, *size), _planes(src, *src_size), strict=True)):
        k = 1 if i == 0 else 2
        d[dy // k : (dy + h) // k, dx // k : (dx + w) // k] = s[
            sy // k : (sy + h) // k, sx // k : (sx + w) // k
        ]


def _fill(dst: I420, size: tuple[int, int], box: Box, yuv: tuple[int, int, int]) -> None:
    for i, plane in enumerate(_planes(dst, *size)):
        k = 1 if i == 0 else 2
        plane[box.y // k : (box.y + box.h) // k, box.x // k : (box.x + box.w) // k] = yuv[i]


def _scaled(picture: VideoFrame, w: int, h: int) -> I420:
    out = picture.reformat(width=w, height=h, format="yuv420p").to_ndarray()
    return np.ascontiguousarray(out, np.uint8)


def _cropped(picture: VideoFrame, cut: Box) -> I420:
    """``cut`` (even geometry) of ``picture`` as a contiguous I420 array."""
    pw, ph = picture.width, picture.height
    if pw % 2 or ph % 2 or picture.format.name != "yuv420p":
        picture = picture.reformat(width=pw // 2 * 2, height=ph // 2 * 2, format="yuv420p")
        pw, ph = picture.width, picture.height
    src = np.ascontiguousarray(picture.to_ndarray(), np.uint8)
    out = np.empty((cut.h * 3 // 2, cut.w), np.uint8)  # every pixel is written just below
    _blit(out, (cut.w, cut.h), src, (pw, ph), (0, 0), cut)
    return out


def draw(canvas: I420, size: tuple[int, int], picture: VideoFrame, box: Box) -> None:
    """``picture`` scaled into ``box`` of ``canvas`` (in place)."""
    if box.border:
        _fill(canvas, size, box, BORDER_YUV)
        b = box.border
        box = dataclasses.replace(box, x=box.x + b, y=box.y + b, w=box.w - 2 * b, h=box.h - 2 * b)
        _fill(canvas, size, box, (Y_BLACK, C_NEUTRAL, C_NEUTRAL))
    pw, ph = picture.width, picture.height
    if box.cover:
        scale = max(box.w / pw, box.h / ph)
        sw, sh = max(box.w, _even_up(pw * scale)), max(box.h, _even_up(ph * scale))
        if sw * sh <= box.max_crop * box.w * box.h:
            if sw * sh > CUT_FIRST * box.w * box.h:
                # most of the picture will not show (a landscape camera in a portrait show):
                # cut out the part that does, then scale only that
                cw = min(pw // 2 * 2, _even_up(box.w / scale))
                ch = min(ph // 2 * 2, _even_up(box.h / scale))
                part = _cropped(picture, Box((pw - cw) // 4 * 2, (ph - ch) // 4 * 2, cw, ch))
                if cw <= box.w:  # enlarged: OpenCV's is the cheaper here
                    scaled = scale_i420(part, cw, ch, box.w, box.h)
                else:
                    scaled = _scaled(VideoFrame.from_ndarray(part, format="yuv420p"), box.w, box.h)
                whole = Box(0, 0, box.w, box.h)
                _blit(canvas, size, scaled, (box.w, box.h), (box.x, box.y), whole)
                return
            crop = Box((sw - box.w) // 4 * 2, (sh - box.h) // 4 * 2, box.w, box.h)
            _blit(canvas, size, _scaled(picture, sw, sh), (sw, sh), (box.x, box.y), crop)
            return
    x, y, w, h = fit(pw, ph, box.w, box.h)
    _blit(canvas, size, _scaled(picture, w, h), (w, h), (box.x + x, box.y + y), Box(0, 0, w, h))


def compose_sources(pictures: Sequence[VideoFrame], layout: str, width: int, height: int) -> I420:
    """The ``width``x``height`` I420 canvas (shape ``(height*3//2, width)``) of ``pictures``
    (main first) in ``layout``; the slate when there are none. Always a new writable array."""
    placed = boxes(layout, len(pictures), width, height)
    if not placed:
        return slate_i420(width, height).copy()
    canvas = blank(width, height)
    for picture, box in zip(pictures, placed, strict=False):
        draw(canvas, (width, height), picture, box)
    return canvas
