"""Fan-out worker processes (stream/deliver/pool.py): one URL, viewers spread over workers."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator

import pytest

from conftest import make_settings
from jangteo.testkit.clients import WhepClient, WhipClient
from jangteo.testkit.server import RunningServer, eventually, running_server
from stream.deliver.pool import WorkerLink, WorkerPool
from stream.encode.encoders import Codec
from stream.ingest import pattern
from stream.ingest.synthetic import PatternTrack, ToneTrack

from .helpers import is_pattern

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def origin(redis_url: str) -> AsyncIterator[RunningServer]:
    async with running_server(make_settings(redis_url, workers=2)) as s:
        yield s


async def _viewer(
    server: RunningServer, bid: str, name: str, rendition: str | None = None
) -> WhepClient:
    token = await server.token(bid, "viewer", name)
    v = WhepClient(server.base_url, bid, token, keep_images=400)
    await v.play(rendition=rendition)
    return v


def _link_of(pool: WorkerPool, v: WhepClient) -> WorkerLink:
    """The worker serving viewer ``v`` (its session id is the last part of its URL)."""
    sid = (v.session_url or "").rsplit("/", 1)[1]
    return next(link for link in pool.links if sid in link.viewers)


def _fed(pool: WorkerPool, rung: str) -> list[tuple[int, tuple[str, Codec, str]]]:
    """The (worker index, feed key) of every feed of ``rung`` the origin sends its workers."""
    return [(link.index, key) for link in pool.links for key in link.feeds if key[2] == rung]


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


async def test_a_pinned_rendition_reaches_its_viewer_through_a_worker(
    origin: RunningServer,
) -> None:
    """``?rendition=180p`` through a worker: the worker asks the origin for that rung (Want)
    while its viewer is there and stops (``want: false``) when it leaves, though it still serves
    another viewer of the broadcast; the viewers beside it stay on the top rung."""
    pool = origin.ctx.hub.workers
    assert pool is not None
    b = await origin.create_broadcast("워커 사다리")
    bid = b["id"]
    pub = WhipClient(origin.base_url, bid, b["host_token"])
    await pub.publish(PatternTrack(640, 360, 30), ToneTrack(440))
    await pub.connected()
    full = [await _viewer(origin, bid, "full1"), await _viewer(origin, bid, "full2")]
    saver: WhepClient | None = None
    try:
        await asyncio.gather(*(v.wait_frames(30, 30) for v in full))
        assert [len(link.viewers) for link in pool.links] == [1, 1]
        media = origin.ctx.hub.get(bid)
        assert media is not None and media.compositor.ladder[1].name == "180p"
        assert _fed(pool, "180p") == []  # nobody takes it: not encoded, not sent
        saver = await _viewer(origin, bid, "saver", rendition="180p")  # data saver
        await saver.wait_frames(90, 30)
        assert {(f.width, f.height) for f in saver.frames} == {(320, 180)}
        kept = [f.image for f in saver.frames if f.image is not None]
        clean = sum(is_pattern(img, drawn_width=640) for img in kept)
        assert clean >= 0.95 * len(kept), f"{clean}/{len(kept)} frames decode to the pattern"
        # the 180p rung goes to the saver's worker only, in the codec it settled on
        link = _link_of(pool, saver)
        assert len(link.viewers) == 2  # it shares its worker with a viewer on the top rung
        codec = link.viewers[(saver.session_url or "").rsplit("/", 1)[1]].video_codec
        assert codec is not None
        assert _fed(pool, "180p") == [(link.index, (bid, codec, "180p"))]
        assert (codec, "180p") in media.compositor.encoding()
        marks = [len(v.frames) for v in full]
        await asyncio.gather(*(v.wait_frames(m + 30, 15) for v, m in zip(full, marks, strict=True)))
        for v in full:  # untouched by the saver
            assert {(f.width, f.height) for f in v.frames} == {(640, 360)}
        await saver.aclose()
        await eventually(lambda: _fed(pool, "180p") == [], "no worker fed 180p")
        assert len(link.viewers) == 1 and (bid, codec, media.compositor.top) in link.feeds
        await eventually(
            lambda: all(rung != "180p" for _, rung in media.compositor.encoding()),
            "the 180p encoder stops",
        )
        marks = [len(v.frames) for v in full]  # the others carry on
        await asyncio.gather(*(v.wait_frames(m + 30, 15) for v, m in zip(full, marks, strict=True)))
    finally:
        if saver is not None:
            await saver.aclose()
        for v in full:
            await v.aclose()
        await pub.aclose()
