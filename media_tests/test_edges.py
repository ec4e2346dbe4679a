"""Two nodes on one Redis: a broadcast composed on its origin, watched through an edge.

Both nodes run in this process (their own apps, media hubs and relay listeners); the publisher
and the viewers are real aiortc peers. The deployment across three network namespaces, with a
Redis Cluster and ``kill -9``, is media_tests/test_deployment.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from conftest import make_settings
from core.metrics import RELAY_REFUSED
from core.redisproc import free_port
from jangteo.testkit.clients import WhepClient, WhipClient
from jangteo.testkit.server import RunningServer, eventually, running_server
from stream.deliver.messages import Want, encode
from stream.deliver.record.recorder import read_meta, recording_dir
from stream.deliver.relay import RelayRefused, greet_origin
from stream.edge import EdgeMedia
from stream.encode.encoders import Codec
from stream.ingest import pattern
from stream.ingest.synthetic import PatternTrack, ToneTrack

from .helpers import is_pattern, is_slate, wait_for_frame

pytestmark = pytest.mark.timeout(120)


@contextlib.asynccontextmanager
async def node(
    redis_url: str, name: str, workers: int = 0, **kw: object
) -> AsyncIterator[RunningServer]:
    settings = make_settings(redis_url, node_id=name, relay_port=free_port(), workers=workers,
                             video_width=320, video_height=180, **kw)  # fmt: skip
    async with running_server(settings) as s:
        yield s


@pytest.fixture
async def two(redis_url: str) -> AsyncIterator[tuple[RunningServer, RunningServer]]:
    async with node(redis_url, "node-a") as a, node(redis_url, "node-b") as b:
        yield a, b


async def go_live(origin: RunningServer) -> tuple[str, WhipClient]:
    """A broadcast on air from ``origin`` (the stamped pattern and a tone)."""
    doc = await origin.create_broadcast()
    pub = WhipClient(origin.base_url, doc["id"], doc["host_token"])
    await pub.publish(PatternTrack(320, 180, 30), ToneTrack(440))
    await pub.connected()
    return doc["id"], pub


async def viewer(server: RunningServer, bid: str, name: str, keep: int = 60) -> WhepClient:
    token = await server.token(bid, "viewer", name)
    v = WhepClient(server.base_url, bid, token, keep_images=keep, sample_every=3)
    await v.play()
    return v


async def test_viewers_on_an_edge_decode_the_origins_picture_pulled_once(
    two: tuple[RunningServer, RunningServer],
) -> None:
    a, b = two
    bid, pub = await go_live(a)
    assert a.ctx.hub.relay is not None
    viewers = [await viewer(b, bid, f"v{i}") for i in range(3)]
    try:
        for v in viewers:
            await wait_for_frame(v, lambda f: f.image is not None and is_pattern(f.image), 15)
        assert bid not in b.ctx.hub.broadcasts  # nothing composed on the edge
        edge = b.ctx.hub.edges[bid]
        assert edge.audience() == 3 and edge.pulls == 1
        # one link from B, one feed per stream the viewers take: audio and the top rung
        (link,) = a.ctx.hub.relay.links
        assert link.node == "node-b"
        assert sorted((c.value, r) for _, c, r in link.feeds) == [("h264", "180p"), ("opus", "")]
        # the bytes A sends B are one copy of those streams, whatever the viewer count
        encoded = a.ctx.hub.broadcasts[bid].compositor
        top, audio = encoded.bus(Codec.H264, "180p"), encoded.audio_bus
        f0, s0 = top.frames + audio.frames, link.bytes_out
        await asyncio.gather(*(v.wait_frames(len(v.frames) + 60, 10) for v in viewers))
        frames, sent = top.frames + audio.frames - f0, link.bytes_out - s0
        assert frames > 100
        per_frame = sent / frames
        assert per_frame < 2_000, f"{per_frame:.0f} bytes a frame: more than one copy"
        # the edge serves the same pictures: counters run on for every viewer
        for v in viewers:
            kept = [f.image for f in v.frames[-30:] if f.image is not None]
            assert len({pattern.read_counter(i) for i in kept} - {None}) >= 5
    finally:
        for v in viewers:
            await v.aclose()
        await pub.aclose()
    # the last viewer gone: the edge drops its pull (after its idle time)
    await eventually(lambda: bid not in b.ctx.hub.edges, "the idle edge closing", 20)
    await eventually(lambda: not a.ctx.hub.relay.links if a.ctx.hub.relay else False, "unlink")


async def test_the_edge_follows_the_publisher_to_its_own_node(
    two: tuple[RunningServer, RunningServer],
) -> None:
    """The publisher drops from A and reconnects through B: B becomes the origin, its viewers
    (same peer connections) see B's slate, then the picture again, fed locally."""
    a, b = two
    bid, pub = await go_live(a)
    v = await viewer(b, bid, "v", keep=400)
    again: WhipClient | None = None
    try:
        await wait_for_frame(v, lambda f: f.image is not None and is_pattern(f.image), 15)
        await pub.aclose()
        mark = len(v.frames)
        again = WhipClient(b.base_url, bid, pub.token)
        await again.publish(PatternTrack(320, 180, 30, hue=60), ToneTrack(440))
        edge = b.ctx.hub.edges[bid]
        await eventually(lambda: edge.route is not None and edge.route.local is not None,
                         "the edge fed by B's own media", 20)  # fmt: skip
        back = await wait_for_frame(
            v, lambda f: f.image is not None and is_pattern(f.image, hue=60), 20, start=mark
        )
        seen = v.frames[mark : v.frames.index(back)]
        assert any(f.image is not None and is_slate(f.image) for f in seen), "no slate between"
        assert v.pc.connectionState == "connected"
    finally:
        await v.aclose()
        if again is not None:
            await again.aclose()


async def test_a_relay_without_the_secret_gets_nothing(
    two: tuple[RunningServer, RunningServer],
) -> None:
    a, _ = two
    assert a.ctx.hub.relay is not None
    port = a.ctx.hub.relay.port
    # a client that does not know the secret: the origin's proof does not check out either
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        with pytest.raises(RelayRefused):
            await greet_origin(reader, writer, "another-secret", "intruder")
    finally:
        writer.close()
    # one that skips the greeting and asks at once: cut, nothing sent
    before = RELAY_REFUSED.value()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(encode(Want("any", Codec.OPUS, "")))
    assert await reader.read() == b""
    writer.close()
    assert RELAY_REFUSED.value() >= before + 1
    assert not a.ctx.hub.relay.links


async def test_an_edge_serves_its_viewers_once_the_show_goes_on_air(
    two: tuple[RunningServer, RunningServer],
) -> None:
    """A viewer on B while nothing publishes yet: the edge waits for an origin and pulls it as
    soon as the host goes live on A."""
    a, b = two
    doc = await a.live_broadcast()
    bid = doc["id"]
    v = await viewer(b, bid, "early")
    pub = WhipClient(a.base_url, bid, doc["host_token"])
    try:
        edge = b.ctx.hub.edges[bid]
        assert isinstance(edge, EdgeMedia) and edge.route is None
        await pub.publish(PatternTrack(320, 180, 30), ToneTrack(440))
        await wait_for_frame(v, lambda f: f.image is not None and is_pattern(f.image), 20)
        assert edge.route is not None and edge.route.node == "node-a"
    finally:
        await v.aclose()
        await pub.aclose()


async def test_hls_asked_of_an_edge_is_sent_to_the_origin(
    two: tuple[RunningServer, RunningServer],
) -> None:
    a, b = two
    doc = await a.create_broadcast()
    bid = doc["id"]
    pub = WhipClient(a.base_url, bid, doc["host_token"])
    try:
        await pub.publish(PatternTrack(320, 180, 30), ToneTrack(440))
        await pub.connected()
        r = await b.http.get(f"/hls/{bid}/index.m3u8?x=1")
        assert r.status_code == 307, r.text
        assert r.headers["location"] == f"{a.base_url}/hls/{bid}/index.m3u8?x=1"
        assert bid not in b.ctx.hub.broadcasts  # nothing composed on B for it
    finally:
        await pub.aclose()


async def test_an_edge_serves_through_its_own_workers(redis_url: str) -> None:
    async with node(redis_url, "node-a") as a, node(redis_url, "node-w", workers=1) as b:
        bid, pub = await go_live(a)
        v = await viewer(b, bid, "w")
        try:
            await wait_for_frame(v, lambda f: f.image is not None and is_pattern(f.image), 20)
            edge = b.ctx.hub.edges[bid]
            (remote,) = edge.viewers.values()
            assert type(remote).__name__ == "RemoteViewer"  # served by B's worker process
        finally:
            await v.aclose()
            await pub.aclose()


async def test_viewers_of_the_old_origin_follow_the_publisher_to_another_node(
    two: tuple[RunningServer, RunningServer],
) -> None:
    """The publisher drops from A and reconnects through B. A's own viewers (same peer
    connections) see B's picture and hear its sound; A stops composing, its outputs (HLS, RTMP,
    recording) left to B; a viewer arriving at A now is served by A's edge; the old media closes
    once its last viewer leaves."""
    a, b = two
    bid, pub = await go_live(a)
    old = await viewer(a, bid, "old", keep=400)
    again = WhipClient(b.base_url, bid, pub.token)
    new: WhepClient | None = None
    try:
        await wait_for_frame(old, lambda f: f.image is not None and is_pattern(f.image), 15)
        media = a.ctx.hub.broadcasts[bid]
        await pub.aclose()
        mark = len(old.frames)
        await again.publish(PatternTrack(320, 180, 30, hue=60), ToneTrack(440))
        await wait_for_frame(
            old, lambda f: f.image is not None and is_pattern(f.image, hue=60), 20, start=mark
        )
        assert old.pc.connectionState == "connected"
        heard = old.audio_samples
        await old.wait_frames(len(old.frames) + 30, 10)
        assert old.audio_samples > heard + 48000 // 2  # B's sound too
        # A composes nothing for it any more and its outputs are B's
        assert bid not in a.ctx.hub.broadcasts and a.ctx.hub.retired[bid] is media
        composed = media.compositor.frames_composed
        await old.wait_frames(len(old.frames) + 30, 10)
        assert media.compositor.frames_composed == composed
        assert media.hls_running is None and media.restreamer is None
        r = await a.http.get(f"/hls/{bid}/index.m3u8")
        assert r.status_code == 307 and r.headers["location"].startswith(b.base_url)
        # one pull from B feeds A's old viewers, and the viewers that come to A now
        edge = a.ctx.hub.edges[bid]
        assert edge.route is not None and edge.route.node == "node-b"
        new = await viewer(a, bid, "new")
        await wait_for_frame(new, lambda f: f.image is not None and is_pattern(f.image, hue=60), 15)
        assert edge.audience() == 1 and a.ctx.hub.audience(bid) == 2
        assert edge.pulls == 1
    finally:
        await old.aclose()
        if new is not None:
            await new.aclose()
        await again.aclose()
    await eventually(lambda: bid not in a.ctx.hub.retired, "the old media closing", 10)
    assert media.compositor._closed


async def test_every_node_counts_the_viewers_of_every_node(
    two: tuple[RunningServer, RunningServer],
) -> None:
    """One viewer on the origin, two on the edge, none with a chat socket: both nodes say three
    are watching, and one once the edge's viewers leave."""
    a, b = two
    bid, pub = await go_live(a)
    here = await viewer(a, bid, "here")
    there = [await viewer(b, bid, f"there{i}") for i in range(2)]

    async def counted(n: int) -> None:
        for server in (a, b):
            deadline = asyncio.get_running_loop().time() + 10
            while (got := (await server.http.get(f"/api/broadcasts/{bid}")).json()["viewers"]) != n:
                assert asyncio.get_running_loop().time() < deadline, f"{got} viewers, not {n}"
                await asyncio.sleep(0.2)

    try:
        await counted(3)
        for v in there:
            await v.aclose()
        await counted(1)
    finally:
        for v in (here, *there):
            await v.aclose()
        await pub.aclose()


async def test_the_end_asked_of_another_node_ends_the_origins_media(
    redis_url: str, tmp_path: Path
) -> None:
    """The host ends the show through B (the load balancer's choice); A, the origin, closes the
    publisher and the viewers there and finishes its recording."""
    async with (
        node(redis_url, "node-a", record=True, data_dir=tmp_path) as a,
        node(redis_url, "node-b") as b,
    ):
        bid, pub = await go_live(a)
        v = await viewer(a, bid, "v")
        try:
            await wait_for_frame(v, lambda f: f.image is not None and is_pattern(f.image), 15)
            r = await b.http.post(f"/api/broadcasts/{bid}/end", headers=b.admin())
            assert r.status_code == 200, r.text
            await eventually(lambda: bid not in a.ctx.hub.broadcasts, "A's media ending", 10)
            await eventually(lambda: pub.pc.connectionState in ("closed", "failed"), "cut", 10)
            root = recording_dir(tmp_path, bid)

            def finished() -> bool:  # A's end closes the recorder first, then finishes it
                done = read_meta(root)
                return bid not in a.ctx.hub.finishing and bool(done and done.get("complete"))

            await eventually(finished, "the recording finished", 30)
            meta = read_meta(root)
            assert meta is not None and meta["complete"] and meta["segments"]
        finally:
            await v.aclose()
            await pub.aclose()
