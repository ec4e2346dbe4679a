"""Per-person rules that fresh tokens used to bypass, and orders that used to be free to farm,
each reproduced as it was found (real server, real Redis)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from commerce.orders import KEPT_UNPAID
from commerce.payments import sign
from commerce.sweeper import Sweeper
from conftest import make_settings
from core.config import ConfigError
from jangteo.cli import check_serve
from jangteo.testkit.server import RunningServer, bearer, running_server

from .chat_client import ChatClient
from .test_api import assert_problem

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def shop(redis_url: str) -> AsyncIterator[RunningServer]:
    """Production rules: real payments only, 20 open orders per address, guests minted at 20 a
    minute per address."""
    settings = make_settings(redis_url, payment_provider="external", open_orders_per_address=20)
    async with running_server(settings) as s:
        yield s


async def _guest(server: RunningServer, bid: str, key: str | None = None,
                 http: httpx.AsyncClient | None = None) -> httpx.Response:  # fmt: skip
    body: dict[str, Any] = {"role": "viewer", "name": "손님"} | ({"guest": key} if key else {})
    return await (http or server.http).post(f"{server.base_url}/api/broadcasts/{bid}/tokens",
                                            json=body)  # fmt: skip


async def _product(server: RunningServer, host: str, bid: str, **kw: Any) -> None:
    body = {"name": "한정 특가 김치", "price": 19900, "stock": 50} | kw
    r = await server.http.put(f"/api/broadcasts/{bid}/products/p1", json=body,
                              headers=bearer(host))  # fmt: skip
    assert r.status_code == 201, r.text


async def _order(server: RunningServer, bid: str, token: str, key: str,
                 http: httpx.AsyncClient | None = None, **kw: Any) -> httpx.Response:  # fmt: skip
    return await (http or server.http).post(
        f"{server.base_url}/api/broadcasts/{bid}/orders",
        json={"product_id": "p1", "qty": 1} | kw,
        headers=bearer(token) | {"Idempotency-Key": key},
    )


def _elsewhere() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2"))


# -- H1: guests ----------------------------------------------------------------------------------


async def test_a_banned_guest_with_a_fresh_token_is_still_banned(shop: RunningServer) -> None:
    """As found: a banned user came straight back with a new guest token."""
    b = await shop.create_broadcast()
    bid = b["id"]
    first = (await _guest(shop, bid)).json()
    assert first["user_id"].startswith("g_") and first["guest"]
    r = await shop.http.post(f"/api/broadcasts/{bid}/bans", json={"user_id": first["user_id"]},
                             headers=bearer(b["host_token"]))  # fmt: skip
    assert r.status_code == 201
    again = (await _guest(shop, bid, first["guest"])).json()  # what the page does: keeps its key
    assert again["user_id"] == first["user_id"]
    c = await ChatClient.open(shop.base_url, bid, again["token"])
    await c.send(type="chat", text="다시 왔지롱")
    err = await c.wait_for("error")
    assert err["code"] == "banned"
    await c.aclose()


async def test_new_guest_identities_are_rate_limited_per_address(shop: RunningServer) -> None:
    """As found: 1,000 guest tokens in a row, each a new person to the rules."""
    b = await shop.create_broadcast()
    bid = b["id"]
    answers = [await _guest(shop, bid) for _ in range(40)]
    minted = [r for r in answers if r.status_code == 201]
    assert len(minted) == shop.settings.guest_identities_per_min == 20
    refused = answers[-1]
    assert_problem(refused, 429, "too_many_guests")
    assert int(refused.headers["retry-after"]) >= 1
    # a kept key still gets tokens; another address still gets a new identity
    assert (await _guest(shop, bid, minted[0].json()["guest"])).status_code == 201
    async with _elsewhere() as other:
        assert (await _guest(shop, bid, http=other)).status_code == 201
    # a forged key is not a way around it
    assert_problem(await _guest(shop, bid, minted[0].json()["guest"] + "x"), 429, "too_many_guests")


@pytest.mark.parametrize("name", ["호스트", "관리자", "[공지] 당첨", "Jangteo official",
                                  "\u202eevil", "zero\u200bwidth", "a\x07b"])  # fmt: skip
async def test_guests_cannot_take_names_that_look_like_staff_or_hide_text(
    shop: RunningServer, name: str
) -> None:
    b = await shop.create_broadcast()
    r = await shop.http.post(f"/api/broadcasts/{b['id']}/tokens",
                             json={"role": "viewer", "name": name})  # fmt: skip
    assert r.status_code in (400, 422), r.text
    assert r.json()["code"] in ("bad_name", "reserved_name")


# -- H2: holds -----------------------------------------------------------------------------------


async def test_fifty_fresh_tokens_cannot_hold_a_fifty_unit_flash_sale(shop: RunningServer) -> None:
    """As found: one client bought out a 50-unit sale (limit 1) with 50 fresh tokens in 1.1 s,
    and real buyers then saw sold_out for the whole 600 s hold."""
    b = await shop.create_broadcast()
    bid, host = b["id"], b["host_token"]
    await _product(shop, host, bid, per_buyer_limit=1)
    r = await shop.http.post(f"/api/broadcasts/{bid}/pin", headers=bearer(host),
                             json={"product_id": "p1", "deal_price": 9900,
                                   "deal_ends_at": int(time.time() * 1000) + 600_000})  # fmt: skip
    assert r.status_code == 200
    tokens = [r.json()["token"] for r in [await _guest(shop, bid) for _ in range(50)]
              if r.status_code == 201]  # fmt: skip
    assert len(tokens) == 20, "the rest were refused new identities"
    held = await asyncio.gather(*(_order(shop, bid, t, f"k{i}") for i, t in enumerate(tokens)))
    ok = [r.json() for r in held if r.status_code == 201]
    assert len(ok) <= shop.settings.open_orders_per_address
    for r in held:
        if r.status_code != 201:
            assert_problem(r, 429, "too_many_open_orders")
    for o in ok:  # a flash sale holds for minutes, not ten
        assert o["expires_at"] - o["created_at"] <= shop.settings.flash_hold_s * 1000
    stock = (await shop.http.get(f"/api/broadcasts/{bid}/products")).json()["products"][0]
    assert stock["stock"] >= 30, "most of the sale is still there for real buyers"
    async with _elsewhere() as other:
        buyer = (await _guest(shop, bid, http=other)).json()["token"]
        assert (await _order(shop, bid, buyer, "real", http=other)).status_code == 201


async def test_strict_flash_sale_is_for_viewers_who_were_there_before(shop: RunningServer) -> None:
    b = await shop.create_broadcast()
    bid, host = b["id"], b["host_token"]
    await _product(shop, host, bid, per_buyer_limit=1)
    early = (await _guest(shop, bid)).json()
    r = await shop.http.post(f"/api/broadcasts/{bid}/pin", headers=bearer(host),
                             json={"product_id": "p1", "deal_price": 9900,
                                   "eligible": "joined_before"})  # fmt: skip
    assert r.status_code == 200, r.text
    late = (await _guest(shop, bid)).json()
    assert_problem(await _order(shop, bid, late["token"], "late"), 403, "not_eligible")
    assert (await _order(shop, bid, early["token"], "early")).status_code == 201
    # the early viewer's kept key makes a fresh token that is still early
    again = (await _guest(shop, bid, early["guest"])).json()
    assert again["user_id"] == early["user_id"]


async def test_an_expired_hold_cannot_be_renewed_at_once(shop: RunningServer) -> None:
    b = await shop.create_broadcast()
    bid, host = b["id"], b["host_token"]
    await _product(shop, host, bid, stock=1)
    buyer = (await _guest(shop, bid)).json()["token"]
    order = (await _order(shop, bid, buyer, "a")).json()
    sweeper = Sweeper(shop.ctx.redis, shop.ctx.orders)
    assert await sweeper.sweep_once(now_ms=order["expires_at"] + 1, bids=[bid]) == 1
    r = await _order(shop, bid, buyer, "b")
    assert_problem(r, 429, "hold_cooldown")
    assert 0 < int(r.headers["retry-after"]) <= shop.settings.hold_cooldown_s
    other = (await _guest(shop, bid)).json()["token"]
    assert (await _order(shop, bid, other, "c")).status_code == 201  # the unit is back on sale


# -- H3: paid means paid -------------------------------------------------------------------------


async def test_a_buyer_cannot_mark_their_own_order_paid(shop: RunningServer) -> None:
    """As found: the buyer's own confirm marked the order paid and the shop got a signed
    order.paid webhook, with no payment at all."""
    b = await shop.create_broadcast()
    bid, host = b["id"], b["host_token"]
    await _product(shop, host, bid)
    buyer = (await _guest(shop, bid)).json()["token"]
    order = (await _order(shop, bid, buyer, "a", qty=2)).json()
    oid = order["id"]
    assert_problem(await shop.http.post(f"/api/orders/{oid}/confirm", headers=bearer(buyer)),
                   403, "payment_required")  # fmt: skip
    got = (await shop.http.get(f"/api/orders/{oid}", headers=bearer(buyer))).json()
    assert got["status"] == "reserved"
    assert got["payment"] == {"provider": "external", "status": "awaiting_payment",
                              "amount": 2 * 19900}  # fmt: skip

    secret = shop.ctx.settings.payment_secret

    async def callback(amount: int, pay_id: str) -> httpx.Response:
        body = json.dumps({"order_id": oid, "payment_id": pay_id, "status": "paid",
                           "amount": amount}).encode()  # fmt: skip
        ts = int(time.time())
        headers = {"Content-Type": "application/json", "Jangteo-Timestamp": str(ts),
                   "Jangteo-Signature": sign(secret, ts, body)}  # fmt: skip
        return await shop.http.post("/api/payments/callback", content=body, headers=headers)

    r = await callback(100, "pay-short")  # signed, but not the order's amount
    assert_problem(r, 422, "amount_mismatch")
    got = (await shop.http.get(f"/api/orders/{oid}", headers=bearer(buyer))).json()
    assert got["status"] == "reserved"
    r = await callback(2 * 19900, "pay-ok")
    assert r.status_code == 200 and r.json()["status"] == "paid"


async def test_the_host_may_mark_an_order_paid_by_hand(shop: RunningServer) -> None:
    b = await shop.create_broadcast()
    bid, host = b["id"], b["host_token"]
    await _product(shop, host, bid)
    buyer = (await _guest(shop, bid)).json()["token"]
    oid = (await _order(shop, bid, buyer, "a")).json()["id"]
    r = await shop.http.post(f"/api/orders/{oid}/confirm", headers=bearer(host))
    assert r.status_code == 200 and r.json()["status"] == "paid"


def test_serve_refuses_test_payments_and_missing_shared_secrets(redis_url: str) -> None:
    real = {"payment_provider": "external", "phone_verifier": "none"}
    with pytest.raises(ConfigError, match="PAYMENT_PROVIDER=test"):
        check_serve(make_settings(redis_url, **real | {"payment_provider": "test"}))
    with pytest.raises(ConfigError, match="PHONE_VERIFIER=test"):
        check_serve(make_settings(redis_url, **real | {"phone_verifier": "test"}))
    with pytest.raises(ConfigError, match="JANGTEO_SECRET"):
        check_serve(make_settings(redis_url, **real, secret=""))
    with pytest.raises(ConfigError, match="JANGTEO_ADMIN_KEY"):
        check_serve(make_settings(redis_url, **real, admin_key=""))
    check_serve(make_settings(redis_url, **real))
    # with the embedded Redis (one process) the secrets may be generated
    check_serve(make_settings(None, **real, secret="", admin_key=""))  # type: ignore[arg-type]


# -- H4: what orders leave behind ----------------------------------------------------------------


async def _keys(server: RunningServer, bid: str) -> list[str]:
    return sorted([k.decode() async for k in server.ctx.redis.scan_iter(match=f"jt:{{{bid}}}:*")])


async def test_reserve_cancel_loops_leave_bounded_keys(shop: RunningServer) -> None:
    """As found: each reserve-then-cancel left ≈3 KB in Redis forever."""
    b = await shop.create_broadcast()
    bid, host = b["id"], b["host_token"]
    await _product(shop, host, bid, stock=1)
    buyer = (await _guest(shop, bid)).json()["token"]
    for i in range(200):
        r = await _order(shop, bid, buyer, f"loop-{i}")
        assert r.status_code == 201, r.text
        oid = r.json()["id"]
        r = await shop.http.post(f"/api/orders/{oid}/cancel", headers=bearer(buyer))
        assert r.json()["status"] == "cancelled"
    keys = await _keys(shop, bid)
    orders = [k for k in keys if ":order:" in k]
    idem = [k for k in keys if ":idem:" in k]
    assert len(orders) == KEPT_UNPAID and len(idem) == KEPT_UNPAID
    assert await shop.ctx.redis.zcard(f"jt:{{{bid}}}:orders") == KEPT_UNPAID
    assert not any(k.endswith(":outbox") for k in keys), "no webhooks configured: no outbox"
    assert len(keys) < KEPT_UNPAID * 2 + 15, keys
    for k in orders:  # and what is kept expires
        assert 0 < await shop.ctx.redis.ttl(k) <= shop.settings.unpaid_retention_s
    stock = (await shop.http.get(f"/api/broadcasts/{bid}/products")).json()["products"][0]
    assert stock["stock"] == 1


async def test_first_paid_mode_cannot_be_flooded_with_reservations(shop: RunningServer) -> None:
    """As found: 200 of 200 reservations were accepted on stock 1 in first-paid mode."""
    b = await shop.create_broadcast()
    bid, host = b["id"], b["host_token"]
    await _product(shop, host, bid, stock=1, mode="fpfs")
    buyers = [await shop.token(bid, "viewer", f"b{i}") for i in range(60)]
    answers = await asyncio.gather(*(_order(shop, bid, t, f"k{i}") for i, t in enumerate(buyers)))
    accepted = [r for r in answers if r.status_code == 201]
    assert len(accepted) <= 20  # the address cap and at most max(3 per unit, 10) racing payers
    assert {r.json()["code"] for r in answers if r.status_code != 201} <= {
        "oversubscribed", "too_many_open_orders"}  # fmt: skip


async def test_a_verified_phone_sale_is_one_buyer_per_phone(shop: RunningServer) -> None:
    """The stricter mode for a real deployment, in its test version: the deal sells only to
    identities with a verified phone, and every device verified with one phone is one buyer."""
    b = await shop.create_broadcast()
    bid, host = b["id"], b["host_token"]
    await _product(shop, host, bid, per_buyer_limit=1)
    pin = {"product_id": "p1", "deal_price": 9900, "eligible": "verified"}
    r = await shop.http.post(f"/api/broadcasts/{bid}/pin", headers=bearer(host), json=pin)
    assert r.status_code == 200, r.text
    phone = "010-1234-5678"

    async def verified_token(guest: str) -> tuple[str, str]:
        r = await shop.http.post("/api/guests/phone", json={"guest": guest, "phone": phone})
        assert r.status_code == 202, r.text
        code = r.json()["code"]  # the test verifier answers it instead of texting it
        wrong = "000000" if code != "000000" else "111111"
        confirm = "/api/guests/phone/confirm"
        bad = await shop.http.post(confirm, json={"guest": guest, "phone": phone, "code": wrong})
        assert_problem(bad, 422, "wrong_code")
        r = await shop.http.post("/api/guests/phone/confirm",
                                 json={"guest": guest, "phone": phone, "code": code})  # fmt: skip
        assert r.status_code == 200, r.text
        doc = (await _guest(shop, bid, r.json()["guest"])).json()
        return doc["token"], doc["user_id"]

    plain = (await _guest(shop, bid)).json()
    r = await _order(shop, bid, plain["token"], "plain")
    assert_problem(r, 403, "not_eligible")
    assert r.json()["needs"] == "verified"
    first, uid1 = await verified_token(plain["guest"])
    assert (await _order(shop, bid, first, "v1")).status_code == 201
    async with _elsewhere() as phone2:  # the same phone on a second device
        other = (await _guest(shop, bid, http=phone2)).json()
    second, uid2 = await verified_token(other["guest"])
    assert uid1 == uid2
    assert_problem(await _order(shop, bid, second, "v2"), 422, "limit_exceeded")
