"""Orders on a real redis-server: no oversell, idempotency, limits, holds, export, bad input."""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import json
from typing import Any

import httpx
import pytest

from commerce.sweeper import Sweeper
from jangteo.testkit.server import RunningServer, bearer

pytestmark = pytest.mark.timeout(90)
_keys = itertools.count()


async def _shop(server: RunningServer, **product: Any) -> tuple[str, str]:
    b = await server.create_broadcast()
    body = {"name": "제주 감귤 5kg", "price": 29900, "list_price": 39900, "stock": 100} | product
    r = await server.http.put(
        f"/api/broadcasts/{b['id']}/products/p1", json=body, headers=bearer(b["host_token"])
    )
    assert r.status_code == 201, r.text
    return b["id"], b["host_token"]


async def _order(http: httpx.AsyncClient, bid: str, token: str, key: str | None = None,
                 **body: Any) -> httpx.Response:  # fmt: skip
    headers = bearer(token) | {"Idempotency-Key": key or f"k{next(_keys)}"}
    return await http.post(
        f"/api/broadcasts/{bid}/orders", json={"product_id": "p1", "qty": 1} | body, headers=headers
    )


async def _stock(server: RunningServer, bid: str) -> int:
    products = (await server.http.get(f"/api/broadcasts/{bid}/products")).json()["products"]
    return int(next(p for p in products if p["id"] == "p1")["stock"])


async def test_flash_sale_sells_exactly_the_stock(server: RunningServer) -> None:
    bid, host = await _shop(server, stock=100)
    tokens = [await server.token(bid, "viewer", f"구매자{i}") for i in range(200)]
    # 64 connections, each always busy: the server sees 64 concurrent buyers at every moment
    # (the semaphore keeps httpx's pool from queueing 2,000 waiters, which is slow on its own)
    gate = asyncio.Semaphore(64)
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=server.base_url, limits=limits, timeout=60) as http:

        async def attempt(i: int) -> httpx.Response:
            key = f"flash-{i}"
            async with gate:
                try:
                    return await _order(http, bid, tokens[i % 200], key)
                except httpx.TransportError:  # a kept-alive connection closed as it was reused:
                    return await _order(http, bid, tokens[i % 200], key)  # same key, same order

        rs = await asyncio.gather(*(attempt(i) for i in range(2000)))
    codes = [r.status_code for r in rs]
    assert codes.count(201) == 100
    assert codes.count(409) == 1900
    assert all(r.json()["code"] == "sold_out" for r in rs if r.status_code == 409)
    assert await _stock(server, bid) == 0
    orders = (await server.http.get(f"/api/broadcasts/{bid}/orders", headers=bearer(host))).json()
    assert len(orders["orders"]) == 100
    assert sum(o["qty"] for o in orders["orders"]) == 100
    first = next(r.json() for r in rs if r.status_code == 201)
    assert first["status"] == "reserved" and first["unit_price"] == 29900
    assert first["shown"] == {
        "name": "제주 감귤 5kg",
        "price": 29900,
        "list_price": 39900,
        "deal": None,
    }


async def test_per_buyer_limit_holds_under_concurrency(server: RunningServer) -> None:
    bid, _ = await _shop(server, stock=1000, per_buyer_limit=2)
    buyer = await server.token(bid, "viewer", "욕심쟁이")
    rs = await asyncio.gather(*(_order(server.http, bid, buyer) for _ in range(20)))
    codes = sorted(r.status_code for r in rs)
    assert codes.count(201) == 2 and codes.count(422) == 18
    assert {r.json()["code"] for r in rs if r.status_code == 422} == {"limit_exceeded"}
    assert await _stock(server, bid) == 998


async def test_retries_with_one_key_make_one_order(server: RunningServer) -> None:
    bid, host = await _shop(server)
    buyer = await server.token(bid, "viewer", "v")
    rs = await asyncio.gather(
        *(_order(server.http, bid, buyer, key="tap-1", qty=2) for _ in range(20))
    )
    assert {r.status_code for r in rs} == {201}
    assert len({r.json()["id"] for r in rs}) == 1
    assert await _stock(server, bid) == 98
    again = await _order(server.http, bid, buyer, key="tap-1", qty=3)
    assert again.status_code == 422 and again.json()["code"] == "idempotency_key_reused"
    # another buyer's same key is their own
    other = await server.token(bid, "viewer", "w")
    assert (await _order(server.http, bid, other, key="tap-1", qty=2)).status_code == 201
    orders = (await server.http.get(f"/api/broadcasts/{bid}/orders", headers=bearer(host))).json()
    assert len(orders["orders"]) == 2


async def test_expiry_returns_stock_once_with_two_sweepers(server: RunningServer) -> None:
    bid, _ = await _shop(server, stock=10)
    buyer = await server.token(bid, "viewer", "v")
    ids = [(await _order(server.http, bid, buyer, qty=2)).json()["id"] for _ in range(3)]
    assert await _stock(server, bid) == 4
    app = server.ctx
    rows = [await app.orders.get(oid) or {} for oid in ids]
    later = max(int(row["expires_at"]) for row in rows)
    a, b = Sweeper(app.redis, app.orders), Sweeper(app.redis, app.orders)
    n = await asyncio.gather(
        *(s.sweep_once(now_ms=int(later) + 1, bids=[bid]) for s in (a, b, a, b))
    )
    assert sum(n) == 3  # each hold expired exactly once across the sweepers
    assert await _stock(server, bid) == 10
    for oid in ids:
        r = await server.http.post(f"/api/orders/{oid}/confirm", headers=bearer(buyer))
        assert r.status_code == 409 and r.json()["code"] == "bad_order_state"
    assert await _stock(server, bid) == 10


async def test_confirm_after_the_hold_ran_out_is_409_and_returns_stock(
    server: RunningServer,
) -> None:
    bid, _ = await _shop(server, stock=5)
    buyer = await server.token(bid, "viewer", "늦은 구매자")
    app = server.ctx
    c = app.signer.verify(buyer)
    # a reservation made an hour ago (its hold long over, not yet swept)
    status, rest = await app.orders.reserve(
        bid, product_id="p1", qty=1, option=None, buyer_id=c.user_id, buyer_name=c.name,
        idempotency_key="old", now_ms=int(__import__("time").time() * 1000) - 3_600_000,
    )  # fmt: skip
    assert status == "ok"
    oid = __import__("json").loads(rest[0])["id"]
    assert await _stock(server, bid) == 4
    r = await server.http.post(f"/api/orders/{oid}/confirm", headers=bearer(buyer))
    assert r.status_code == 409 and r.json()["code"] == "order_expired"
    assert await _stock(server, bid) == 5
    r = await server.http.get(f"/api/orders/{oid}", headers=bearer(buyer))
    assert r.json()["status"] == "expired"


async def test_confirm_and_cancel(server: RunningServer) -> None:
    bid, host = await _shop(server, stock=3)
    buyer = await server.token(bid, "viewer", "v")
    stranger = await server.token(bid, "viewer", "s")
    o1 = (await _order(server.http, bid, buyer)).json()["id"]
    o2 = (await _order(server.http, bid, buyer)).json()["id"]
    assert (
        await server.http.post(f"/api/orders/{o1}/confirm", headers=bearer(stranger))
    ).status_code == 403
    r = await server.http.post(f"/api/orders/{o1}/confirm", headers=bearer(buyer))
    assert r.status_code == 200 and r.json()["status"] == "paid"
    r = await server.http.post(f"/api/orders/{o1}/confirm", headers=bearer(buyer))
    assert r.status_code == 200  # confirming twice is harmless
    assert (
        await server.http.post(f"/api/orders/{o1}/cancel", headers=bearer(buyer))
    ).status_code == 409
    r = await server.http.post(f"/api/orders/{o2}/cancel", headers=bearer(host))
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    r = await server.http.post(f"/api/orders/{o2}/cancel", headers=bearer(buyer))
    assert r.status_code == 200  # cancelling twice returns stock once
    assert await _stock(server, bid) == 2


async def test_first_paid_first_served_takes_stock_at_confirm(server: RunningServer) -> None:
    bid, _ = await _shop(server, stock=1, mode="fpfs")
    a = await server.token(bid, "viewer", "a")
    b = await server.token(bid, "viewer", "b")
    oa = (await _order(server.http, bid, a)).json()["id"]
    ob = (await _order(server.http, bid, b)).json()["id"]
    assert await _stock(server, bid) == 1  # nothing held
    assert (
        await server.http.post(f"/api/orders/{ob}/confirm", headers=bearer(b))
    ).status_code == 200
    assert await _stock(server, bid) == 0
    r = await server.http.post(f"/api/orders/{oa}/confirm", headers=bearer(a))
    assert r.status_code == 409 and r.json()["code"] == "sold_out"


async def test_pinned_deal_price_and_deal_end(server: RunningServer) -> None:
    import time

    bid, host = await _shop(server, stock=10)
    ends = int(time.time() * 1000) + 60_000
    r = await server.http.post(
        f"/api/broadcasts/{bid}/pin",
        json={"product_id": "p1", "deal_price": 19900, "deal_ends_at": ends},
        headers=bearer(host),
    )
    assert r.status_code == 200
    assert (await server.http.get(f"/api/broadcasts/{bid}")).json()["pinned"]["deal_price"] == 19900
    buyer = await server.token(bid, "viewer", "v")
    o = (await _order(server.http, bid, buyer)).json()
    assert o["unit_price"] == 19900
    assert o["shown"]["deal"] == {"price": 19900, "ends_at": ends}
    assert o["shown"]["list_price"] == 39900
    # the deal ends
    app = server.ctx
    c = app.signer.verify(buyer)
    status, _ = await app.orders.reserve(
        bid, product_id="p1", qty=1, option=None, buyer_id=c.user_id, buyer_name=c.name,
        idempotency_key="late", now_ms=ends + 1,
    )  # fmt: skip
    assert status == "deal_ended"


async def test_options_have_their_own_stock(server: RunningServer) -> None:
    b = await server.create_broadcast()
    bid, host = b["id"], b["host_token"]
    options = [{"id": "S", "name": "스몰", "stock": 1}, {"id": "M", "name": "미디엄", "stock": 5}]
    body = {"name": "니트 티셔츠", "price": 19000, "options": options}
    assert (
        await server.http.put(f"/api/broadcasts/{bid}/products/p1", json=body, headers=bearer(host))
    ).status_code == 201
    buyer = await server.token(bid, "viewer", "v")
    assert (await _order(server.http, bid, buyer, option="S")).status_code == 201
    r = await _order(server.http, bid, buyer, option="S")
    assert r.status_code == 409 and r.json()["left"] == 0
    assert (await _order(server.http, bid, buyer, option="M", qty=5)).status_code == 201
    r = await _order(server.http, bid, buyer)
    assert r.status_code == 400 and r.json()["code"] == "option_required"
    r = await _order(server.http, bid, buyer, option="XL")
    assert r.status_code == 400 and r.json()["code"] == "unknown_option"
    products = (await server.http.get(f"/api/broadcasts/{bid}/products")).json()["products"]
    assert products[0]["stock"] == 0
    assert {o["id"]: o["stock"] for o in products[0]["options"]} == {"S": 0, "M": 0}


async def test_csv_export_round_trips_korean(server: RunningServer) -> None:
    bid, host = await _shop(server)
    for name in ("김민지", "이서준", "박=HYPERLINK"):
        await _order(server.http, bid, await server.token(bid, "viewer", name))
    r = await server.http.get(f"/api/broadcasts/{bid}/orders?format=csv", headers=bearer(host))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.content.startswith(b"\xef\xbb\xbf")  # BOM: Excel reads UTF-8
    table = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert table[0][0] == "주문번호 order_id"
    assert sorted(row[12] for row in table[1:]) == ["김민지", "박=HYPERLINK", "이서준"]
    assert {row[4] for row in table[1:]} == {"제주 감귤 5kg"}
    r = await server.http.get(f"/api/broadcasts/{bid}/orders", headers=bearer(host))
    assert {o["buyer"]["name"] for o in r.json()["orders"]} == {"김민지", "이서준", "박=HYPERLINK"}


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        ({"product_id": "p1", "qty": 0}, {}, 400, "bad_qty"),
        ({"product_id": "p1", "qty": -3}, {}, 400, "bad_qty"),
        ({"product_id": "p1", "qty": 1.5}, {}, 400, "bad_qty"),
        ({"product_id": "p1", "qty": True}, {}, 400, "bad_qty"),
        ({"product_id": "nope", "qty": 1}, {}, 404, "unknown_product"),
        ({"product_id": "p1", "qty": 1}, {"Idempotency-Key": ""}, 400, "missing_idempotency_key"),
        ({"product_id": "p1", "qty": 1, "pad": "x" * 20000}, {}, 413, "too_large"),
    ],
)
async def test_bad_orders_write_nothing(
    server: RunningServer, body: dict[str, Any], headers: dict[str, str], status: int, code: str
) -> None:
    bid, host = await _shop(server, stock=7)
    buyer = await server.token(bid, "viewer", "v")
    h = bearer(buyer) | {"Idempotency-Key": "k-bad"} | headers
    r = await server.http.post(f"/api/broadcasts/{bid}/orders", json=body, headers=h)
    assert r.status_code == status and r.json()["code"] == code
    assert r.headers["content-type"].startswith("application/problem+json")
    assert await _stock(server, bid) == 7
    orders = (await server.http.get(f"/api/broadcasts/{bid}/orders", headers=bearer(host))).json()
    assert orders["orders"] == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"name": "x", "price": "29900", "stock": 1}, "bad_price"),
        ({"name": "x", "price": 29900.5, "stock": 1}, "bad_price"),
        ({"name": "x", "price": -1, "stock": 1}, "bad_price"),
        ({"name": "x", "price": 100, "list_price": 50, "stock": 1}, "bad_list_price"),
        ({"name": "", "price": 100, "stock": 1}, "bad_name"),
        ({"name": "x", "price": 100, "stock": -1}, "bad_stock"),
        ({"name": "x", "price": 100, "stock": 1, "mode": "auction"}, "bad_mode"),
    ],
)
async def test_bad_products_are_refused(
    server: RunningServer, body: dict[str, Any], code: str
) -> None:
    b = await server.create_broadcast()
    r = await server.http.put(
        f"/api/broadcasts/{b['id']}/products/p1", json=body, headers=bearer(b["host_token"])
    )
    assert r.status_code == 400 and r.json()["code"] == code
    assert (await server.http.get(f"/api/broadcasts/{b['id']}/products")).json()["products"] == []


async def test_roles_for_catalog_and_orders(server: RunningServer) -> None:
    bid, host = await _shop(server)
    viewer = await server.token(bid, "viewer", "v")
    r = await server.http.put(
        f"/api/broadcasts/{bid}/products/p2",
        json={"name": "x", "price": 1, "stock": 1},
        headers=bearer(viewer),
    )
    assert r.status_code == 403
    assert (
        await server.http.get(f"/api/broadcasts/{bid}/orders", headers=bearer(viewer))
    ).status_code == 403
    assert (
        await server.http.post(
            f"/api/broadcasts/{bid}/pin", json={"product_id": "p1"}, headers=bearer(viewer)
        )
    ).status_code == 403
    assert (await _order(server.http, bid, host)).status_code == 403  # the host does not buy
    assert (
        await server.http.post(f"/api/broadcasts/{bid}/orders", json={"product_id": "p1", "qty": 1})
    ).status_code == 401


async def test_chat_to_order_needs_the_buyers_confirm(server: RunningServer) -> None:
    from .chat_client import ChatClient

    bid, host = await _shop(server, stock=10, keyword="A1")
    await server.http.post(
        f"/api/broadcasts/{bid}/pin", json={"product_id": "p1"}, headers=bearer(host)
    )
    buyer = await server.token(bid, "viewer", "김민지")
    other = await server.token(bid, "viewer", "이서준")
    b = await ChatClient.open(server.base_url, bid, buyer)
    o = await ChatClient.open(server.base_url, bid, other)
    await b.send(type="chat", text="구매 2")
    pending = await b.wait_for("order_pending")
    order = pending["order"]
    assert order["qty"] == 2 and order["status"] == "reserved" and order["product_id"] == "p1"
    await b.send(type="chat", text="#a1 1")
    await b.wait(lambda c: len(c.of("order_pending")) == 2)
    # the line is chat for everyone; the order is private
    await o.wait_for("chat", lambda e: e["text"] == "#a1 1")
    assert not o.of("order_pending")
    assert await _stock(server, bid) == 7
    r = await server.http.get(f"/api/orders/{order['id']}", headers=bearer(buyer))
    assert r.json()["status"] == "reserved"  # nothing bought until the tap
    r = await server.http.post(f"/api/orders/{order['id']}/confirm", headers=bearer(buyer))
    assert r.status_code == 200 and r.json()["status"] == "paid"
    await asyncio.gather(b.aclose(), o.aclose())


async def test_signed_payment_callback(server: RunningServer) -> None:
    import time

    from commerce.payments import sign

    bid, _ = await _shop(server, stock=5)
    buyer = await server.token(bid, "viewer", "v")
    paid = (await _order(server.http, bid, buyer, qty=2)).json()["id"]
    failed = (await _order(server.http, bid, buyer, qty=1)).json()["id"]
    assert (await server.http.get(f"/api/orders/{paid}", headers=bearer(buyer))).json()["payment"][
        "provider"
    ] == "test"
    secret = server.ctx.settings.payment_secret

    async def post(
        doc: dict[str, Any], ts: int | None = None, key: str | None = None
    ) -> httpx.Response:
        body = json.dumps(doc).encode()
        ts = int(time.time()) if ts is None else ts
        return await server.http.post(
            "/api/payments/callback",
            content=body,
            headers={"Content-Type": "application/json", "Jangteo-Timestamp": str(ts),
                     "Jangteo-Signature": sign(key or secret, ts, body)},
        )  # fmt: skip

    ok = {"order_id": paid, "payment_id": "pay-1", "status": "paid", "amount": 2 * 29900}
    assert (await post(ok, key="wrong-secret")).status_code == 401
    assert (await post(ok, ts=int(time.time()) - 3600)).json()["code"] == "stale_callback"
    r = await post(ok)
    assert r.status_code == 200 and r.json()["status"] == "paid"
    again = await post(ok)  # a replay changes nothing
    assert again.status_code == 200 and again.json()["replayed"] is True
    r = await post({"order_id": failed, "payment_id": "pay-2", "status": "failed"})
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert await _stock(server, bid) == 3  # 2 paid, the failed one's unit back on sale
    unsigned = await server.http.post("/api/payments/callback", json=ok)
    assert unsigned.status_code == 401


async def test_order_route_answers_browsers_and_bad_content_types(server: RunningServer) -> None:
    bid, _ = await _shop(server)
    buyer = await server.token(bid, "viewer", "v")
    h = bearer(buyer) | {"Idempotency-Key": "cors-1", "Origin": "https://shop.example"}
    r = await server.http.post(
        f"/api/broadcasts/{bid}/orders", json={"product_id": "p1", "qty": 1}, headers=h
    )
    assert r.status_code == 201
    assert r.headers["access-control-allow-origin"] == "*"
    assert "Location" in r.headers["access-control-expose-headers"]
    r = await server.http.post(
        f"/api/broadcasts/{bid}/orders",
        content=b"product_id=p1",
        headers=h | {"Idempotency-Key": "f"},
    )
    assert r.status_code == 415
    assert r.headers["content-type"].startswith("application/problem+json")
    assert await _stock(server, bid) == 99


async def test_orders_come_in_pages_in_the_order_placed(server: RunningServer) -> None:
    bid, host = await _shop(server)
    buyer = await server.token(bid, "viewer", "구매자")
    for _ in range(5):
        r = await _order(server.http, bid, buyer)
        assert r.status_code == 201, r.text
    url = f"/api/broadcasts/{bid}/orders"
    everything = [
        o["id"] for o in (await server.http.get(url, headers=bearer(host))).json()["orders"]
    ]
    assert len(everything) == 5
    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        params = {"limit": "2"} | ({"after": after} if after else {})
        doc = (await server.http.get(url, params=params, headers=bearer(host))).json()
        seen += [o["id"] for o in doc["orders"]]
        pages += 1
        after = doc["next"]
        if after is None:
            break
    assert seen == everything and pages == 3
    for params in ({"limit": "0"}, {"limit": "x"}, {"after": "nope"}):
        r = await server.http.get(url, params=params, headers=bearer(host))
        assert r.status_code == 400 and r.headers["content-type"].startswith("application/problem")


async def test_the_replay_sells_after_the_show_at_the_products_own_price(
    server: RunningServer,
) -> None:
    import time

    bid, host = await _shop(server, stock=10)
    ends = int(time.time() * 1000) + 600_000
    deal = {"product_id": "p1", "deal_price": 19900, "deal_ends_at": ends}
    assert (await server.http.post(f"/api/broadcasts/{bid}/pin", json=deal,
                                   headers=bearer(host))).status_code == 200  # fmt: skip
    buyer = await server.token(bid, "viewer", "다시보기")
    # during the show, from the replay (watching from the start): no deal there
    o = (await _order(server.http, bid, buyer, via="replay")).json()
    assert o["unit_price"] == 29900 and o["shown"]["deal"] is None
    assert o["shown"]["via"] == "replay"
    assert (await server.http.post(f"/api/broadcasts/{bid}/end", headers=bearer(host))).is_success
    r = await _order(server.http, bid, buyer)
    assert r.status_code == 409 and r.json()["code"] == "broadcast_ended"
    r = await _order(server.http, bid, buyer, via="replay")
    assert r.status_code == 201, r.text
    assert r.json()["unit_price"] == 29900 and r.json()["shown"]["via"] == "replay"
    assert await _stock(server, bid) == 8
    r = await _order(server.http, bid, buyer, via="tv")
    assert r.status_code == 400 and r.json()["code"] == "bad_via"
    orders = (await server.http.get(f"/api/broadcasts/{bid}/orders", headers=bearer(host))).json()
    assert [x["shown"].get("via") for x in orders["orders"]] == ["replay", "replay"]
