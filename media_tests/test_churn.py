"""Viewers joining and leaving in waves (the short version of ``jangteo bench churn``): the
server gives back what they took -- memory and file descriptors within 10 % of the start, no
task left behind, every session reaped."""

from __future__ import annotations

import pytest

from jangteo.bench.churn import churn

pytestmark = pytest.mark.timeout(240)


async def test_waves_of_viewers_leave_nothing_behind() -> None:
    result = await churn(viewers=90, waves=3, wave_s=4.0)
    assert result["connected"] >= 0.9 * 90, result["samples"]
    assert result["probe_frames"] > 0
    assert all(s["sessions_left"] <= 1 for s in result["samples"]), result["samples"]
    assert result["rss_end_over_start"] <= 1.10, result["samples"]
    assert result["fds_end_over_start"] <= 1.10, result["samples"]
    assert result["tasks_end_minus_start"] <= 2, result["samples"]
