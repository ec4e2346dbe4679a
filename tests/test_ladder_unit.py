"""The rendition ladder (stream/encode/ladder.py): parsing, defaults, scaling an I420 picture."""

from __future__ import annotations

import numpy as np
import pytest

from stream.encode.ladder import (
    LadderError,
    Rung,
    default_ladder,
    ladder_for,
    parse_bitrate,
    parse_ladder,
    scale_i420,
)


def test_the_default_ladder_of_720p_is_three_rungs_named_by_their_short_side() -> None:
    assert default_ladder(1280, 720, 2_500_000) == (
        Rung("720p", 1280, 720, 2_500_000),
        Rung("360p", 640, 360, 800_000),
        Rung("180p", 320, 180, 256_000),
    )


def test_a_small_output_gets_fewer_rungs_and_portrait_keeps_its_shape() -> None:
    assert [r.name for r in default_ladder(640, 360, 1_000_000)] == ["360p", "180p"]
    assert [r.name for r in default_ladder(320, 180, 300_000)] == ["180p"]
    portrait = default_ladder(720, 1280, 2_500_000)
    assert [(r.name, r.width, r.height) for r in portrait] == [
        ("720p", 720, 1280), ("360p", 360, 640), ("180p", 180, 320)]  # fmt: skip


def test_a_configured_ladder_is_sorted_highest_first_and_sized_from_the_output() -> None:
    rungs = parse_ladder("180p:250k, 720p:2.5M ,360p:800000", 1280, 720)
    assert rungs == (
        Rung("720p", 1280, 720, 2_500_000),
        Rung("360p", 640, 360, 800_000),
        Rung("180p", 320, 180, 250_000),
    )
    assert ladder_for("", 1280, 720, 2_500_000) == default_ladder(1280, 720, 2_500_000)
    assert ladder_for("720p:3M", 1280, 720, 2_500_000) == (Rung("720p", 1280, 720, 3_000_000),)
    # an odd size rounds to even numbers (encoders need them)
    assert parse_ladder("480p:1M,270p:500k", 854, 480)[1] == Rung("270p", 480, 270, 500_000)


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("", "at least one rung"),
        ("360p:800k", "top rung must be the output size"),
        ("1080p:5M,720p:2M", "larger than the output"),
        ("720p:2M,60p:100k", "short side must be"),
        ("720p:2M,720p:1M", "listed twice"),
        ("720p", "name:bitrate"),
        ("hd:2M", "name:bitrate"),
        ("720p:fast", "a number of bit/s"),
        ("720p:10k", "between 50k and 20M"),
        ("720p:2M,360p:3M", "lower bitrate than the one above"),
        ("720p:2M,540p:1M,360p:800k,270p:500k,180p:250k,90p:100k", "at most 5 rungs"),
    ],
)
def test_ladders_we_cannot_encode_are_refused_with_the_reason(spec: str, why: str) -> None:
    with pytest.raises(LadderError, match=why):
        parse_ladder(spec, 1280, 720)


def test_bitrates_take_k_and_m() -> None:
    assert [parse_bitrate(x) for x in ("800k", "800K", "2.5M", "250000")] == [
        800_000, 800_000, 2_500_000, 250_000]  # fmt: skip


def _i420(width: int, height: int, y: int, u: int, v: int) -> np.ndarray:
    pic = np.empty((height * 3 // 2, width), np.uint8)
    pic[:height] = y
    flat = pic.reshape(-1)
    q = (width // 2) * (height // 2)
    flat[width * height : width * height + q] = u
    flat[width * height + q :] = v
    return pic


def test_scaling_keeps_each_plane_in_its_place() -> None:
    pic = _i420(640, 360, 200, 60, 180)
    pic[:180, :320] = 20  # a dark top-left quarter of the luma
    out = scale_i420(pic, 640, 360, 320, 180)
    assert out.shape == (270, 320)
    y = out[:180]
    assert y[:90, :160].mean() == pytest.approx(20, abs=1)
    assert y[90:, 160:].mean() == pytest.approx(200, abs=1)
    flat = out.reshape(-1)
    q = 160 * 90
    assert np.all(flat[320 * 180 : 320 * 180 + q] == 60)
    assert np.all(flat[320 * 180 + q :] == 180)
