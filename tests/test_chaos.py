"""Chaos: the app itself killed with ``kill -9`` in the middle of a flash sale.

``jangteo serve`` runs as a child process on a Redis of the test's (AOF, fsync always); buyers
race for a flash deal; the app is SIGKILLed after 60 orders were acknowledged and started again
on the same Redis. Every 201 is still there, as acknowledged, and the stock adds up.
(media_tests/test_chaos.py: Redis away for 10 s during a show; the publisher flapping.)
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx
import pytest

from core.redisproc import RedisServer
from jangteo.testkit.server import bearer, start_serve_process, stop_process

pytestmark = pytest.mark.timeout(180)
STOCK = 300


async def test_acknowledged_orders_survive_kill_9_of_the_app(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis", port=0, fsync="always")
    redis.start()
    env = {"REDIS_URL": redis.url, "JANGTEO_SECRET": "chaos-secret",
           "JANGTEO_ADMIN_KEY": "chaos-admin", "JANGTEO_RECORD": "0",
           "JANGTEO_OPEN_ORDERS_PER_ADDRESS": "100000",
           "JANGTEO_DATA_DIR": str(tmp_path / "data")}  # fmt: skip
    admin = bearer("chaos-admin")
    proc, base = await start_serve_process(env, str(tmp_path / "serve.log"))
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            doc = (await http.post("/api/broadcasts", json={"title": "반짝 특가"},
                                   headers=admin)).json()  # fmt: skip
            bid, host = doc["id"], bearer(doc["host_token"])
            product = {"name": "한정판 운동화", "price": 129000, "stock": STOCK}
            r = await http.put(f"/api/broadcasts/{bid}/products/p1", headers=host, json=product)
            assert r.status_code == 201, r.text
            ends = int(time.time() * 1000) + 600_000
            r = await http.post(f"/api/broadcasts/{bid}/pin", headers=host,
                                json={"product_id": "p1", "deal_price": 99000,
                                      "deal_ends_at": ends})  # fmt: skip
            assert r.status_code == 200, r.text
            tokens = []
            for i in range(100):
                r = await http.post(f"/api/broadcasts/{bid}/tokens", headers=admin,
                                    json={"role": "viewer", "name": f"buyer{i}"})  # fmt: skip
                tokens.append(r.json()["token"])
        acked: list[tuple[dict[str, object], str]] = []
        enough = asyncio.Event()
        gate = asyncio.Semaphore(32)
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:

            async def attempt(i: int) -> int:
                token = tokens[i % 100]
                async with gate:
                    try:
                        r = await http.post(
                            f"/api/broadcasts/{bid}/orders",
                            json={"product_id": "p1", "qty": 1 + i % 2},
                            headers=bearer(token) | {"Idempotency-Key": f"tap-{i}"},
                        )
                    except httpx.HTTPError:
                        return 0
                if r.status_code == 201:
                    acked.append((r.json(), token))
                    if len(acked) >= 60:
                        enough.set()
                return r.status_code

            sale = asyncio.gather(*(attempt(i) for i in range(400)))
            await asyncio.wait_for(enough.wait(), 90)
            proc.send_signal(signal.SIGKILL)  # the app dies mid-sale: no shutdown at all
            proc.wait()
            codes = await sale
        assert 0 in codes, "no request was cut by the kill"
        assert all(c in (0, 201, 409) for c in codes), sorted(set(codes))
        proc, base = await start_serve_process(env, str(tmp_path / "serve.log"))
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            for answer, token in acked:  # every 201 is there, as acknowledged
                r = await http.get(f"/api/orders/{answer['id']}", headers=bearer(token))
                assert r.status_code == 200, r.text
                assert r.json()["qty"] == answer["qty"]
                assert r.json()["unit_price"] == 99000
            orders = (await http.get(f"/api/broadcasts/{bid}/orders", headers=host)).json()
            products = (await http.get(f"/api/broadcasts/{bid}/products")).json()
        left = products["products"][0]["stock"]
        held = sum(o["qty"] for o in orders["orders"] if o["status"] in ("reserved", "paid"))
        assert left >= 0
        assert held + left == STOCK  # no oversell, nothing lost, no stray hold
        assert {str(a["id"]) for a, _ in acked} <= {o["id"] for o in orders["orders"]}
    finally:
        stop_process(proc)
        redis.stop()
