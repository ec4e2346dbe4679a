"""The server on a real Redis Cluster (three masters on loopback, JANGTEO_REDIS_CLUSTER=1):
broadcasts, tokens and revocation, the catalog and pins, orders that sell exactly the stock,
chat and hearts, the merchant's numbers and the nodes — every script in its broadcast's slot,
the broadcasts spread over the masters."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from conftest import make_settings
from jangteo.testkit.cluster import RedisCluster3
from jangteo.testkit.server import RunningServer, bearer, running_server

from .chat_client import ChatClient

pytestmark = pytest.mark.timeout(120)
_keys = itertools.count()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster3]:
    c = RedisCluster3(tmp_path_factory.mktemp("cluster"))
    c.start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
async def server(cluster: RedisCluster3, tmp_path: Path) -> AsyncIterator[RunningServer]:
    settings = make_settings(cluster.url, redis_cluster=True, data_dir=tmp_path)
    async with running_server(settings) as s:
        yield s


async def _order(http: httpx.AsyncClient, bid: str, token: str, qty: int = 1) -> httpx.Response:
    headers = bearer(token) | {"Idempotency-Key": f"k{next(_keys)}"}
    body = {"product_id": "p1", "qty": qty}
    return await http.post(f"/api/broadcasts/{bid}/orders", json=body, headers=headers)


def _masters_holding(cluster: RedisCluster3, shows: list[dict[str, str]]) -> int:
    """How many masters hold the record of at least one of ``shows``."""
    holding = 0
    for port in cluster.ports:
        node = redis.Redis(host="127.0.0.1", port=port)
        try:
            holding += any(node.cluster("COUNTKEYSINSLOT", node.cluster("KEYSLOT",
                           f"jt:{{{s['id']}}}:meta")) for s in shows)  # fmt: skip
        finally:
            node.close()
    return holding


async def test_a_show_runs_on_a_redis_cluster(
    server: RunningServer, cluster: RedisCluster3
) -> None:
    http = server.http
    shows = [await server.create_broadcast(f"클러스터 방송 {i}") for i in range(6)]
    b = shows[0]
    bid, host = b["id"], b["host_token"]
    await server.ctx.store.ensure_live(bid)
    r = await http.put(f"/api/broadcasts/{bid}/products/p1", headers=bearer(host),
                       json={"name": "한라봉 3kg", "price": 29900, "stock": 20})  # fmt: skip
    assert r.status_code == 201, r.text
    r = await http.post(f"/api/broadcasts/{bid}/pin", headers=bearer(host),
                        json={"product_id": "p1", "deal_price": 25900})  # fmt: skip
    assert r.status_code == 200, r.text

    # 60 buyers race for 20 units: exactly the stock is sold
    buyers = [await server.token(bid, "viewer", f"손님{i}") for i in range(60)]
    answers = await asyncio.gather(*(_order(http, bid, t) for t in buyers))
    sold = [a for a in answers if a.status_code == 201]
    assert len(sold) == 20 and all(a.status_code == 409 for a in answers if a not in sold)
    first = sold[0].json()
    assert first["unit_price"] == 25900
    assert (await http.post(f"/api/orders/{first['id']}/confirm",
                            headers=bearer(buyers[answers.index(sold[0])]))).is_success  # fmt: skip
    second = sold[1].json()
    assert (await http.post(f"/api/orders/{second['id']}/cancel", headers=bearer(host))).is_success
    products = (await http.get(f"/api/broadcasts/{bid}/products")).json()["products"]
    assert products[0]["stock"] == 1  # one came back

    # chat and hearts, from two sockets
    viewer = buyers[0]
    h = await ChatClient.open(server.base_url, bid, host)
    v = await ChatClient.open(server.base_url, bid, viewer)
    await v.send(type="chat", text="클러스터에서도 잘 되나요?")
    line = await h.wait_for("chat", lambda e: e["text"] == "클러스터에서도 잘 되나요?")
    await v.send(type="heart", count=3)
    await h.wait_for("hearts", lambda e: e["total"] == 3)
    r = await http.delete(f"/api/broadcasts/{bid}/chat/{line['id']}", headers=bearer(host))
    assert r.is_success, r.text
    await v.wait_for("deleted", lambda e: e["id"] == line["id"])

    # the merchant's numbers and the operator's view
    r = await http.get(f"/api/broadcasts/{bid}/stats", headers=bearer(host))
    assert r.status_code == 200, r.text
    stats = r.json()
    assert (stats["orders"], stats["paid_orders"], stats["cancelled"]) == (19, 1, 1)
    assert stats["chat_messages"] == 1 and stats["hearts"] == 3
    report = await http.get(f"/api/broadcasts/{bid}/report?format=csv", headers=bearer(host))
    assert report.status_code == 200 and "한라봉 3kg" in report.content.decode("utf-8-sig")
    merchant = (await http.get(f"/api/broadcasts/{bid}")).json()["merchant_id"]
    r = await http.get(f"/api/merchants/{merchant}/forecast", headers=bearer(host))
    assert r.status_code == 200 and r.json()["shows"] == 0  # nothing ended yet
    nodes = (await http.get("/api/nodes", headers=server.admin())).json()["nodes"]
    assert any(n["url"] == server.base_url for n in nodes)

    # revocation holds across the cluster; a fresh host token works
    r = await http.post(f"/api/broadcasts/{bid}/tokens/revoke", headers=bearer(host))
    assert r.status_code == 200, r.text
    assert (await http.get(f"/api/broadcasts/{bid}/stats", headers=bearer(host))).status_code == 401
    fresh = r.json()["host_token"]
    assert (await http.get(f"/api/broadcasts/{bid}/stats", headers=bearer(fresh))).is_success
    r = await http.post(f"/api/broadcasts/{bid}/end", headers=bearer(fresh))
    assert r.status_code == 200, r.text

    # the shows' keys are spread over the masters (each by its own hash tag): six random ids
    # fall on one master of three once in 243 runs, so more shows are made until two are used
    for _ in range(40):
        if _masters_holding(cluster, shows) >= 2:
            break
        shows.append(await server.create_broadcast("클러스터 방송 하나 더"))
    assert _masters_holding(cluster, shows) >= 2, f"{len(shows)} broadcasts all on one master"
    for client in (h, v):
        await client.aclose()
