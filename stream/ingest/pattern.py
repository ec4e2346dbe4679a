"""A moving test pattern with a machine-readable frame counter, and a test tone.

The pattern is what the synthetic studio, the tests and the benchmarks publish. Each frame carries
its number as 16 black/white cells plus an 8-bit check along the top, in relative coordinates, so a
viewer can read it back after scaling, encoding and decoding, and compare the rest of the picture to
:func:`draw` of the same number.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

Image = NDArray[Any]  # 8-bit pictures, BGR or gray, however cv2 typed them

CELLS = 24  # 16 counter bits + 8 check bits
_BAND = 1 / 12  # counter band height, relative
_BAR_COLORS = np.array(
    [
        (235, 235, 235),
        (20, 200, 230),
        (200, 200, 20),
        (40, 190, 40),
        (190, 40, 190),
        (40, 40, 210),
        (200, 60, 30),
        (30, 30, 30),
    ],
    dtype=np.uint8,
)


def _check(n: int) -> int:
    return ((n & 0xFF) + (n >> 8 & 0xFF) + 0x5A) & 0xFF ^ 0xA5


def bits_of(n: int) -> list[int]:
    n &= 0xFFFF
    c = _check(n)
    return [(n >> i) & 1 for i in range(16)] + [(c >> i) & 1 for i in range(8)]


def period(width: int, speed: int = 8) -> int:
    """Frames after which :func:`draw`'s bars (not its counter) repeat."""
    bar_w = max(1, width // 8)
    span = bar_w * 8
    for k in range(1, span + 1):
        if (k * speed) % span == 0:
            return k
    return span


def draw(
    n: int, width: int, height: int, hue: int = 0, speed: float = 8, texture: bool = False
) -> Image:
    """BGR frame ``n``: colour bars scrolling ``speed`` px/frame, counter band on top.

    ``hue`` rotates the bar colours so two publishers' patterns can be told apart. ``texture``
    fills the bottom quarter with fresh noise every frame, so an encoder spends its whole bitrate
    as it would on a camera (benchmarks); :func:`pattern_error` ignores that quarter.
    """
    bar_w = max(1, width // 8)
    xs = (np.arange(width) + round(n * speed)) // bar_w % 8
    colors = np.roll(_BAR_COLORS, hue, axis=0)
    row = colors[xs]  # width x 3
    img = np.broadcast_to(row, (height, width, 3)).copy()
    band_h = max(2, int(height * _BAND))
    img[:band_h] = 128
    cell_w = width / CELLS
    for i, bit in enumerate(bits_of(n)):
        x0, x1 = int(i * cell_w), int((i + 1) * cell_w)
        img[:band_h, x0:x1] = 255 if bit else 0
    if texture:
        rng = np.random.default_rng(n)
        rows = height - height * 3 // 4
        blocks = rng.integers(64, 192, (rows // 8 + 1, width // 8 + 1, 3), np.uint8)
        img[height * 3 // 4 :] = np.repeat(np.repeat(blocks, 8, 0), 8, 1)[:rows, :width]
    return img


def stamp_i420(i420: Image, width: int, n: int) -> None:
    """Write frame number ``n``'s counter cells into the luma plane of an I420 picture in place
    (a frame drawn by :func:`draw`, converted to I420, then restamped with another number)."""
    height = i420.shape[0] * 2 // 3
    band_h = max(2, int(height * _BAND))
    cell_w = width / CELLS
    for i, bit in enumerate(bits_of(n)):
        x0, x1 = int(i * cell_w), int((i + 1) * cell_w)
        i420[:band_h, x0:x1] = 235 if bit else 16


def read_counter(img: Image) -> int | None:
    """The frame number stamped by :func:`draw`, or None if the band does not check out."""
    h, w = img.shape[:2]
    band_h = max(2, int(h * _BAND))
    y = band_h // 2
    cell_w = w / CELLS
    gray = img[y, :, :].mean(axis=1) if img.ndim == 3 else img[y, :]
    bits = []
    for i in range(CELLS):
        x0, x1 = int(i * cell_w + cell_w * 0.3), int((i + 1) * cell_w - cell_w * 0.3)
        v = float(gray[x0 : max(x0 + 1, x1)].mean())
        if 60 < v < 195:
            return None
        bits.append(1 if v >= 128 else 0)
    n = sum(b << i for i, b in enumerate(bits[:16]))
    check = sum(b << i for i, b in enumerate(bits[16:]))
    return n if check == _check(n) else None


def pattern_error(img: Image, n: int, hue: int = 0, speed: float = 8) -> float:
    """Mean absolute difference (0–255) between ``img`` and pattern frame ``n`` below the band."""
    h, w = img.shape[:2]
    expected = draw(n, w, h, hue=hue, speed=speed)
    top = max(2, int(h * _BAND)) + 4
    bottom = h * 3 // 4 - 4  # the texture quarter, when there is one, is not compared
    diff = np.abs(img[top:bottom].astype(np.int16) - expected[top:bottom].astype(np.int16))
    return float(diff.mean())


def tone(start_sample: int, samples: int, freq: float, rate: int = 48000) -> NDArray[np.int16]:
    """Interleaved stereo s16 sine samples (shape ``(1, 2*samples)``), amplitude -12 dBFS."""
    t = (np.arange(samples) + start_sample) / rate
    mono = (np.sin(2 * np.pi * freq * t) * 8192).astype(np.int16)
    return np.repeat(mono, 2).reshape(1, -1)


def dominant_frequency(samples: NDArray[np.int16], rate: int = 48000, channels: int = 2) -> float:
    """The strongest frequency in interleaved samples (first channel)."""
    x = samples.reshape(-1)[::channels].astype(np.float64)
    if x.size < 256:
        return 0.0
    x = x * np.hanning(x.size)
    spectrum = np.abs(np.fft.rfft(x))
    spectrum[:3] = 0
    return float(np.argmax(spectrum) * rate / x.size)
