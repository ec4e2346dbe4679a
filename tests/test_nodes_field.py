"""``GET /api/broadcasts/{bid}`` names the deployment's live nodes (``nodes``: this node's URL
first), for viewer pages to move to when their node dies; and every node accepts the pages of the
others (CORS), including the order fast path, and keeps accepting a node's pages once it is gone."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from conftest import make_settings
from core.nodes import NodeRegistry
from jangteo.testkit.server import RunningServer, running_server

pytestmark = pytest.mark.timeout(30)

OTHER = "http://10.0.0.9:8080"  # a second node (only its heartbeat: nothing listens there)


@pytest.fixture
async def own_pages_only(redis_url: str) -> AsyncIterator[RunningServer]:
    """A server with the default CORS setting: no origins besides our own pages."""
    async with running_server(make_settings(redis_url, cors_origins=())) as s:
        yield s


async def nodes_of(server: RunningServer, bid: str) -> list[str]:
    r = await server.http.get(f"/api/broadcasts/{bid}")
    assert r.status_code == 200, r.text
    urls: list[str] = r.json()["nodes"]
    return urls


def preflight(origin: str) -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"}  # fmt: skip


async def test_one_node_names_none_two_name_both_own_first(server: RunningServer) -> None:
    bid = (await server.create_broadcast())["id"]
    assert await nodes_of(server, bid) == []  # a deployment of one: nowhere else to go

    # "a-…" sorts before this node's id in the registry: the answer still puts this node first
    other = NodeRegistry(server.ctx.redis, "a-other", OTHER, counts=dict)
    await other.beat()
    try:
        assert await nodes_of(server, bid) == [server.base_url, OTHER]
    finally:
        await other.aclose()
    assert await nodes_of(server, bid) == []


async def test_two_nodes_with_one_url_name_none(server: RunningServer) -> None:
    """Nodes that all give the load balancer's URL: one address, nothing to move to."""
    bid = (await server.create_broadcast())["id"]
    same = NodeRegistry(server.ctx.redis, "a-same", server.base_url, counts=dict)
    await same.beat()
    try:
        assert await nodes_of(server, bid) == []
    finally:
        await same.aclose()


async def test_the_other_nodes_pages_are_accepted_origins(own_pages_only: RunningServer) -> None:
    server = own_pages_only
    bid = (await server.create_broadcast())["id"]
    whep = f"/whep/{bid}"
    r = await server.http.options(whep, headers=preflight(OTHER))
    assert r.status_code == 400 and "access-control-allow-origin" not in r.headers

    other = NodeRegistry(server.ctx.redis, "a-other", OTHER, counts=dict)
    await other.beat()
    await nodes_of(server, bid)  # learnt with the listing (and with every heartbeat)
    await other.aclose()  # the node is gone: a viewer of its page moves here, still accepted
    r = await server.http.options(whep, headers=preflight(OTHER))
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == OTHER
    r = await server.http.get(f"/api/broadcasts/{bid}", headers={"Origin": OTHER})
    assert r.headers["access-control-allow-origin"] == OTHER
    # the order route skips the middleware (commerce/fastpath.py): it learnt the origin too
    r = await server.http.post(f"/api/broadcasts/{bid}/orders", json={},
                               headers={"Origin": OTHER})  # fmt: skip
    assert r.status_code == 401 and r.headers["access-control-allow-origin"] == OTHER

    # anyone else is still refused
    stranger = "https://elsewhere.example"
    r = await server.http.options(whep, headers=preflight(stranger))
    assert r.status_code == 400 and "access-control-allow-origin" not in r.headers
    r = await server.http.post(f"/api/broadcasts/{bid}/orders", json={},
                               headers={"Origin": stranger})  # fmt: skip
    assert "access-control-allow-origin" not in r.headers
