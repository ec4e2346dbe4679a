"""Co-hosts on many nodes: they publish to the broadcast's origin, wherever their studio reached.

One compositor per show: a co-host whose WHIP request reaches a node that is not the origin is
told where the origin is (409 ``origin_elsewhere`` with ``origin: {node, url}``; the studio
sends it there); when the host moves the show to another node, the old origin lets its co-hosts
go and they come back through the new one. Two nodes in this process on one Redis (as in
test_edges.py); the host and the co-host are real aiortc peers.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from core.events import stream_key
from jangteo.testkit.clients import Received, SignallingError, WhipClient
from jangteo.testkit.server import RunningServer, eventually
from stream.ingest.synthetic import PatternTrack, ToneTrack

from .helpers import wait_for_frame
from .test_cohost import GREEN, ColorTrack, bars, green
from .test_edges import go_live, node, viewer

pytestmark = pytest.mark.timeout(120)

W, H = 320, 180  # the nodes' output (test_edges.node)
ROWS = slice(H // 12 + 4, H * 3 // 4)  # below the pattern's counter band, above the lower third


def both(f: Received) -> bool:
    """Side by side (two publishers, the default layout): the host's bars left, green right."""
    img: NDArray[np.uint8] | None = f.image
    if img is None:
        return False
    return bars(img[ROWS, 8 : W // 2 - 8]) and green(img[ROWS, W // 2 + 8 : -8])


async def cohost(server: RunningServer, bid: str, host_token: str) -> tuple[str, WhipClient]:
    token = await server.token(bid, "cohost", "크리에이터", as_token=host_token)
    return token, WhipClient(server.base_url, bid, token)


async def refused_elsewhere(pub: WhipClient) -> dict[str, object]:
    """``pub``'s WHIP request answered 409 origin_elsewhere: the problem document."""
    with pytest.raises(SignallingError) as refused:
        await pub.publish(ColorTrack(GREEN, W, H), ToneTrack(1000))
    assert refused.value.status == 409
    assert refused.value.content_type.startswith("application/problem+json")
    problem: dict[str, object] = json.loads(refused.value.body)
    assert problem["code"] == "origin_elsewhere"
    await pub.aclose()
    return problem


async def test_a_cohost_reaching_another_node_is_sent_to_the_origin(redis_url: str) -> None:
    async with node(redis_url, "node-a") as a, node(redis_url, "node-b") as b:
        bid, host = await go_live(a)
        token, there = await cohost(b, bid, host.token or "")
        problem = await refused_elsewhere(there)
        assert problem["origin"] == {"node": "node-a", "url": a.base_url}
        # nothing started on B, and the show's origin is still A
        assert bid not in b.ctx.hub.broadcasts and not b.ctx.hub.edges
        doc = (await b.http.get(f"/api/broadcasts/{bid}")).json()
        assert doc["origin"]["node"] == "node-a"
        # where it was sent: A composes both pictures, for viewers of either node
        here = WhipClient(a.base_url, bid, token)
        v = await viewer(b, bid, "v", keep=200)
        try:
            await here.publish(ColorTrack(GREEN, W, H), ToneTrack(1000))
            await here.connected()
            assert len(a.ctx.hub.broadcasts[bid].publishers) == 2
            await a.app.state.node.beat()  # A's next heartbeat, now: B answers for the show
            assert (await b.http.get(f"/api/broadcasts/{bid}")).json()["publishers"] == 2
            await wait_for_frame(v, both, 20)
        finally:
            await v.aclose()
            await here.aclose()
            await host.aclose()


async def test_cohosts_follow_the_host_to_its_new_origin(redis_url: str) -> None:
    """The host's studio comes back through B: B is the origin now. A lets its co-host go at
    once (no second compositor for the same show); the co-host's studio, asking A again, is sent
    to B and publishes there; a viewer who stayed on A sees both again, on the same session."""
    async with node(redis_url, "node-a") as a, node(redis_url, "node-b") as b:
        bid, host = await go_live(a)
        token, co = await cohost(a, bid, host.token or "")
        await co.publish(ColorTrack(GREEN, W, H), ToneTrack(1000))
        await co.connected()
        old = await viewer(a, bid, "old", keep=600)
        moved = WhipClient(b.base_url, bid, host.token)
        again: WhipClient | None = None
        try:
            await wait_for_frame(old, both, 20)
            media = a.ctx.hub.broadcasts[bid]
            await host.aclose(delete=False)  # the host's phone lost its link to A …
            await moved.publish(PatternTrack(W, H, 30, hue=60), ToneTrack(440))  # … came via B
            await moved.connected()
            await eventually(lambda: not media.publishers, "A letting its co-host go", 5)
            await eventually(lambda: bid not in a.ctx.hub.broadcasts, "A composing no more", 5)
            assert b.ctx.hub.broadcasts[bid].compositor is not media.compositor
            # the co-host's studio asks its node again: sent on to B
            problem = await refused_elsewhere(WhipClient(a.base_url, bid, token))
            assert problem["origin"] == {"node": "node-b", "url": b.base_url}
            mark = len(old.frames)
            again = WhipClient(b.base_url, bid, token)
            await again.publish(ColorTrack(GREEN, W, H), ToneTrack(1000))
            await again.connected()
            assert len(b.ctx.hub.broadcasts[bid].publishers) == 2
            await wait_for_frame(old, both, 20, start=mark)
            assert old.pc.connectionState == "connected"
        finally:
            await old.aclose()
            await co.aclose()
            await moved.aclose()
            if again is not None:
                await again.aclose()


async def test_a_cohost_may_start_the_media_on_a_node_when_no_origin_is_alive(
    redis_url: str,
) -> None:
    """Before the host is on air (no origin yet) a co-host's studio starts the media where it
    is, as on one node; the host arriving through another node then takes the show there and
    the co-host follows."""
    async with node(redis_url, "node-a") as a, node(redis_url, "node-b") as b:
        doc = await a.create_broadcast()
        bid = doc["id"]
        token, co = await cohost(b, bid, doc["host_token"])
        await co.publish(ColorTrack(GREEN, W, H), ToneTrack(1000))
        await co.connected()
        first = (await a.http.get(f"/api/broadcasts/{bid}")).json()["origin"]
        assert first["node"] == "node-b"
        host = WhipClient(a.base_url, bid, doc["host_token"])
        try:
            await host.publish(PatternTrack(W, H, 30), ToneTrack(440))
            await host.connected()
            await eventually(lambda: bid not in b.ctx.hub.broadcasts, "B letting go", 5)
            assert len(a.ctx.hub.broadcasts[bid].publishers) == 1  # the host's, on A
            problem = await refused_elsewhere(WhipClient(b.base_url, bid, token))
            assert problem["origin"] == {"node": "node-a", "url": a.base_url}
        finally:
            await co.aclose()
            await host.aclose()


async def test_the_host_live_from_a_second_device_on_another_node_replaces_the_first(
    redis_url: str,
) -> None:
    """The host's first device stays connected to A; a second goes live through B. A lets the
    first go and tells the host (``session_replaced``, to them only) so that studio stops
    instead of taking the show back (media_tests/test_studio_takeover.py: the page's side)."""
    async with node(redis_url, "node-a") as a, node(redis_url, "node-b") as b:
        bid, first = await go_live(a)
        (old,) = a.ctx.hub.broadcasts[bid].publishers
        user = a.ctx.hub.broadcasts[bid].publishers[old].claims.user_id
        second = WhipClient(b.base_url, bid, first.token)
        try:
            await second.publish(PatternTrack(W, H, 30, hue=60), ToneTrack(440))
            await second.connected()
            await eventually(lambda: bid not in a.ctx.hub.broadcasts, "A letting it go", 5)
            raw: Any = await a.ctx.redis.xrange(stream_key(bid))
            told = [json.loads(fields[b"e"]) for _, fields in raw]
            replaced = [e for e in told if e["type"] == "session_replaced"]
            assert [(e["session"], e["to"], e["kind"]) for e in replaced] == [(old, user, "whip")]
            assert len(b.ctx.hub.broadcasts[bid].publishers) == 1
        finally:
            await first.aclose()
            await second.aclose()
