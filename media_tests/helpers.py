"""Helpers for media tests: wait on decoded frames, classify pictures."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pytest

from jangteo.testkit.clients import Received, WhepClient
from stream.compose.slate import slate_bgr
from stream.ingest import pattern

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext

# Debian's Chromium and how the browser tests start it (media_tests/conftest.py)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--allow-loopback-in-peer-connection",
]
# the browser tests' mark: skipped on a machine without that Chromium
NEEDS_CHROMIUM = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason=f"no Chromium at {CHROMIUM}"
)
# makes a browser context (options as Playwright's new_context takes them): the ``contexts``
# fixture
Contexts = Callable[..., Awaitable["BrowserContext"]]

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


def runs_on(pictures: Sequence[tuple[float, int | None]]) -> None:
    """Stamped pictures, as a player got them ((time in seconds, counter read or None)), in order
    and none lost.

    Lost is judged on the stream's timestamps and the counters read against them. A stream that
    dropped frames skips ahead (a part, a GOP): a gap of many frame periods in its timestamps, or
    counters running ahead of them. A loaded compositor passes over a tick now and then (a gap of
    2-3 periods) and shows a late camera frame again, then the newest (steps of 0, 0, 3): the
    counters fall behind the clock for a moment and catch up, never passing it. The clock is
    set by the pictures of the first second, the most advanced of them (the first pictures a
    player gets may be late camera frames of a compositor still settling, behind the clock).
    A picture whose band a loaded encoder blurred past reading says nothing either way; most
    must read."""
    times = [t for t, _ in pictures]
    period = statistics.median(b - a for a, b in itertools.pairwise(times))
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(times) if b - a > 6 * period]
    assert not gaps, f"the stream skipped ahead: {gaps}"
    read = [(t, n) for t, n in pictures if n is not None]
    assert len(read) >= 0.9 * len(pictures), f"{len(read)} of {len(pictures)} pictures read"
    steps = [n1 - n0 for (_, n0), (_, n1) in itertools.pairwise(read)]
    assert all(s >= 0 for s in steps), f"out of order: {steps}"
    (t0, _), *_ = read
    offsets = [n - round((t - t0) / period) for t, n in read]  # counter minus frames of clock
    settled = max(o for (t, _), o in zip(read, offsets, strict=True) if t - t0 <= 1.0)
    ahead = max(offsets) - settled
    assert ahead <= 3, f"counters ahead of the clock (frames lost): {ahead}, {steps}"
    counters = [n for _, n in read]
    assert len(counters) >= 0.9 * (counters[-1] - counters[0] + 1), "the picture did not run on"
