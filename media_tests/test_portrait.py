"""A portrait broadcast (a phone held upright): composed at 720x1280, its rungs turned too, and
a landscape camera in it cut to cover the picture — not letterboxed, not squeezed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest

from conftest import make_settings
from jangteo.testkit.clients import WhepClient, WhipClient
from jangteo.testkit.server import RunningServer, running_server
from stream.ingest.synthetic import PatternTrack, ToneTrack

pytestmark = pytest.mark.timeout(120)

SIZES = {"720p": (720, 1280), "360p": (360, 640), "180p": (180, 320)}


@pytest.fixture
async def hd(redis_url: str) -> AsyncIterator[RunningServer]:
    settings = make_settings(redis_url, video_width=1280, video_height=720,
                             video_bitrate=2_500_000)  # fmt: skip
    async with running_server(settings) as s:
        yield s


def bar_edges(row: np.ndarray) -> list[int]:
    """Where the colour changes along a row of a decoded picture (BGR)."""
    jumps = np.abs(np.diff(row.astype(np.int16), axis=0)).max(axis=1)
    edges: list[int] = []
    for x in np.flatnonzero(jumps > 60):
        if not edges or x - edges[-1] > 6:  # one edge, however soft the codec made it
            edges.append(int(x))
    return edges


async def test_a_portrait_show_with_a_landscape_camera(hd: RunningServer) -> None:
    r = await hd.http.post("/api/broadcasts", headers=hd.admin(),
                           json={"title": "세로 방송", "orientation": "portrait"})  # fmt: skip
    assert r.status_code == 201, r.text
    b = r.json()
    assert b["orientation"] == "portrait"
    doc = (await hd.http.get(f"/api/broadcasts/{b['id']}")).json()
    assert doc["orientation"] == "portrait"
    assert [(x["name"], x["width"], x["height"]) for x in doc["renditions"]] == [
        (name, w, h) for name, (w, h) in SIZES.items()
    ]
    pub = WhipClient(hd.base_url, b["id"], b["host_token"])
    await pub.publish(PatternTrack(1280, 720, 30), ToneTrack(440))  # a laptop's camera
    viewers: dict[str, WhepClient] = {}
    try:
        await pub.connected()
        token = await hd.token(b["id"], "viewer", "세로 시청자")
        for name in SIZES:
            v = WhepClient(hd.base_url, b["id"], token, keep_images=20, sample_every=5)
            await v.play(video_codec="h264", rendition=name)
            viewers[name] = v
        for v in viewers.values():
            await v.wait_frames(20, timeout=30)
        for name, v in viewers.items():
            assert {(f.width, f.height) for f in v.frames[5:20]} == {SIZES[name]}, name
        # the top rung's picture: the camera's middle, at the camera's own proportions
        frame = next(f for f in reversed(viewers["720p"].frames[:20]) if f.image is not None)
        img = frame.image
        assert img is not None
        rows = [bar_edges(img[y]) for y in (400, 640, 880)]
        # the camera's bars are 160 px wide; covering 1280 high scales them by 1280/720
        for edges in rows:
            gaps = np.diff(edges)
            assert len(gaps) >= 1 and all(270 <= g <= 300 for g in gaps), edges
        # no letterbox bars: the top and bottom rows are the picture, not black
        assert img[200].mean() > 60 and img[1270].mean() > 60  # (below the counter band)
    finally:
        for v in viewers.values():
            await v.aclose()
        await pub.aclose()
