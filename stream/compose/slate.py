"""The slate viewers see while the host is away: a still frame, rendered once per output size."""

from __future__ import annotations

import functools

import cv2
import numpy as np
from numpy.typing import NDArray

KO = "잠시 후 다시 시작합니다"
EN = "Be right back"


def _text_width(text: str, size: int, face: cv2.FontFace) -> int:
    scratch = np.zeros((size * 2, size * len(text) + 16, 3), np.uint8)
    end, _ = cv2.putText(scratch, text, (0, size), (255, 255, 255), face, size)
    return int(end[0])


@functools.lru_cache(maxsize=8)
def slate_bgr(width: int, height: int) -> NDArray[np.uint8]:
    img = np.empty((height, width, 3), np.uint8)
    # A calm vertical gradient, dark navy to near black.
    ramp = np.linspace(60, 18, height, dtype=np.float32)[:, None]
    img[:, :, 0] = ramp
    img[:, :, 1] = ramp * 0.55
    img[:, :, 2] = ramp * 0.35
    face = cv2.FontFace("sans")
    big = max(12, height // 12)
    small = max(10, height // 20)
    for text, size, y in ((KO, big, height // 2 - big // 4), (EN, small, height // 2 + small * 2)):
        x = max(4, (width - _text_width(text, size, face)) // 2)
        cv2.putText(img, text, (x, y), (245, 245, 245), face, size)
    img.setflags(write=False)
    return img


@functools.lru_cache(maxsize=8)
def slate_i420(width: int, height: int) -> NDArray[np.uint8]:
    bgr = np.ascontiguousarray(slate_bgr(width, height))
    out = np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420), np.uint8)
    out.setflags(write=False)
    return out
