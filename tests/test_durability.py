"""kill -9 of Redis during a flash sale: every acknowledged order survives, nothing is oversold."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from conftest import make_settings
from core.redisproc import RedisServer
from jangteo.testkit.server import running_server

pytestmark = pytest.mark.timeout(120)
STOCK = 300


async def test_acknowledged_orders_survive_kill_9(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis", port=0, fsync="always")
    redis.start()
    try:
        async with running_server(make_settings(redis.url)) as server:
            b = await server.create_broadcast()
            bid, host = b["id"], {"Authorization": f"Bearer {b['host_token']}"}
            r = await server.http.put(
                f"/api/broadcasts/{bid}/products/p1",
                json={"name": "한정판 운동화", "price": 129000, "stock": STOCK},
                headers=host,
            )
            assert r.status_code == 201
            tokens = [await server.token(bid, "viewer", f"buyer{i}") for i in range(100)]
            acked: list[dict[str, object]] = []
            enough = asyncio.Event()
            gate = asyncio.Semaphore(32)
            async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:

                async def attempt(i: int) -> int:
                    async with gate:
                        try:
                            r = await http.post(
                                f"/api/broadcasts/{bid}/orders",
                                json={"product_id": "p1", "qty": 1 + i % 2},
                                headers={
                                    "Authorization": f"Bearer {tokens[i % 100]}",
                                    "Idempotency-Key": f"tap-{i}",
                                },
                            )
                        except httpx.HTTPError:
                            return 0
                    if r.status_code == 201:
                        acked.append(r.json())
                        if len(acked) >= 60:
                            enough.set()
                    return r.status_code

                sale = asyncio.gather(*(attempt(i) for i in range(400)))
                await asyncio.wait_for(enough.wait(), 60)
                redis.kill()  # SIGKILL in the middle of the sale
                codes = await sale
                assert 503 in codes or 500 in codes  # requests hit the dead Redis
                redis.start()  # same dir, same port: replays the AOF
                # every 201 is still there, as acknowledged
                for answer in acked:
                    r = await http.get(f"/api/orders/{answer['id']}", headers=host)
                    assert r.status_code == 200, r.text
                    assert r.json()["qty"] == answer["qty"]
                    assert r.json()["status"] == "reserved"
                orders = (await http.get(f"/api/broadcasts/{bid}/orders", headers=host)).json()
                products = (await http.get(f"/api/broadcasts/{bid}/products")).json()
            left = products["products"][0]["stock"]
            sold = sum(o["qty"] for o in orders["orders"] if o["status"] == "reserved")
            assert left >= 0
            assert sold + left == STOCK  # stock and orders add up: no oversell, nothing lost
            assert {a["id"] for a in acked} <= {o["id"] for o in orders["orders"]}
    finally:
        redis.stop()
