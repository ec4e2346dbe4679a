"""stream.ingest.pattern: the machine-readable test pattern and the test tone."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from stream.ingest.pattern import (
    CELLS,
    bits_of,
    dominant_frequency,
    draw,
    pattern_error,
    read_counter,
    tone,
)

SIZES = [(1280, 720), (640, 360), (640, 480), (320, 180), (1920, 1080), (176, 144)]
NUMBERS = [0, 1, 2, 255, 256, 4660, 0xABCD, 0xFFFF]


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    assert out is not None
    return out


def test_bits_layout() -> None:
    bits = bits_of(0b1010_0000_0000_0101)
    assert len(bits) == CELLS == 24
    assert bits[:16] == [1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1]
    assert bits_of(0x1_0005) == bits_of(0x0005)  # 16-bit counter wraps


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_draw_read_round_trip(size: tuple[int, int]) -> None:
    w, h = size
    for n in NUMBERS:
        img = draw(n, w, h)
        assert img.shape == (h, w, 3) and img.dtype == np.uint8
        assert read_counter(img) == n
        assert pattern_error(img, n) == 0.0


def test_counter_wraps_at_16_bits() -> None:
    assert read_counter(draw(70_000, 320, 180)) == 70_000 & 0xFFFF


@pytest.mark.parametrize("hue", [0, 3, 7])
def test_hue_and_speed_do_not_touch_the_counter(hue: int) -> None:
    for n in (5, 999):
        img = draw(n, 640, 360, hue=hue, speed=3)
        assert read_counter(img) == n
        assert pattern_error(img, n, hue=hue, speed=3) == 0.0
    assert pattern_error(draw(5, 640, 360, hue=hue), 6, hue=hue) > 0  # the bars move


def test_gray_image_reads_too() -> None:
    img = cv2.cvtColor(draw(4321, 640, 360), cv2.COLOR_BGR2GRAY)
    assert read_counter(img) == 4321


@pytest.mark.parametrize(
    ("src", "dst"),
    [((1280, 720), (640, 360)), ((1280, 720), (320, 180)), ((640, 360), (1920, 1080)),
     ((640, 480), (1280, 720)), ((1920, 1080), (854, 480))],
)  # fmt: skip
@pytest.mark.parametrize("interpolation", [cv2.INTER_LINEAR, cv2.INTER_AREA, cv2.INTER_CUBIC])
def test_round_trip_after_resize(
    src: tuple[int, int], dst: tuple[int, int], interpolation: int
) -> None:
    for n in NUMBERS:
        scaled = cv2.resize(draw(n, *src), dst, interpolation=interpolation)
        assert read_counter(scaled) == n


@pytest.mark.parametrize("size", [(1280, 720), (640, 360), (320, 180)], ids=str)
def test_round_trip_after_jpeg_70(size: tuple[int, int]) -> None:
    for n in NUMBERS:
        img = jpeg(draw(n, *size), 70)
        assert read_counter(img) == n
        assert pattern_error(img, n) < 12  # still close to the drawn picture


def test_round_trip_after_resize_then_jpeg() -> None:
    for n in NUMBERS:
        img = jpeg(cv2.resize(draw(n, 1280, 720), (640, 360), interpolation=cv2.INTER_AREA), 70)
        assert read_counter(img) == n


@pytest.mark.parametrize("seed", range(20))
def test_random_images_do_not_read(seed: int) -> None:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, size=(360, 640, 3), dtype=np.uint8)
    assert read_counter(img) is None


@pytest.mark.parametrize("value", [0, 16, 128, 235, 255])
def test_flat_images_do_not_read(value: int) -> None:
    assert read_counter(np.full((360, 640, 3), value, np.uint8)) is None


def test_a_flipped_bit_fails_the_check() -> None:
    n = 1234
    img = draw(n, 480, 270)
    band_h = max(2, int(270 / 12))
    cell_w = 480 / CELLS
    for i in range(CELLS):
        bad = img.copy()
        x0, x1 = int(i * cell_w), int((i + 1) * cell_w)
        bad[:band_h, x0:x1] = 255 - bad[:band_h, x0:x1]
        assert read_counter(bad) is None, f"bit {i}"


@pytest.mark.parametrize("freq", [440.0, 1000.0, 220.0])
@pytest.mark.parametrize("samples", [4800, 9600, 4096])
def test_dominant_frequency_finds_the_tone(freq: float, samples: int) -> None:
    pcm = tone(0, samples, freq)
    assert pcm.shape == (1, 2 * samples) and pcm.dtype == np.int16
    found = dominant_frequency(pcm)
    assert abs(found - freq) <= 48000 / samples  # within one FFT bin


def test_tone_is_continuous_across_chunks() -> None:
    whole = tone(0, 1920, 440.0)
    parts = np.concatenate([tone(0, 960, 440.0), tone(960, 960, 440.0)], axis=1)
    assert np.array_equal(whole, parts)
    assert abs(dominant_frequency(parts) - 440.0) <= 48000 / 1920


def test_tone_level_is_minus_12_dbfs() -> None:
    peak = np.abs(tone(0, 4800, 440.0)).max()
    assert 8000 <= peak <= 8192
    assert abs(20 * np.log10(peak / 32768) + 12) < 0.3


def test_dominant_frequency_of_too_little_or_silence() -> None:
    assert dominant_frequency(tone(0, 100, 440.0)) == 0.0
    assert dominant_frequency(np.zeros((1, 9600), np.int16)) == 0.0


def test_texture_changes_every_frame_but_not_the_counter_or_the_error() -> None:
    w, h = 640, 360
    a, b = draw(10, w, h, texture=True), draw(11, w, h, texture=True)
    plain = draw(10, w, h)
    assert read_counter(a) == 10 and read_counter(b) == 11
    assert pattern_error(a, 10) == 0.0  # the textured quarter is not compared
    assert not np.array_equal(a[h * 3 // 4 :], plain[h * 3 // 4 :])
    assert np.array_equal(a[: h * 3 // 4], plain[: h * 3 // 4])
    assert not np.array_equal(a[h * 3 // 4 :], b[h * 3 // 4 :])  # fresh noise each frame
    assert np.array_equal(draw(10, w, h, texture=True), a)  # deterministic per frame number
