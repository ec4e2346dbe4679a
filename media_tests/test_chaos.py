"""Chaos during a show: Redis away for 10 s; the publisher flapping.

- Redis is SIGKILLed and comes back 10 s later (same data, AOF): meanwhile HTTP that needs it
  answers 503 problem+json at once, viewers keep decoding, and afterwards chat picks up where it
  was: every acknowledged line once, in order, nothing missing.
- The host's connection drops and comes back 20 times within a minute: the slate each time, the
  picture back each time, and nothing left behind (sessions, tasks, file descriptors).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from conftest import make_settings
from core.redisproc import RedisServer
from jangteo.testkit.clients import Received, WhepClient, WhipClient
from jangteo.testkit.server import RunningServer, bearer, eventually, running_server
from stream.ingest.synthetic import PatternTrack, ToneTrack
from tests.chat_client import ChatClient

from .helpers import fps, is_pattern, is_slate, wait_for_frame

pytestmark = pytest.mark.timeout(240)
OUTAGE_S = 10.0


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    redis = RedisServer(tmp_path / "redis", port=0, fsync="always")
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


@pytest.fixture
async def server(own_redis: RedisServer) -> AsyncIterator[RunningServer]:
    settings = make_settings(own_redis.url, video_width=320, video_height=180)
    async with running_server(settings) as s:
        yield s


def texts(client: ChatClient) -> list[str]:
    return [str(e["text"]) for e in client.of("chat")]


async def test_redis_away_for_ten_seconds(server: RunningServer, own_redis: RedisServer) -> None:
    b = await server.live_broadcast()
    bid, host = b["id"], b["host_token"]
    pub = WhipClient(server.base_url, bid, host)
    await pub.publish(PatternTrack(320, 180, 30), ToneTrack(440))
    viewer_token = await server.token(bid, "viewer", "시청자")
    v = WhepClient(server.base_url, bid, viewer_token, keep_images=30, sample_every=10)
    await v.play()
    listener = await ChatClient.open(server.base_url, bid, host)
    talker = await ChatClient.open(server.base_url, bid, viewer_token)
    sent = [f"전 {i}" for i in range(3)]
    try:
        await wait_for_frame(v, lambda f: f.image is not None and is_pattern(f.image), 15)
        for text in sent:
            await talker.send(type="chat", text=text)
        await listener.wait(lambda c: texts(c) == sent)
        last_id = str(listener.of("chat")[-1]["id"])

        own_redis.kill()
        down_at = time.monotonic()
        frames_at = len(v.frames)
        slowest = 0.0
        while time.monotonic() - down_at < OUTAGE_S:  # the outage lasts this long, whatever
            t0 = time.monotonic()
            r = await server.http.get(f"/api/broadcasts/{bid}")
            slowest = max(slowest, time.monotonic() - t0)
            assert r.status_code == 503, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["status"] == 503 and r.headers["retry-after"]
            order = await server.http.post(
                f"/api/broadcasts/{bid}/orders", json={"product_id": "p1", "qty": 1},
                headers=bearer(viewer_token) | {"Idempotency-Key": f"k{t0}"},
            )  # fmt: skip
            assert order.status_code == 503, order.text
            await asyncio.sleep(0.5)  # a client retrying now and then
        assert slowest < 2.0, f"a request took {slowest:.1f} s with Redis away"
        outage_frames = v.frames[frames_at:]
        assert fps(outage_frames) >= 20, "the picture stalled while Redis was away"
        kept = [f for f in outage_frames if f.image is not None]
        assert kept and all(is_pattern(f.image) for f in kept if f.image is not None)

        own_redis.start()  # same port, same data: the AOF replays
        back_at = time.monotonic()
        while (r := await server.http.get(f"/api/broadcasts/{bid}")).status_code != 200:
            assert time.monotonic() - back_at < 5, f"still {r.status_code} after Redis came back"
            await asyncio.sleep(0.1)  # the app's connections find Redis again
        # chat: the page reconnects with the last id it saw if its socket was cut
        if listener.closed is not None:
            await listener.aclose()
            listener = await ChatClient.open(server.base_url, bid, host, last_id=last_id)
            listener.events[:0] = [{"type": "chat", "text": t, "id": "-"} for t in sent]
        if talker.closed is not None:
            await talker.aclose()
            talker = await ChatClient.open(server.base_url, bid, viewer_token)
        after = [f"후 {i}" for i in range(3)]
        for text in after:
            await talker.send(type="chat", text=text)
        await listener.wait(lambda c: texts(c)[-3:] == after, timeout=20)
        assert texts(listener) == sent + after  # each once, in order, no gap
        assert v.pc.connectionState == "connected"
    finally:
        await listener.aclose()
        await talker.aclose()
        await v.aclose()
        await pub.aclose()


def showing(hue: int) -> Callable[[Received], bool]:
    return lambda f: f.image is not None and is_pattern(f.image, hue=hue)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_the_publisher_flapping_twenty_times_in_a_minute(server: RunningServer) -> None:
    b = await server.live_broadcast()
    bid, host = b["id"], b["host_token"]
    token = await server.token(bid, "viewer", "v")
    v = WhepClient(server.base_url, bid, token, keep_images=10_000, sample_every=2)
    await v.play()
    media = server.ctx.hub.get(bid)
    assert media is not None
    started = time.monotonic()
    baseline: tuple[int, int] | None = None
    try:
        for round_ in range(20):
            hue = (round_ * 40) % 360
            pub = WhipClient(server.base_url, bid, host)
            await pub.publish(PatternTrack(320, 180, 30, hue=hue), ToneTrack(440))
            await wait_for_frame(v, showing(hue), 10, start=len(v.frames))
            if baseline is None:
                baseline = (len(asyncio.all_tasks()), _open_fds())
            # the phone's link goes: every other time with a DELETE, else the peer just vanishes
            await pub.aclose(delete=round_ % 2 == 0)
            mark = len(v.frames)
            await wait_for_frame(v, lambda f: f.image is not None and is_slate(f.image), 10,
                                 start=mark)  # fmt: skip
            await eventually(lambda: not media.publishers, "the dropped session gone", 10)
        assert time.monotonic() - started < 60, "twenty rounds took over a minute"
        assert server.ctx.hub.get(bid) is media and v.pc.connectionState == "connected"
        assert baseline is not None
        await eventually(
            lambda: len(asyncio.all_tasks()) <= baseline[0] + 5, "tasks back to where they were"
        )
        assert _open_fds() <= baseline[1] + 10, "file descriptors left open"
    finally:
        await v.aclose()
