"""Order webhooks reach the shop signed (Standard Webhooks), retried until it says 2xx."""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from commerce.webhooks import sign
from conftest import make_settings
from core.redisproc import RedisServer, free_port
from jangteo.testkit.server import running_server

pytestmark = pytest.mark.timeout(60)
SECRET = "whsec_" + base64.b64encode(b"shop-signing-key-0123456789abcdef").decode()


class Shop:
    """The merchant's endpoint: refuses each webhook twice (500), then takes it."""

    def __init__(self) -> None:
        self.attempts: collections.Counter[str] = collections.Counter()
        self.accepted: list[dict[str, object]] = []
        self.changed = asyncio.Event()

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        msg_id = request.headers["webhook-id"]
        ts = int(request.headers["webhook-timestamp"])
        assert request.headers["webhook-signature"] == sign(SECRET, msg_id, ts, body)
        self.attempts[msg_id] += 1
        if self.attempts[msg_id] < 3:
            return Response(status_code=500)
        import json

        self.accepted.append({"id": msg_id, **json.loads(body)})
        self.changed.set()
        return Response(status_code=204)


@contextlib.asynccontextmanager
async def shop_server(shop: Shop) -> AsyncIterator[str]:
    port = free_port()
    app = Starlette(routes=[Route("/hooks", shop.hook, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    task = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn has no started event to await
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/hooks"
    finally:
        server.should_exit = True
        await task


async def _sale(shop: Shop, redis_url: str) -> tuple[str, str]:
    """Two orders: one paid, one cancelled; returns their ids once the shop took 4 webhooks."""
    async with shop_server(shop) as url:
        settings = make_settings(
            redis_url, webhook_url=url, webhook_secret=SECRET, webhook_retry_base_s=0.05
        )
        async with running_server(settings) as server:
            b = await server.create_broadcast()
            bid, host = b["id"], {"Authorization": f"Bearer {b['host_token']}"}
            await server.http.put(
                f"/api/broadcasts/{bid}/products/p1",
                json={"name": "참기름 350ml", "price": 12000, "stock": 5},
                headers=host,
            )
            buyer = await server.token(bid, "viewer", "박지훈")
            auth = {"Authorization": f"Bearer {buyer}"}
            orders = f"/api/broadcasts/{bid}/orders"
            r1 = await server.http.post(
                orders, json={"product_id": "p1", "qty": 1}, headers=auth | {"Idempotency-Key": "a"}
            )
            r2 = await server.http.post(
                orders, json={"product_id": "p1", "qty": 2}, headers=auth | {"Idempotency-Key": "b"}
            )
            o1, o2 = r1.json()["id"], r2.json()["id"]
            await server.http.post(f"/api/orders/{o1}/confirm", headers=auth)
            await server.http.post(f"/api/orders/{o2}/cancel", headers=auth)

            async def four() -> None:
                while len(shop.accepted) < 4:
                    shop.changed.clear()
                    await shop.changed.wait()

            await asyncio.wait_for(four(), 30)
    return o1, o2


async def test_order_webhooks_are_signed_and_retried(tmp_path: Path) -> None:
    shop = Shop()
    with RedisServer(tmp_path, port=0) as redis:  # its own Redis: only this sale's outbox exists
        o1, o2 = await _sale(shop, redis.url)
    seen = {(e["type"], e["data"]["id"]) for e in shop.accepted}  # type: ignore[index]
    assert seen == {
        ("order.created", o1),
        ("order.created", o2),
        ("order.paid", o1),
        ("order.cancelled", o2),
    }
    assert all(n == 3 for n in shop.attempts.values())  # two refusals, then accepted, once each
    assert len(shop.attempts) == 4
    paid = next(e for e in shop.accepted if e["type"] == "order.paid")
    assert paid["data"]["buyer"]["name"] == "박지훈"  # type: ignore[index]
