"""Payment: a provider interface, the built-in ``test`` provider, and the signed callback.

A payment provider (PG) tells us the outcome of a payment by calling
``POST /api/payments/callback`` with::

    Jangteo-Timestamp: <unix seconds>
    Jangteo-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>
    {"order_id": "...", "payment_id": "...", "status": "paid" | "failed", "amount": 59800}

We accept it only if the signature matches, the timestamp is within ``REPLAY_WINDOW_S`` of now,
the ``payment_id`` was not seen before (a replayed callback answers 200 and changes nothing) and,
for ``paid``, the ``amount`` (won) is the order's total (else 422 ``amount_mismatch``, nothing
changes).
Real PG adapters implement :class:`Provider` and translate their own callbacks into this one.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from core.keys import key
from core.problems import BadRequest, NotFound, Unauthorized, Unprocessable
from core.web import bind, parse_json_object, read_body

from .errors import OrderConflict
from .orders import bid_of, public_order
from .shop import ShopApp

REPLAY_WINDOW_S = 300
MAX_BODY = 8 * 1024


class Provider(Protocol):
    name: str

    def checkout(self, order: dict[str, Any]) -> dict[str, Any]:
        """What the buyer's page needs to pay for ``order`` (a URL, a widget key…)."""
        ...


class TestProvider:
    """Pays nothing: the checkout is our own confirm endpoint. For demos and tests only: the
    buyer's confirm marks the order paid (`jangteo serve` refuses to start with it)."""

    name = "test"

    def checkout(self, order: dict[str, Any]) -> dict[str, Any]:
        return {"provider": self.name, "confirm_url": f"/api/orders/{order['id']}/confirm"}


class ExternalProvider:
    """A payment provider (PG) outside: the buyer pays there; its signed callback pays the
    order. A real adapter returns its checkout URL or widget key here."""

    name = "external"

    def checkout(self, order: dict[str, Any]) -> dict[str, Any]:
        return {"provider": self.name, "status": "awaiting_payment", "amount": order["total"]}


def provider(name: str) -> Provider:
    return TestProvider() if name == "test" else ExternalProvider()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify(secret: str, timestamp: str | None, signature: str | None, body: bytes,
           now: float | None = None) -> None:  # fmt: skip
    if not timestamp or not signature:
        raise Unauthorized("signed callbacks only", code="unsigned_callback")
    try:
        ts = int(timestamp)
    except ValueError:
        raise Unauthorized("bad timestamp", code="bad_signature") from None
    now = time.time() if now is None else now
    if abs(now - ts) > REPLAY_WINDOW_S:
        raise Unauthorized("timestamp outside the replay window", code="stale_callback")
    expected = sign(secret, ts, body)
    if not any(
        s.isascii() and hmac.compare_digest(expected, s.strip()) for s in signature.split(",")
    ):
        raise Unauthorized("signature does not match", code="bad_signature")


async def callback(request: Request, app: ShopApp) -> JSONResponse:
    body = await read_body(request, MAX_BODY, ("application/json",))
    verify(
        app.settings.payment_secret,
        request.headers.get("jangteo-timestamp"),
        request.headers.get("jangteo-signature"),
        body,
    )
    doc = parse_json_object(body)  # bad_json; too_deep (also past the parser's own stack)
    try:
        oid, pay_id, status = str(doc["order_id"]), str(doc["payment_id"]), doc["status"]
    except KeyError:
        raise BadRequest("order_id, payment_id and status are required", code="bad_json") from None
    if status not in ("paid", "failed") or not 0 < len(pay_id) <= 100:
        raise BadRequest("status must be paid or failed", code="bad_status")
    amount = doc.get("amount")
    if status == "paid" and (not isinstance(amount, int) or isinstance(amount, bool)):
        raise BadRequest("a paid callback carries the amount paid (won)", code="bad_amount")
    row = await app.orders.get(oid)
    if row is None:
        raise NotFound(f"no order {oid!r}", code="unknown_order")
    total = int(row["qty"]) * int(row["unit_price"])
    if status == "paid" and amount != total:
        raise Unprocessable(f"paid {amount}원 for an order of {total}원", code="amount_mismatch",
                            expected=total)  # fmt: skip
    first = await app.redis.set(
        key(bid_of(oid), f"paycb:{pay_id}"), oid, nx=True, ex=REPLAY_WINDOW_S * 4
    )
    if not first:  # the same callback again: answer, change nothing
        return JSONResponse(public_order(row) | {"replayed": True})
    result, state = await app.orders.move(oid, "paid" if status == "paid" else "cancelled")
    if result not in ("ok", "same"):
        raise OrderConflict(f"the order is {state}", code="order_expired" if result == "expired"
                            else "bad_order_state")  # fmt: skip
    fresh = await app.orders.get(oid)
    assert fresh is not None
    return JSONResponse(public_order(fresh))


def routes(app: Callable[[], ShopApp]) -> list[BaseRoute]:
    return [Route("/api/payments/callback", bind(callback, app), methods=["POST"])]
