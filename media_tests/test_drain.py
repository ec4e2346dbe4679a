"""Draining a node: the operator takes it out of service and the show goes on elsewhere.

Two nodes in this process on one Redis (as in test_edges.py); the publisher and the viewers are
real aiortc peers, the chat a real WebSocket. The operator asks node B to drain node A: A stops
taking anyone new (health check, WHIP, WHEP, chat), lets its viewers, its publisher and its chat
sockets go, and says when nothing is left; the publisher comes back through B and B's viewers
watch on. The pages moving by themselves: media_tests/test_drain_pages.py.
"""

from __future__ import annotations

import json

import pytest

from jangteo.testkit.clients import SignallingError, WhepClient, WhipClient
from jangteo.testkit.server import RunningServer, eventually
from stream.ingest.synthetic import PatternTrack, ToneTrack
from tests.chat_client import ChatClient

from .helpers import is_pattern, wait_for_frame
from .test_edges import go_live, node, viewer

pytestmark = pytest.mark.timeout(120)


async def record_of(server: RunningServer, node_id: str) -> dict[str, object]:
    r = await server.http.get("/api/nodes", headers=server.admin())
    assert r.status_code == 200
    return next(n for n in r.json()["nodes"] if n["id"] == node_id)


async def test_a_drained_node_lets_everyone_go_and_takes_nobody_new(redis_url: str) -> None:
    async with node(redis_url, "node-a") as a, node(redis_url, "node-b") as b:
        bid, pub = await go_live(a)
        here, there = await viewer(a, bid, "here"), await viewer(b, bid, "there", keep=400)
        chat = await ChatClient.open(a.base_url, bid, await a.token(bid, "viewer", "채팅"))
        again: WhipClient | None = None
        try:
            for v in (here, there):
                await wait_for_frame(v, lambda f: f.image is not None and is_pattern(f.image), 15)
            assert (await record_of(b, "node-a"))["draining"] is False

            # asked of another node: A sees it at its next heartbeat
            r = await b.http.post("/api/nodes/node-a/drain", headers=b.admin())
            assert r.status_code == 202, r.text
            assert r.json() == {"node": "node-a", "draining": True}
            await eventually(lambda: a.app.state.drain.active, "A draining", 10)

            # nobody new: the load balancer's health check, WHEP, WHIP and the chat
            health = await a.http.get("/healthz")
            assert health.status_code == 503 and health.json()["code"] == "draining"
            for kind, client in (
                ("whep", WhepClient(a.base_url, bid, await a.token(bid, "viewer", "new"))),
                ("whip", WhipClient(a.base_url, bid, pub.token)),
            ):
                with pytest.raises(SignallingError) as refused:
                    if isinstance(client, WhepClient):
                        await client.play()
                    else:
                        await client.publish(PatternTrack(320, 180, 30), ToneTrack(440))
                await client.aclose()
                assert refused.value.status == 503, kind
                assert json.loads(refused.value.body)["code"] == "draining", kind
            late = await ChatClient.open(a.base_url, bid, await a.token(bid, "viewer", "늦게"))
            assert (await late.wait_closed())[0] == 1013

            # everyone on A let go: its viewer, its publisher, its chat socket (1012: resume)
            code, reason = await chat.wait_closed()
            assert code == 1012 and reason and "draining" in reason
            await eventually(lambda: here.pc.connectionState in ("closed", "failed"), "cut", 10)
            await eventually(lambda: pub.pc.connectionState in ("closed", "failed"), "cut", 10)
            # B's pages do not send anyone to A any more
            doc = (await b.http.get(f"/api/broadcasts/{bid}")).json()
            assert a.base_url not in doc["nodes"]

            # the studio publishes through B: B's viewer watches on, on the same session
            mark = len(there.frames)
            again = WhipClient(b.base_url, bid, pub.token)
            await again.publish(PatternTrack(320, 180, 30, hue=60), ToneTrack(440))
            await wait_for_frame(
                there, lambda f: f.image is not None and is_pattern(f.image, hue=60), 20, mark
            )
            assert there.pc.connectionState == "connected"

            # A carries nothing now, and says so
            drain = a.app.state.drain
            await eventually(lambda: not any(drain.sessions().values()), "A empty", 15)
            await eventually(lambda: a.ctx.hub.broadcasts == {}, "A composing nothing", 15)
            await a.app.state.node.beat()  # its next heartbeat, now
            rec = await record_of(b, "node-a")
            assert rec["draining"] is True and rec["drained"] is True, rec
            assert rec["sessions"] == {"publishers": 0, "viewers": 0, "chat": 0}

            # back in service
            r = await b.http.delete("/api/nodes/node-a/drain", headers=b.admin())
            assert r.status_code == 200 and r.json() == {"node": "node-a", "draining": False}
            await eventually(lambda: not a.app.state.drain.active, "A serving", 10)
            assert (await a.http.get("/healthz")).status_code == 200
            back = await viewer(a, bid, "back")
            try:
                await wait_for_frame(
                    back, lambda f: f.image is not None and is_pattern(f.image, hue=60), 15
                )
            finally:
                await back.aclose()
        finally:
            await chat.aclose()
            for v in (here, there):
                await v.aclose()
            await pub.aclose()
            if again is not None:
                await again.aclose()


async def test_draining_asks_for_a_live_node_and_the_admin_key(redis_url: str) -> None:
    async with node(redis_url, "node-a") as a:
        r = await a.http.post("/api/nodes/node-x/drain", headers=a.admin())
        assert r.status_code == 404 and r.json()["code"] == "node_not_found"
        doc = await a.create_broadcast()
        r = await a.http.post("/api/nodes/node-a/drain",
                              headers={"Authorization": f"Bearer {doc['host_token']}"})  # fmt: skip
        assert r.status_code == 401
        assert not a.app.state.drain.active
        # asked of itself, a node drains at once (nothing to wait for)
        r = await a.http.post("/api/nodes/node-a/drain", headers=a.admin())
        assert r.status_code == 202 and a.app.state.drain.active
