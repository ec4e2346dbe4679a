"""The broadcast spine end to end: real aiortc peers over loopback, a real server and Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import numpy as np
import pytest

from conftest import make_settings
from core import metrics
from core.origin import origin_key
from core.tokens import Role
from jangteo.testkit.clients import SignallingError, WhepClient, WhipClient
from jangteo.testkit.server import RunningServer, running_server
from stream.deliver.fastfanout import FastFanout
from stream.encode.bus import Subscription
from stream.encode.encoders import Codec
from stream.ingest import pattern
from stream.ingest.synthetic import PatternTrack, ToneTrack

from .helpers import fps, is_pattern, is_slate, wait_for_frame

pytestmark = pytest.mark.timeout(90)


async def _go_live(server: RunningServer, hue: int = 0) -> tuple[str, str, WhipClient]:
    b = await server.create_broadcast()
    pub = WhipClient(server.base_url, b["id"], b["host_token"])
    await pub.publish(PatternTrack(640, 360, 30, hue), ToneTrack(440))
    await pub.connected()
    return b["id"], b["host_token"], pub


async def _viewer(
    server: RunningServer, bid: str, name: str, keep: int = 40, sample_every: int = 1
) -> WhepClient:
    token = await server.token(bid, "viewer", name)
    v = WhepClient(server.base_url, bid, token, keep_images=keep, sample_every=sample_every)
    await v.play()
    return v


@pytest.fixture(params=["fast", "aiortc"])
async def small_server(
    redis_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[RunningServer]:
    """320x180 output: the publisher, the server and five decoding viewers share one process
    (and its GIL) here, so the pictures are kept small enough to leave headroom for 30 fps.
    Both fan-out paths: ours (packetize once) and aiortc's senders."""
    settings = make_settings(redis_url, video_width=320, video_height=180, fanout=request.param)
    async with running_server(settings) as s:
        yield s


async def test_five_viewers_decode_the_pattern_and_hear_the_tone(
    small_server: RunningServer,
) -> None:
    server = small_server
    b = await server.create_broadcast()
    bid = b["id"]
    pub = WhipClient(server.base_url, bid, b["host_token"])
    await pub.publish(PatternTrack(320, 180, 30), ToneTrack(440))
    await pub.connected()
    viewers = [await _viewer(server, bid, f"v{i}", keep=20, sample_every=4) for i in range(5)]
    try:
        await asyncio.gather(*(v.wait_frames(120, timeout=30) for v in viewers))
        for v in viewers:
            first = v.frames[0]
            assert first.image is not None
            assert is_pattern(first.image), "first decoded frame is not a clean picture"
            kept = [f for f in v.frames if f.image is not None]
            good = sum(is_pattern(f.image) for f in kept if f.image is not None)
            assert good >= 0.95 * len(kept), f"{good}/{len(kept)} frames match the pattern"
            # counters advance: the pictures move
            counters = [pattern.read_counter(f.image) for f in kept[-20:] if f.image is not None]
            assert len({c for c in counters if c is not None}) >= 15
            assert fps(v.frames[-90:]) >= 25
            audio = np.concatenate(v.audio)
            assert audio.size > 48000  # > 0.5 s of stereo
            assert abs(pattern.dominant_frequency(audio) - 440) < 10
        media = server.ctx.hub.get(bid)
        assert media is not None
        # encode once: one encoder (H.264, the top rung) for all five viewers
        assert media.compositor.encoding() == [(Codec.H264, media.compositor.top)]
        bus = media.compositor.bus(Codec.H264)
        if server.settings.fanout == "fast":  # one subscriber, the fan-out, sending to all five
            fanout = media.compositor.sinks[Codec.H264]
            assert isinstance(fanout, FastFanout) and len(fanout.viewers) == 5
            assert bus.subscribers == {fanout.taps[media.compositor.top]}
        else:
            assert len(bus.subscribers) == 5
    finally:
        await asyncio.gather(*(v.aclose() for v in viewers))
        await pub.aclose()


async def test_h264_and_vp8_viewers_share_one_encoder_each(server: RunningServer) -> None:
    bid, _, pub = await _go_live(server)
    token = await server.token(bid, "viewer", "h")
    h264 = WhepClient(server.base_url, bid, token, keep_images=10)
    await h264.play()  # H.264 is what the server answers when the offer has it
    vp8 = WhepClient(server.base_url, bid, await server.token(bid, "viewer", "v"), keep_images=40)
    await vp8.play(video_codec="vp8")  # a viewer that cannot take H.264
    try:
        await asyncio.gather(h264.wait_frames(30, 20), vp8.wait_frames(30, 20))
        for v in (h264, vp8):
            assert v.frames[0].image is not None and is_pattern(v.frames[0].image)
        media = server.ctx.hub.get(bid)
        assert media is not None
        assert sorted(c for c, _ in media.compositor.encoding()) == ["h264", "vp8"]
    finally:
        await h264.aclose()
        await vp8.aclose()
        await pub.aclose()


async def test_late_joiner_gets_a_clean_first_frame_within_a_second(
    server: RunningServer,
) -> None:
    bid, _, pub = await _go_live(server)
    early = await _viewer(server, bid, "early")
    try:
        await early.wait_frames(60, 20)  # the stream is well past its first keyframe
        late = await _viewer(server, bid, "late", keep=5)
        try:
            await late.wait_frames(1, 10)
            first = late.frames[0]
            assert first.image is not None and is_pattern(first.image)
            assert late.connected_at is not None
            assert first.at - late.connected_at < 1.0
        finally:
            await late.aclose()
    finally:
        await early.aclose()
        await pub.aclose()


async def test_host_drop_shows_the_slate_and_republish_resumes(server: RunningServer) -> None:
    bid, host_token, pub = await _go_live(server)
    viewer = await _viewer(server, bid, "v", keep=400)
    media = server.ctx.hub.get(bid)
    assert media is not None
    try:
        await wait_for_frame(viewer, lambda f: f.image is not None and is_pattern(f.image), 15)
        (viewer_id,) = media.viewers
        # the host's network drops: no DELETE, the peer just goes away
        await pub.aclose(delete=False)
        mark = len(viewer.frames)
        slate = await wait_for_frame(
            viewer, lambda f: f.image is not None and is_slate(f.image), 10, start=mark
        )
        # the slate keeps coming at the output rate
        at = viewer.frames.index(slate)
        await viewer.wait_frames(at + 45, 5)
        assert fps(viewer.frames[at : at + 45]) >= 25
        # the same host republishes; viewers see video again within 2 s, same session
        again = WhipClient(server.base_url, bid, host_token)
        t0 = time.time()
        await again.publish(PatternTrack(640, 360, 30), ToneTrack(440))
        back = await wait_for_frame(
            viewer, lambda f: f.image is not None and is_pattern(f.image), 5, start=at + 45
        )
        assert back.at - t0 < 2.0
        assert list(media.viewers) == [viewer_id]
        assert viewer.pc.connectionState == "connected"
        await again.aclose()
    finally:
        await viewer.aclose()


async def test_same_host_reconnecting_replaces_its_old_session(server: RunningServer) -> None:
    bid, host_token, pub = await _go_live(server)
    media = server.ctx.hub.get(bid)
    assert media is not None
    (old_id,) = media.publishers
    again = WhipClient(server.base_url, bid, host_token)
    try:
        await again.publish(PatternTrack(640, 360, 30), ToneTrack(440))
        assert again.session_url is not None
        new_id = again.session_url.rsplit("/", 1)[1]
        assert list(media.publishers) == [new_id] and new_id != old_id
    finally:
        await again.aclose()
        await pub.aclose(delete=False)


async def test_signalling_errors_are_problem_json(server: RunningServer) -> None:
    bid, _, pub = await _go_live(server)
    try:
        viewer_token = await server.token(bid, "viewer", "v")
        other_host = await server.token(bid, "host", "impostor")  # a different host identity

        async def whip_status(
            token: str | None, target: str = bid
        ) -> tuple[int, dict[str, object]]:
            c = WhipClient(server.base_url, target, token)
            try:
                await c.publish(PatternTrack(320, 180, 30))
            except SignallingError as exc:
                assert exc.content_type.startswith("application/problem+json")
                import json

                return exc.status, json.loads(exc.body)
            finally:
                await c.aclose(delete=False)
            return 201, {}

        assert (await whip_status(None))[0] == 401
        assert (await whip_status("garbage.token"))[0] == 401
        status, doc = await whip_status(viewer_token)
        assert status == 403 and doc["code"] == "wrong_role"
        assert (await whip_status(viewer_token, target="bnope"))[0] == 403  # wrong broadcast
        admin = server.admin()
        r = await server.http.post(
            "/whip/bnope", content="v=0\r\n", headers={**admin, "Content-Type": "application/sdp"}
        )
        assert r.status_code in (401, 404)
        status, doc = await whip_status(other_host)
        assert status == 409 and doc["code"] == "host_live"
        r = await server.http.post(
            f"/whep/{bid}",
            content="v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video",
            headers={"Authorization": f"Bearer {viewer_token}", "Content-Type": "application/sdp"},
        )
        assert r.status_code == 400
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "bad_sdp"
        # the server is still serving
        v = await _viewer(server, bid, "after-errors", keep=2)
        await v.wait_frames(5, 15)
        await v.aclose()
    finally:
        await pub.aclose()


async def test_unknown_broadcast_is_404(server: RunningServer) -> None:
    b = await server.create_broadcast()
    # a valid token whose broadcast was never created (same secret): sign one directly
    token, _ = server.ctx.signer.issue("bmissing", Role.HOST, "x")
    c = WhipClient(server.base_url, "bmissing", token)
    with pytest.raises(SignallingError) as err:
        await c.publish(PatternTrack(320, 180, 30))
    await c.aclose(delete=False)
    assert err.value.status == 404
    assert err.value.content_type.startswith("application/problem+json")
    assert b["status"] == "scheduled"


async def test_viewer_pli_reaches_the_shared_encoder_at_most_every_500ms(
    server: RunningServer,
) -> None:
    bid, _, pub = await _go_live(server)
    viewer = await _viewer(server, bid, "pli", keep=2)
    media = server.ctx.hub.get(bid)
    assert media is not None
    try:
        await viewer.wait_frames(10, 15)
        (server_viewer,) = media.viewers.values()
        (sender,) = [s for s in server_viewer.senders() if s.kind == "video"]
        (receiver,) = [t.receiver for t in viewer.pc.getTransceivers() if t.kind == "video"]
        bus = media.compositor.bus(Codec.H264)
        limiter = bus.limiter
        assert limiter is not None
        forced_before = metrics.KEYFRAMES_FORCED.value()
        requests_before = limiter.requests
        # 40 PLIs, one per composed frame (~1.3 s); a tap on the bus paces us
        tap = Subscription(bus, maxlen=1000, wait_keyframe=False)
        bus.add(tap)
        t0 = time.monotonic()
        for _ in range(40):
            await receiver._send_rtcp_pli(sender._ssrc)
            await tap.get()
        elapsed = time.monotonic() - t0
        for _ in range(20):  # let a deferred request be served
            await tap.get()
        tap.close()
        assert limiter.requests - requests_before >= 30, "PLIs did not reach the encoder"
        forced = metrics.KEYFRAMES_FORCED.value() - forced_before
        assert 1 <= forced <= elapsed / 0.5 + 2
    finally:
        await viewer.aclose()
        await pub.aclose()


async def test_a_publisher_makes_its_node_the_origin(server: RunningServer) -> None:
    """WHIP on this node: the broadcast's origin is this node (renewed by its heartbeat) until
    the show ends."""
    bid, host, pub = await _go_live(server)
    try:
        doc = (await server.http.get(f"/api/broadcasts/{bid}")).json()
        assert doc["origin"] == {"node": server.ctx.node_id, "url": server.base_url}
        assert await server.ctx.redis.ttl(origin_key(bid)) > 0  # a lease, not forever
    finally:
        await pub.aclose()
    r = await server.http.post(f"/api/broadcasts/{bid}/end",
                               headers={"Authorization": f"Bearer {host}"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert (await server.http.get(f"/api/broadcasts/{bid}")).json()["origin"] is None
