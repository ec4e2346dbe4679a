"""Helpers for media tests: wait on decoded frames, classify pictures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import numpy as np

from jangteo.testkit.clients import Received, WhepClient
from stream.compose.slate import slate_bgr
from stream.ingest import pattern

PATTERN_TOLERANCE = 30.0  # mean abs error (0-255) of a decoded frame vs the pattern it claims


def is_pattern(img: np.ndarray, hue: int = 0, drawn_width: int | None = None) -> bool:
    """Whether ``img`` is a clean frame of the test pattern; ``drawn_width``: the width it was
    drawn at, when it arrives scaled (a lower rung: its bars moved fewer pixels a frame)."""
    n = pattern.read_counter(img)
    speed = 8 if drawn_width is None else 8 * img.shape[1] / drawn_width
    return n is not None and pattern.pattern_error(img, n, hue=hue, speed=speed) < PATTERN_TOLERANCE


def is_slate(img: np.ndarray) -> bool:
    h, w = img.shape[:2]
    diff = np.abs(img.astype(np.int16) - slate_bgr(w, h).astype(np.int16)).mean()
    return bool(diff < 12)


async def wait_for_frame(
    viewer: WhepClient, predicate: Callable[[Received], bool], timeout: float, start: int = 0
) -> Received:
    """The first received frame at index >= start that satisfies ``predicate``."""
    deadline = time.monotonic() + timeout
    i = start
    while True:
        while i < len(viewer.frames):
            if predicate(viewer.frames[i]):
                return viewer.frames[i]
            i += 1
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(
                f"no matching frame in {timeout}s ({len(viewer.frames)} frames seen)"
            )
        await asyncio.wait_for(_next_frame(viewer, i), remaining)


async def _next_frame(viewer: WhepClient, count: int) -> None:
    await viewer.wait_frames(count + 1, timeout=3600)


def fps(frames: list[Received]) -> float:
    if len(frames) < 2:
        return 0.0
    return (len(frames) - 1) / (frames[-1].at - frames[0].at)
