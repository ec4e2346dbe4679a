"""Finding a rendered string in a picture (for tests and checks of what viewers see).

``score(picture, text, size, region)`` renders ``text`` with the overlay's font at ``size`` px and
returns the best normalised cross-correlation of that rendering inside ``region`` of the picture
(grey levels; 1.0 = identical). Used to assert that a decoded frame shows a price or a stock
count, and that Hangul came out as glyphs (a string of unmapped code points, drawn as boxes,
must not match).
"""

from __future__ import annotations

import cv2
import numpy as np

from stream.compose.sprites import BGR, Image, put, text_width

UNMAPPED = "\U000f0000"  # a private-use code point no font here maps: drawn as a box


def rendering(text: str, size: int, color: BGR = (250, 250, 250), bg: BGR = (0, 0, 0)) -> Image:
    pad = max(2, size // 8)
    img = np.empty((size * 3 // 2 + 2 * pad, text_width(text, size) + 2 * pad, 3), np.uint8)
    img[:] = bg
    put(img, text, pad, pad + size * 11 // 10, size, color)
    ys, xs = np.nonzero(cv2.absdiff(img, np.full_like(img, bg)).max(axis=2))
    if ys.size == 0:
        return img
    return img[max(0, ys.min() - 1) : ys.max() + 2, max(0, xs.min() - 1) : xs.max() + 2]


def score(picture: Image, text: str, size: int, region: tuple[int, int, int, int]) -> float:
    x, y, w, h = region
    area = cv2.cvtColor(picture[y : y + h, x : x + w], cv2.COLOR_BGR2GRAY)
    tpl = cv2.cvtColor(rendering(text, size), cv2.COLOR_BGR2GRAY)
    if tpl.shape[0] > area.shape[0] or tpl.shape[1] > area.shape[1]:
        return 0.0
    found = cv2.matchTemplate(area, tpl, cv2.TM_CCOEFF_NORMED)
    return float(found.max())
