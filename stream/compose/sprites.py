"""Overlay sprites: drawn once per state change, composited into I420 frames many times.

A :class:`Sprite` is a rectangle rendered in BGR with OpenCV (Hangul through ``cv2.FontFace``)
and kept as I420 planes plus an *ink* mask. Compositing costs two SIMD passes per plane and no
per-pixel alpha arithmetic in Python: the panel behind the content is blended with one opacity
(``cv2.addWeighted``), then the content (text, thumbnail, QR code) is copied opaque through its
mask (``cv2.copyTo``). Anti-aliased text edges are part of the ink, already mixed with the panel
colour when they were drawn.
"""

from __future__ import annotations

import dataclasses
import threading

import cv2
import numpy as np
from numpy.typing import NDArray

BGR = tuple[int, int, int]
Image = NDArray[np.uint8]

_local = threading.local()


def face() -> cv2.FontFace:
    """OpenCV's built-in sans face (it has Hangul), one per thread."""
    f: cv2.FontFace | None = getattr(_local, "face", None)
    if f is None:
        f = _local.face = cv2.FontFace("sans")
    return f


def text_width(text: str, size: int) -> int:
    if not text:
        return 0
    x, _, w, _ = cv2.getTextSize((4096, 4 * size), text, (0, size), face(), size)
    return int(x + w)


def put(img: Image, text: str, x: int, baseline: int, size: int, color: BGR) -> int:
    """Draw ``text`` with its baseline at ``baseline``; returns the x where it ends."""
    if not text:
        return x
    end, _ = cv2.putText(img, text, (x, baseline), color, face(), size)
    return int(end[0])


def _fits(text: str, size: int, max_w: int, suffix: str = "") -> int:
    """Length of the longest prefix of ``text`` that fits ``max_w`` with ``suffix`` after it."""
    lo, hi = 0, len(text)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if text_width(text[:mid].rstrip() + suffix, size) <= max_w:
            lo = mid
        else:
            hi = mid - 1
    return lo


def ellipsize(text: str, size: int, max_w: int) -> str:
    """``text``, cut with '…' so it fits ``max_w`` pixels."""
    if text_width(text, size) <= max_w:
        return text
    return text[: _fits(text, size, max_w, "…")].rstrip() + "…"


def wrap(text: str, size: int, max_w: int, lines: int) -> list[str]:
    """Greedy word wrap into at most ``lines`` lines; a word wider than a line is broken between
    characters (as Korean allows); if text remains, the last line ends with '…'."""
    words = text.split()
    out: list[str] = []
    while words and len(out) < lines:
        line = words.pop(0)
        if text_width(line, size) > max_w:
            cut = max(1, _fits(line, size, max_w))
            words.insert(0, line[cut:])
            line = line[:cut]
        else:
            while words and text_width(f"{line} {words[0]}", size) <= max_w:
                line = f"{line} {words.pop(0)}"
        out.append(line)
    if words:
        out[-1] = ellipsize(f"{out[-1]} {' '.join(words)}", size, max_w)
    return out


def won(amount: int) -> str:
    return f"{amount:,}원"


def ink_of(img: Image, background: BGR, threshold: int = 24) -> Image:
    """255 where ``img`` differs from the flat ``background`` (what was drawn on it)."""
    flat = np.empty_like(img)
    flat[:] = background
    diff = cv2.absdiff(img, flat)
    return np.asarray(
        cv2.threshold(diff.max(axis=2), threshold - 1, 255, cv2.THRESH_BINARY)[1], np.uint8
    )


@dataclasses.dataclass(frozen=True, eq=False)
class Sprite:
    """A rendered element at (x, y) of the output frame; x, y, w, h are even."""

    x: int
    y: int
    yuv: Image  # (h * 3 / 2, w) I420
    ink: Image  # (h, w): 255 where the content is opaque
    ink2: Image  # (h / 2, w / 2): the same for the chroma planes
    alpha: float  # opacity of the panel behind the content; 0: content only

    @property
    def w(self) -> int:
        return int(self.yuv.shape[1])

    @property
    def h(self) -> int:
        return int(self.yuv.shape[0] * 2 // 3)

    @classmethod
    def from_bgr(cls, bgr: Image, ink: Image, x: int, y: int, alpha: float) -> Sprite:
        h, w = bgr.shape[:2]
        if h % 2 or w % 2 or x % 2 or y % 2:
            raise ValueError("sprites are placed and sized on even pixels (I420 chroma)")
        yuv = np.asarray(cv2.cvtColor(np.ascontiguousarray(bgr), cv2.COLOR_BGR2YUV_I420), np.uint8)
        # a chroma sample is ink when any of its 2x2 luma pixels is
        ink2 = np.ascontiguousarray(ink.reshape(h // 2, 2, w // 2, 2).max(axis=(1, 3)))
        for a in (yuv, ink, ink2):
            a.setflags(write=False)
        return cls(x, y, yuv, np.ascontiguousarray(ink), ink2, alpha)

    def planes(self) -> tuple[Image, Image, Image]:
        return planes(self.yuv, self.w, self.h)

    def draw(self, canvas: Image, width: int, height: int) -> None:
        """Composite into the I420 ``canvas`` (``width`` x ``height``) in place."""
        if self.x < 0 or self.y < 0 or self.x + self.w > width or self.y + self.h > height:
            raise ValueError("sprite outside the frame")
        targets = planes(canvas, width, height)
        for i, (dst, src) in enumerate(zip(targets, self.planes(), strict=True)):
            d = 1 if i == 0 else 2
            x, y, w, h = self.x // d, self.y // d, self.w // d, self.h // d
            roi = dst[y : y + h, x : x + w]
            if self.alpha >= 1.0:
                roi[...] = src
                continue
            if self.alpha > 0.0:
                cv2.addWeighted(roi, 1.0 - self.alpha, src, self.alpha, 0.0, dst=roi)
            cv2.copyTo(src, self.ink if i == 0 else self.ink2, roi)


def planes(i420: Image, width: int, height: int) -> tuple[Image, Image, Image]:
    """Views of the Y, U and V planes of a contiguous I420 array."""
    flat = i420.reshape(-1)
    n, q = width * height, width * height // 4
    return (
        flat[:n].reshape(height, width),
        flat[n : n + q].reshape(height // 2, width // 2),
        flat[n + q : n + 2 * q].reshape(height // 2, width // 2),
    )
