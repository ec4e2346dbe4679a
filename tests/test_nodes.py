"""Nodes on a real redis-server: each server says who it is and how busy it is; the operator
lists the nodes heard from; one that leaves is gone at once, one that dies once its key expires."""

from __future__ import annotations

import pytest

from core.nodes import IDS, NodeRegistry, node_key, nodes
from core.origin import LEASE_S, claim, claim_if, origin_key, origin_of, release, renew
from jangteo.testkit.server import RunningServer

pytestmark = pytest.mark.timeout(30)


async def test_the_operator_lists_the_nodes(server: RunningServer) -> None:
    redis = server.ctx.redis
    # the server's own heartbeat is written when it starts
    r = await server.http.get("/api/nodes", headers=server.admin())
    assert r.status_code == 200, r.text
    mine = [n for n in r.json()["nodes"] if n["url"] == server.base_url]
    assert len(mine) == 1 and mine[0]["broadcasts"] == 0 and mine[0]["viewers"] == 0
    assert mine[0]["cores"] >= 1 and mine[0]["load"] >= 0 and mine[0]["age_ms"] < 15_000

    # a second node joins, carrying a show; then leaves cleanly
    other = NodeRegistry(redis, "edge-b", "http://10.0.0.2:8080",
                         counts=lambda: {"broadcasts": 2, "viewers": 150})  # fmt: skip
    await other.beat()
    listed = {n["id"]: n for n in await nodes(redis)}
    assert listed["edge-b"]["url"] == "http://10.0.0.2:8080"
    assert (listed["edge-b"]["broadcasts"], listed["edge-b"]["viewers"]) == (2, 150)
    assert await redis.ttl(node_key("edge-b")) > 0  # it expires unless renewed
    await other.aclose()
    assert "edge-b" not in {n["id"] for n in await nodes(redis)}

    # a node that died: its key expired (gone here at once); the listing prunes its id
    dead = NodeRegistry(redis, "edge-c", "http://10.0.0.3:8080", counts=dict)
    await dead.beat()
    await redis.delete(node_key("edge-c"))
    assert "edge-c" not in {n["id"] for n in await nodes(redis)}
    assert not await redis.sismember(IDS, "edge-c")


async def test_only_the_operator_lists_nodes(server: RunningServer) -> None:
    b = await server.create_broadcast()
    assert (await server.http.get("/api/nodes")).status_code == 401
    r = await server.http.get("/api/nodes", headers={"Authorization": f"Bearer {b['host_token']}"})
    assert r.status_code == 401  # a broadcast's token is not the admin key


async def test_the_origin_lease_follows_the_publisher(server: RunningServer) -> None:
    """A node holds a broadcast's origin lease; another node's renew or release leaves it alone;
    a lapsed lease is taken back by the node that renews it; a publisher through another node
    moves it; the end of the show drops it."""
    redis = server.ctx.redis
    b = await server.create_broadcast()
    bid = b["id"]
    assert (await server.http.get(f"/api/broadcasts/{bid}")).json()["origin"] is None
    await claim(redis, bid, server.ctx.node_id)
    doc = (await server.http.get(f"/api/broadcasts/{bid}")).json()
    assert doc["origin"] == {"node": server.ctx.node_id, "url": server.base_url}
    assert await renew(redis, [bid], "edge-b") == 0 and not await release(redis, bid, "edge-b")
    assert await origin_of(redis, bid) == server.ctx.node_id
    assert await renew(redis, [bid], server.ctx.node_id) == 1
    await redis.delete(origin_key(bid))  # the lease lapsed (Redis was away longer than it)
    assert await renew(redis, [bid], server.ctx.node_id) == 1  # the node with publishers …
    assert await origin_of(redis, bid) == server.ctx.node_id  # … takes it back
    assert 0 < await redis.ttl(origin_key(bid)) <= LEASE_S
    await claim(redis, bid, "edge-b")  # the host reconnected through node B
    assert await origin_of(redis, bid) == "edge-b"
    assert not await release(redis, bid, server.ctx.node_id)  # A no longer holds it
    r = await server.http.post(f"/api/broadcasts/{bid}/end", headers=server.admin())
    assert r.status_code == 200, r.text
    assert await origin_of(redis, bid) is None


async def test_a_cohost_claims_the_origin_only_if_it_has_not_moved(server: RunningServer) -> None:
    """claim_if: what a co-host's node does after reading the lease (nobody, or a dead node) and
    starting the media: it takes the lease only if nobody took it meanwhile (the host, on
    another node), else it leaves the show where the host is."""
    redis = server.ctx.redis
    bid = (await server.create_broadcast())["id"]
    assert await claim_if(redis, bid, "node-b", None)  # nobody held it
    assert await origin_of(redis, bid) == "node-b"
    assert await claim_if(redis, bid, "node-b", None)  # its own: renewed
    await claim(redis, bid, "node-a")  # the host arrived on A meanwhile
    assert not await claim_if(redis, bid, "node-c", None)  # C read "nobody" before: too late
    assert not await claim_if(redis, bid, "node-c", "node-b")  # … or "B": too late
    assert await origin_of(redis, bid) == "node-a"
    assert await claim_if(redis, bid, "node-c", "node-a")  # what C read (A, found dead) holds
    assert await origin_of(redis, bid) == "node-c"
