"""Reading the fields of a channel message's JSON header, strictly: every fault a BadMessage."""

from __future__ import annotations

import fractions
import functools
import math
from typing import Any, TypeAlias

from stream.encode.encoders import Codec
from stream.encode.ladder import MAX_RUNGS, Rung

from .channel import BadMessage

Header: TypeAlias = dict[str, Any]

CODECS = {c.value: c for c in Codec}
JSON_TYPES = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "an array",
    dict: "an object",
    type(None): "null",
}


def wrong(kind: str, key: str, want: str, value: Any) -> BadMessage:
    got = JSON_TYPES.get(type(value), type(value).__name__)
    return BadMessage(f"{kind}: {key!r} must be {want}, not {got}")


def get(h: Header, kind: str, key: str) -> Any:
    try:
        return h[key]
    except KeyError:
        raise BadMessage(f"{kind}: {key!r} is missing") from None


def int_(h: Header, kind: str, key: str) -> int:
    value = get(h, kind, key)
    if type(value) is not int:  # not a bool either
        raise wrong(kind, key, "an integer", value)
    return value


def str_(h: Header, kind: str, key: str) -> str:
    value = get(h, kind, key)
    if type(value) is not str:
        raise wrong(kind, key, "a string", value)
    return value


def bool_(h: Header, kind: str, key: str) -> bool:
    value = get(h, kind, key)
    if type(value) is not bool:
        raise wrong(kind, key, "a boolean", value)
    return value


def number(h: Header, kind: str, key: str) -> float:
    value = get(h, kind, key)
    if type(value) is not float and type(value) is not int:
        raise wrong(kind, key, "a number", value)
    try:  # an integer of 400 digits is JSON too; NaN and Infinity are only Python's JSON
        f = float(value)
    except OverflowError:
        f = math.inf
    if not math.isfinite(f):
        raise BadMessage(f"{kind}: {key!r} must be a finite number, not {value!r:.40}")
    return f


def as_codec(kind: str, key: str, value: Any) -> Codec:
    if type(value) is not str or value not in CODECS:
        raise BadMessage(f"{kind}: {key!r} must be one of {', '.join(CODECS)}, not {value!r:.40}")
    return CODECS[value]


def codec(h: Header, kind: str, key: str) -> Codec:
    return as_codec(kind, key, get(h, kind, key))


def codec_or_null(h: Header, kind: str, key: str) -> Codec | None:
    value = get(h, kind, key)
    return None if value is None else as_codec(kind, key, value)


@functools.lru_cache(maxsize=64)  # a handful of time bases, one Fraction each (no gcd per frame)
def fraction(num: int, den: int) -> fractions.Fraction:
    return fractions.Fraction(num, den)


def time_base(h: Header, kind: str, key: str) -> fractions.Fraction:
    value = get(h, kind, key)
    if (
        type(value) is not list
        or len(value) != 2
        or type(value[0]) is not int
        or type(value[1]) is not int
        or value[0] <= 0
        or value[1] <= 0
    ):
        raise BadMessage(f"{kind}: {key!r} must be two positive integers, not {value!r:.40}")
    return fraction(value[0], value[1])


def ladder(h: Header, kind: str, key: str) -> tuple[Rung, ...]:
    value = get(h, kind, key)
    if type(value) is not list or not 1 <= len(value) <= MAX_RUNGS:
        raise BadMessage(f"{kind}: {key!r} must be 1 to {MAX_RUNGS} rungs, not {value!r:.40}")
    rungs = []
    for r in value:
        if (
            type(r) is not list
            or len(r) != 4
            or type(r[0]) is not str
            or not all(type(x) is int and x > 0 for x in r[1:])
        ):
            raise BadMessage(f"{kind}: a rung is [name, width, height, bitrate], not {r!r:.40}")
        rungs.append(Rung(r[0], r[1], r[2], r[3]))
    return tuple(rungs)
