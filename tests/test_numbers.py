"""The merchant's numbers on a real redis-server: the counts follow the orders and chat actually
made (cancelled and expired orders are not sales), a timeline point per 10 s, the report as JSON
and as CSV that keeps Korean, and who may read them."""

from __future__ import annotations

import csv
import io
import itertools
import json
import time
from typing import Any

import httpx
import pytest

from commerce.stats import StatsSampler
from jangteo.testkit.server import RunningServer, bearer

from .chat_client import ChatClient

pytestmark = pytest.mark.timeout(60)
_keys = itertools.count()


async def _show(server: RunningServer) -> tuple[str, str]:
    b = await server.create_broadcast("동문시장 라이브")
    bid, host = b["id"], b["host_token"]
    for pid, name, price in (("p1", "한라봉 3kg", 29900), ("p2", "감귤 녹차", 12000)):
        r = await server.http.put(f"/api/broadcasts/{bid}/products/{pid}", headers=bearer(host),
                                  json={"name": name, "price": price, "stock": 100})  # fmt: skip
        assert r.status_code == 201, r.text
    await server.ctx.store.ensure_live(bid)
    return bid, host


async def _order(http: httpx.AsyncClient, bid: str, token: str, pid: str, qty: int) -> str:
    r = await http.post(f"/api/broadcasts/{bid}/orders", json={"product_id": pid, "qty": qty},
                        headers=bearer(token) | {"Idempotency-Key": f"k{next(_keys)}"})  # fmt: skip
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _stats(server: RunningServer, bid: str, host: str) -> dict[str, Any]:
    r = await server.http.get(f"/api/broadcasts/{bid}/stats", headers=bearer(host))
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


async def test_counts_follow_what_happened(server: RunningServer) -> None:
    bid, host = await _show(server)
    buyers = [await server.token(bid, "viewer", f"손님{i}") for i in range(4)]
    http = server.http
    # p1: 3 orders (qty 1, 2, 1) of which one is paid, one cancelled, one expires; p2: 2 orders
    a = await _order(http, bid, buyers[0], "p1", 1)
    b = await _order(http, bid, buyers[1], "p1", 2)
    c = await _order(http, bid, buyers[2], "p1", 1)
    await _order(http, bid, buyers[3], "p2", 3)
    e = await _order(http, bid, buyers[0], "p2", 1)
    assert (await http.post(f"/api/orders/{a}/confirm", headers=bearer(buyers[0]))).is_success
    assert (await http.post(f"/api/orders/{b}/cancel", headers=bearer(buyers[1]))).is_success
    assert (await http.post(f"/api/orders/{e}/confirm", headers=bearer(buyers[0]))).is_success
    later = int(time.time() * 1000) + 3_600_000
    status, _ = await server.ctx.orders.move(c, "expired", sweeping=True, now_ms=later)
    assert status == "ok"
    # a cancelled order cannot be cancelled into the numbers twice
    assert (await http.post(f"/api/orders/{b}/cancel", headers=bearer(buyers[1]))).is_success

    # chat: two viewers join (one twice), three lines, hearts
    v1 = await ChatClient.open(server.base_url, bid, buyers[0])
    v2 = await ChatClient.open(server.base_url, bid, buyers[1])
    v1b = await ChatClient.open(server.base_url, bid, buyers[0])
    lines = ("안녕하세요", "한라봉 달아요?", "감사합니다")
    for text in lines:
        await v1.send(type="chat", text=text)
    await v2.wait(lambda c: [ev["text"] for ev in c.of("chat")] == list(lines))
    await v2.send(type="heart", count=4)
    await v1.wait_for("hearts", lambda ev: ev["total"] == 4)

    doc = await _stats(server, bid, host)
    # sales: a (1 × 29,900 paid), the expired and cancelled ones out; p2: 3 + 1 units of 12,000
    assert (doc["orders"], doc["units"], doc["gmv"]) == (3, 5, 29900 + 4 * 12000)
    assert (doc["paid_orders"], doc["paid_units"], doc["paid_gmv"]) == (2, 2, 29900 + 12000)
    assert (doc["cancelled"], doc["expired"]) == (1, 1)
    by = {p["product_id"]: p for p in doc["per_product"]}
    assert by["p1"] == {"product_id": "p1", "name": "한라봉 3kg", "orders": 1, "units": 1,
                        "gmv": 29900}  # fmt: skip
    assert (by["p2"]["orders"], by["p2"]["units"], by["p2"]["gmv"]) == (2, 4, 48000)
    assert doc["chat_messages"] == 3
    assert doc["hearts"] == 4
    assert doc["viewers_unique"] == 2  # the same viewer twice is one
    assert doc["conversion"] == round(3 / 2, 4)
    for client in (v1, v2, v1b):
        await client.aclose()


async def test_a_timeline_point_every_ten_seconds(server: RunningServer) -> None:
    bid, host = await _show(server)
    viewer = await server.token(bid, "viewer", "손님")
    sampler = StatsSampler(server.ctx.redis)  # the app runs one too; these times are its own
    t0 = (int(time.time() * 1000) // 10_000) * 10_000 - 60_000
    store = server.ctx.chat_store
    for i, viewers in enumerate((3, 5, 8, 6, 2, 7)):
        await store.report_presence(bid, "test-process", viewers, fresh_s=1000)
        if i in (2, 4):
            await _order(server.http, bid, viewer, "p2", 1)
        assert await sampler.sample_once(now_ms=t0 + i * 10_000 + 123, bids=[bid]) == 1
        # a second process sampling the same 10 s adds nothing
        await StatsSampler(server.ctx.redis).sample_once(now_ms=t0 + i * 10_000 + 9_000,
                                                         bids=[bid])  # fmt: skip
    doc = await _stats(server, bid, host)
    ours = [p for p in doc["timeline"] if t0 <= p["t"] < t0 + 60_000]
    assert [p["t"] - t0 for p in ours] == [0, 10_000, 20_000, 30_000, 40_000, 50_000]
    assert [p["viewers"] for p in ours] == [3, 5, 8, 6, 2, 7]
    assert [p["orders"] for p in ours] == [0, 0, 1, 1, 2, 2]
    assert [p["gmv"] for p in ours] == [0, 0, 12000, 12000, 24000, 24000]
    assert doc["viewers_peak"] >= 8 and doc["viewers"] == 7

    # an ended show gets no more points
    r = await server.http.post(f"/api/broadcasts/{bid}/end", headers=bearer(host))
    assert r.status_code == 200, r.text
    assert await sampler.sample_once(now_ms=t0 + 60_000, bids=[bid]) == 0


async def test_the_report_as_json_and_as_csv_that_keeps_korean(server: RunningServer) -> None:
    bid, host = await _show(server)
    buyer = await server.token(bid, "viewer", "손님")
    for pid in ("p1", "p2"):
        r = await server.http.post(f"/api/broadcasts/{bid}/pin", headers=bearer(host),
                                   json={"product_id": pid})  # fmt: skip
        assert r.status_code == 200, r.text
        await _order(server.http, bid, buyer, pid, 2)
    r = await server.http.get(f"/api/broadcasts/{bid}/report", headers=bearer(host))
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["broadcast"]["title"] == "동문시장 라이브"
    assert [(p["product_id"], p["orders"], p["units"]) for p in doc["pins"]] == [
        ("p1", 1, 2), ("p2", 1, 2)
    ]  # fmt: skip
    assert sum(m["orders"] for m in doc["orders_per_minute"]) == 2
    assert sum(m["gmv"] for m in doc["orders_per_minute"]) == doc["gmv"] == 2 * (29900 + 12000)

    r = await server.http.get(f"/api/broadcasts/{bid}/report?format=csv", headers=bearer(host))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.content.startswith(b"\xef\xbb\xbf")  # the BOM: Excel reads UTF-8
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0] == ["방송 broadcast", bid, "동문시장 라이브"]
    products = rows[rows.index(["상품ID product_id", "상품명 product", "주문 orders",
                                "수량 units", "매출 gmv (KRW)"]) + 1:]  # fmt: skip
    assert ["p1", "한라봉 3kg", "1", "2", "59800"] in products
    assert ["p2", "감귤 녹차", "1", "2", "24000"] in products
    summary = dict(row for row in rows[1:13])
    assert summary["매출 gmv (KRW)"] == str(doc["gmv"])

    page = await server.http.get(f"/api/broadcasts/{bid}/report?format=html&token={host}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    data = page.text.split('id="report-data">', 1)[1].split("</script>", 1)[0]
    assert json.loads(data)["gmv"] == doc["gmv"]


async def test_only_the_host_reads_the_numbers(server: RunningServer) -> None:
    bid, host = await _show(server)
    viewer = await server.token(bid, "viewer", "손님")
    for path in ("stats", "report"):
        url = f"/api/broadcasts/{bid}/{path}"
        assert (await server.http.get(url)).status_code == 401
        assert (await server.http.get(url, headers=bearer(viewer))).status_code == 403
        assert (await server.http.get(url, headers=server.admin())).status_code == 200
    # ?token= only where a page is opened from a link, and only a host's
    assert (await server.http.get(f"/api/broadcasts/{bid}/stats?token={host}")).status_code == 401
    r = await server.http.get(f"/api/broadcasts/{bid}/report?format=html&token={viewer}")
    assert r.status_code == 403
    r = await server.http.get(f"/api/broadcasts/{bid}/report?format=pdf", headers=bearer(host))
    assert r.status_code == 400 and r.json()["code"] == "bad_format"
    assert r.headers["content-type"] == "application/problem+json"
