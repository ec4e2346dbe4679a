"""The rendition ladder: the sizes and bitrates each broadcast is encoded at, once per rung.

The picture is composed (overlay included) once at the top rung's size; every lower rung is that
picture scaled down (:func:`scale_i420`) and encoded on its own, shared by every viewer on it. A
rung is named after its short side (``720p``, ``360p``, ``180p``), so the same name means the
same quality whether the broadcast is landscape or portrait.

``JANGTEO_LADDER`` lists the rungs as ``name:bitrate`` pairs, highest first or not:
``720p:2500k,360p:800k,180p:250k`` (bitrates in bit/s, with ``k`` or ``M``). Without it the ladder
is the output size at ``video_bitrate``, then halves of it while the short side stays ≥ 180
(each at 0.32 of the rung above: 2.5 Mbps → 800 kbps → 256 kbps).
"""

from __future__ import annotations

import dataclasses
import itertools
import re

import cv2
import numpy as np
from numpy.typing import NDArray

MAX_RUNGS = 5
MIN_SHORT_SIDE = 90
DEFAULT_MIN_SHORT_SIDE = 180
STEP_BITRATE = 0.32  # a rung of half the size gets this share of the bitrate above it
MIN_BITRATE, MAX_BITRATE = 50_000, 20_000_000

_NAME = re.compile(r"([1-9][0-9]{1,3})p")
_BITRATE = re.compile(r"([0-9]+(?:\.[0-9]+)?)([kKmM]?)")


class LadderError(ValueError):
    """A ladder we cannot encode."""


@dataclasses.dataclass(frozen=True, slots=True)
class Rung:
    name: str
    width: int
    height: int
    bitrate: int

    def public(self) -> dict[str, object]:
        return {"name": self.name, "width": self.width, "height": self.height,
                "bitrate": self.bitrate}  # fmt: skip


def _even(x: float) -> int:
    return max(2, round(x / 2) * 2)


def rung(short: int, width: int, height: int, bitrate: int) -> Rung:
    """The rung whose short side is ``short``, in the output's shape (``width``x``height``)."""
    top_short = min(width, height)
    if short == top_short:
        return Rung(f"{short}p", width, height, bitrate)
    scale = short / top_short
    w, h = _even(width * scale), _even(height * scale)
    return Rung(f"{short}p", w, h, bitrate)


def default_ladder(width: int, height: int, bitrate: int) -> tuple[Rung, ...]:
    short = min(width, height)
    rungs = [rung(short, width, height, bitrate)]
    while len(rungs) < 3 and short // 2 >= DEFAULT_MIN_SHORT_SIDE and short % 4 == 0:
        short //= 2
        bitrate = int(bitrate * STEP_BITRATE)
        rungs.append(rung(short, width, height, bitrate))
    return tuple(rungs)


def ladder_for(spec: str, width: int, height: int, bitrate: int) -> tuple[Rung, ...]:
    """The broadcast's ladder: ``spec`` (``JANGTEO_LADDER``) or the default for the output."""
    return (
        parse_ladder(spec, width, height)
        if spec.strip()
        else default_ladder(width, height, bitrate)
    )


def parse_bitrate(text: str) -> int:
    m = _BITRATE.fullmatch(text.strip())
    if not m:
        raise LadderError(f"bitrate {text!r}: a number of bit/s, e.g. 800k or 2.5M")
    value = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[m.group(2).lower()]
    if not MIN_BITRATE <= value <= MAX_BITRATE:
        raise LadderError(f"bitrate {text!r}: between 50k and 20M")
    return int(value)


def parse_ladder(text: str, width: int, height: int) -> tuple[Rung, ...]:
    """``720p:2500k,360p:800k,180p:250k`` for an output of ``width``x``height``; highest first.

    The top rung must be the output size (the picture is composed once, at that size)."""
    top_short = min(width, height)
    found: dict[int, Rung] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, rate = part.partition(":")
        m = _NAME.fullmatch(name.strip())
        if not m or not sep:
            raise LadderError(f"rung {part!r}: name:bitrate, e.g. 360p:800k")
        short = int(m.group(1))
        if short > top_short:
            raise LadderError(f"rung {name.strip()!r} is larger than the output ({top_short}p)")
        if short < MIN_SHORT_SIDE:
            raise LadderError(f"rung {name.strip()!r}: the short side must be ≥ {MIN_SHORT_SIDE}")
        if short in found:
            raise LadderError(f"rung {name.strip()!r} is listed twice")
        found[short] = rung(short, width, height, parse_bitrate(rate))
    if not found:
        raise LadderError("the ladder needs at least one rung")
    if len(found) > MAX_RUNGS:
        raise LadderError(f"at most {MAX_RUNGS} rungs")
    if top_short not in found:
        raise LadderError(f"the top rung must be the output size ({top_short}p)")
    rungs = tuple(found[s] for s in sorted(found, reverse=True))
    if any(a.bitrate <= b.bitrate for a, b in itertools.pairwise(rungs)):
        raise LadderError("each rung needs a lower bitrate than the one above it")
    return rungs


def scale_i420(
    picture: NDArray[np.uint8], width: int, height: int, w: int, h: int
) -> NDArray[np.uint8]:
    """A ``width``x``height`` I420 picture (planes stacked, as PyAV has them) at ``w``x``h``."""
    out = np.empty((h * 3 // 2, w), np.uint8)
    flat_in, flat_out = picture.reshape(-1), out.reshape(-1)
    out[:h] = cv2.resize(picture[:height], (w, h), interpolation=cv2.INTER_AREA)
    sq_in, sq_out = (width // 2) * (height // 2), (w // 2) * (h // 2)
    for i in (0, 1):
        src = flat_in[width * height + i * sq_in : width * height + (i + 1) * sq_in]
        dst = flat_out[w * h + i * sq_out : w * h + (i + 1) * sq_out]
        scaled = cv2.resize(src.reshape(height // 2, width // 2), (w // 2, h // 2),
                            interpolation=cv2.INTER_AREA)  # fmt: skip
        dst[:] = scaled.reshape(-1)
    return out
