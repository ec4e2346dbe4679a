"""Per-viewer rung switching on a real shaped link: the server in one network namespace, the
viewers in another, the server's egress to one viewer capped with an HTB class (jangteo/testkit/
netns.py, shaped.py). The capped viewer moves down within 5 s and plays in real time there
while an uncapped one stays on the top rung; lifting the cap brings it back up within 20 s."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conftest import ICE_ADDRESS
from jangteo.testkit import netns, shaped

pytestmark = [pytest.mark.netns, pytest.mark.timeout(180)]


@pytest.fixture
async def split(tmp_path: Path) -> AsyncIterator[netns.SplitNet]:
    why_not = netns.available()
    if why_not:
        pytest.skip(f"a shaped link {why_not}")
    async with shaped.shaped_server(tmp_path, restore_addresses=[ICE_ADDRESS]) as net:
        yield net


async def test_a_capped_viewer_moves_down_and_back_up(split: netns.SplitNet) -> None:
    f = await shaped.capped_viewer(split, cap_kbit=700)
    assert f["top_before"], f
    assert f["down_s"] <= 5, f
    # on the low rung: only low-rung pictures, clean, in real time
    assert f["capped_widths"] == [shaped.LOW_WIDTH], f
    assert f["capped_fps"] >= 25 and f["capped_clean"] >= 0.9, f
    # the uncapped viewer never left the top rung and kept its rate
    assert f["free_widths"] == [shaped.TOP_WIDTH] and f["free_fps"] >= 25, f
    assert f["up_s"] <= 20, f
