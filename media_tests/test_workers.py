"""Fan-out worker processes (stream/deliver/pool.py): one URL, viewers spread over workers."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator

import pytest

from conftest import make_settings
from jangteo.testkit.clients import WhepClient, WhipClient
from jangteo.testkit.server import RunningServer, running_server
from stream.ingest import pattern
from stream.ingest.synthetic import PatternTrack, ToneTrack

from .helpers import is_pattern

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def origin(redis_url: str) -> AsyncIterator[RunningServer]:
    async with running_server(make_settings(redis_url, workers=2)) as s:
        yield s


async def _viewer(server: RunningServer, bid: str, name: str) -> WhepClient:
    token = await server.token(bid, "viewer", name)
    v = WhepClient(server.base_url, bid, token, keep_images=400)
    await v.play()
    return v


def _counters(v: WhepClient) -> set[int]:
    return {
        n
        for f in v.frames
        if f.image is not None and (n := pattern.read_counter(f.image)) is not None
    }


async def test_viewers_on_two_workers_decode_the_same_frames(origin: RunningServer) -> None:
    pool = origin.ctx.hub.workers
    assert pool is not None and len(pool.links) == 2
    b = await origin.create_broadcast("워커")
    bid = b["id"]
    pub = WhipClient(origin.base_url, bid, b["host_token"])
    await pub.publish(PatternTrack(640, 360, 30), ToneTrack(440))
    await pub.connected()
    v1, v2 = await _viewer(origin, bid, "v1"), await _viewer(origin, bid, "v2")
    try:
        await asyncio.gather(v1.wait_frames(90, 30), v2.wait_frames(90, 30))
        assert [len(link.viewers) for link in pool.links] == [1, 1]
        assert {link.pid for link in pool.links} != {os.getpid()}
        for v in (v1, v2):
            kept = [f.image for f in v.frames if f.image is not None]
            assert sum(is_pattern(img) for img in kept) >= 0.95 * len(kept)
            audio_ok = v.audio_samples > 48000 // 2
            assert audio_ok, "audio reaches viewers through the workers too"
        shared = _counters(v1) & _counters(v2)
        assert len(shared) >= 60, f"only {len(shared)} frames in common"
        media = origin.ctx.hub.get(bid)
        assert media is not None and len(media.viewers) == 2
        # one encoder at the origin, each frame sent once per worker (the top rung, H.264)
        feeds = [f for link in pool.links for f in link.feeds.values()]
        assert sorted(f.codec.value for f in feeds) == ["h264", "h264", "opus", "opus"]
        assert {f.rung for f in feeds} == {"", media.compositor.top}
        # DELETE on the origin's URL reaches the worker
        await v1.aclose()
        assert [len(link.viewers) for link in pool.links] in ([0, 1], [1, 0])
    finally:
        await v2.aclose()
        await pub.aclose()


async def test_a_worker_crash_loses_only_its_viewers(origin: RunningServer) -> None:
    pool = origin.ctx.hub.workers
    assert pool is not None
    b = await origin.create_broadcast("워커 장애")
    bid = b["id"]
    pub = WhipClient(origin.base_url, bid, b["host_token"])
    await pub.publish(PatternTrack(640, 360, 30), ToneTrack(440))
    await pub.connected()
    v1, v2 = await _viewer(origin, bid, "v1"), await _viewer(origin, bid, "v2")
    v3: WhepClient | None = None
    try:
        await asyncio.gather(v1.wait_frames(30, 30), v2.wait_frames(30, 30))
        media = origin.ctx.hub.get(bid)
        assert media is not None
        victim = next(link for link in pool.links if link.viewers)
        (lost_id,) = victim.viewers
        v1_id = (v1.session_url or "").rsplit("/", 1)[1]
        survivor = v2 if lost_id == v1_id else v1
        os.kill(victim.pid, signal.SIGKILL)
        mark = len(survivor.frames)
        await survivor.wait_frames(mark + 60, 15)  # the other worker's viewer carries on
        await asyncio.wait_for(victim.restarted.wait(), 15)
        assert lost_id not in media.viewers
        assert pool.crashes == 1 and len(media.viewers) == 1
        kept = [f.image for f in survivor.frames[mark:] if f.image is not None]
        assert kept and all(is_pattern(img) for img in kept[-10:])
        # and the replacement worker takes new viewers
        v3 = await _viewer(origin, bid, "v3")
        await v3.wait_frames(30, 30)
        assert len(media.viewers) == 2
    finally:
        for v in (v1, v2, v3):
            if v is not None:
                await v.aclose()
        await pub.aclose()
