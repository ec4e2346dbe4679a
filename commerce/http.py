"""Catalog, pin and order routes (contract: ../shared/API.md, Commerce)."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections.abc import Callable
from typing import Any

import cv2
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from core.broadcasts import check_pin_allowed
from core.events import publish
from core.pins import Pin, record_pin
from core.problems import BadRequest, Conflict, Forbidden, NotFound, TooManyRequests
from core.tokens import Claims, Role
from core.web import (
    MAX_JSON,
    admin_or,
    bearer,
    bind,
    claims,
    client_address,
    is_admin,
    json_body,
    parse_json_object,
    read_body,
)

from . import export
from .catalog import check_deal, check_id, deal_of, image_path, validate_product
from .errors import DealEnded, KeyReused, LimitExceeded, OrderConflict, SoldOut
from .orders import bid_of, public_order
from .payments import provider
from .shop import ShopApp

_KEY = re.compile(r"[\x21-\x7e]{1,100}")
MAX_QTY = 99


def _now() -> int:
    return int(time.time() * 1000)


# -- catalog --------------------------------------------------------------------------------------
async def put_product(request: Request, app: ShopApp) -> JSONResponse:
    admin_or(request)
    bid, pid = request.path_params["bid"], request.path_params["pid"]
    await app.store.get(bid)
    product, stock = validate_product(pid, await json_body(request))
    existed = await app.catalog.put(bid, product, stock)
    body = await app.catalog.get(bid, pid)
    await publish(app.redis, bid, {"type": "product", "product": body, "ts": _now()})
    return JSONResponse(body, status_code=200 if existed else 201)


async def list_products(request: Request, app: ShopApp) -> JSONResponse:
    bid = request.path_params["bid"]
    await app.store.get(bid)
    return JSONResponse(
        {"products": await app.catalog.all(bid), "pinned": await app.catalog.pin(bid)}
    )


async def product_image(request: Request, app: ShopApp) -> Response:
    bid, pid = request.path_params["bid"], request.path_params["pid"]
    jpeg = await app.catalog.image(bid, pid)
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "max-age=300"})


async def snapshot_product(request: Request, app: ShopApp) -> JSONResponse:
    """A flash product whose image is the current composed frame (show it, price it, sell)."""
    admin_or(request)
    bid = request.path_params["bid"]
    await app.store.get(bid)
    doc = await json_body(request)
    pid = doc.get("id") or f"flash-{secrets.token_hex(3)}"
    check_id(pid)
    take = app.hub.still(bid)
    jpeg = await asyncio.to_thread(_jpeg, take) if take else None
    if jpeg is None:
        raise Conflict("nothing is live to take a picture of", code="no_picture")
    image = image_path(bid, pid)
    product, stock = validate_product(pid, doc | {"image": image})
    await app.catalog.put_image(bid, pid, jpeg)
    await app.catalog.put(bid, product, stock)
    body = await app.catalog.get(bid, pid)
    await publish(app.redis, bid, {"type": "product", "product": body, "ts": _now()})
    return JSONResponse(body, status_code=201)


def _jpeg(take: Callable[[], Any]) -> bytes | None:
    """The picture ``take`` returns, as a JPEG at most 640 wide (colour conversion, scaling and
    encoding all run here, off the event loop)."""
    picture = take()
    if picture is None:
        return None
    h, w = picture.shape[:2]
    scale = min(1.0, 640 / w)
    small = cv2.resize(picture, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return bytes(buf)


# -- pin ------------------------------------------------------------------------------------------
async def pin(request: Request, app: ShopApp) -> JSONResponse:
    who = admin_or(request, Role.HOST, Role.COHOST)
    bid = request.path_params["bid"]
    await app.store.get(bid)
    await check_pin_allowed(app.redis, bid, who)
    doc = await json_body(request)
    product = await app.catalog.get(bid, check_id(doc.get("product_id")))
    now = _now()
    record = check_deal(product, doc, now)
    await app.catalog.set_pin(bid, record)
    deal = deal_of(record)
    event = {"type": "pin", "product": product | {"deal": deal}, "ts": now}
    await publish(app.redis, bid, event)
    shown = deal["price"] if deal else product["price"]
    await record_pin(app.redis, bid, Pin(now, product["id"], product["name"], int(shown),
                                         product.get("image") or ""))  # fmt: skip
    return JSONResponse(record | {"product": product})


async def unpin(request: Request, app: ShopApp) -> Response:
    who = admin_or(request, Role.HOST, Role.COHOST)
    bid = request.path_params["bid"]
    await check_pin_allowed(app.redis, bid, who)
    await app.catalog.set_pin(bid, None)
    await publish(app.redis, bid, {"type": "pin", "product": None, "ts": _now()})
    return Response(status_code=204)


# -- orders ---------------------------------------------------------------------------------------
_REFUSALS: dict[str, tuple[type[Exception], str]] = {
    "sold_out": (SoldOut, "sold out"),
    "limit_exceeded": (LimitExceeded, "over the per-buyer limit for this product"),
    "deal_ended": (DealEnded, "the deal has ended"),
    "key_reused": (KeyReused, "this Idempotency-Key was used with a different order"),
}


async def place_order(
    app: ShopApp, bid: str, token: str | None, idem: str | None, body: bytes, address: str = ""
) -> tuple[int, dict[str, str], bytes]:
    """Everything an order request does after its body is read: (status, headers, JSON body).

    Shared by the routed handler and the fast path (commerce/fastpath.py); refusals raise
    ``Problem``s.
    """
    c = await app.verifier.claims(token, bid)
    if c.role is Role.HOST:
        raise Forbidden("the host cannot buy from their own broadcast", code="wrong_role")
    if not idem:
        raise BadRequest(
            "send an Idempotency-Key header (one per tap)", code="missing_idempotency_key"
        )
    if not _KEY.fullmatch(idem):
        raise BadRequest(
            "Idempotency-Key: 1-100 visible ASCII characters", code="bad_idempotency_key"
        )
    doc = parse_json_object(body)
    pid = check_id(doc.get("product_id"))
    qty = doc.get("qty")
    if not isinstance(qty, int) or isinstance(qty, bool) or not 1 <= qty <= MAX_QTY:
        raise BadRequest(f"qty must be an integer 1..{MAX_QTY}", code="bad_qty")
    option = doc.get("option")
    if option is not None:
        option = check_id(option, "option")
    via = doc.get("via", "live")
    if via not in ("live", "replay"):
        raise BadRequest("via is live (the default) or replay", code="bad_via")
    shown_in = None
    currency = doc.get("currency")
    if currency is not None and currency != "KRW":
        if not isinstance(currency, str):
            raise BadRequest("currency: an ISO 4217 code, e.g. USD", code="bad_currency")
        rates = app.fx.current()
        rate = rates.rate(currency)
        shown_in = (currency, rate.per_won, rate.decimals, rates.date or "")
    status, rest = await app.orders.reserve(
        bid, product_id=pid, qty=qty, option=option, buyer_id=c.user_id, buyer_name=c.name,
        idempotency_key=idem, address=address, joined_at_ms=c.joined_at,
        verified=c.verified, via=via, shown_in=shown_in,
    )  # fmt: skip
    return _answer(status, rest, pid, option, bid)


_NOT_ELIGIBLE = {
    "joined_before": "this deal is for viewers who were here before it started",
    "verified": "this deal needs a verified phone",
}


def _answer(
    status: str, rest: list[str], pid: str, option: str | None, bid: str
) -> tuple[int, dict[str, str], bytes]:
    """The reserve script's result as an HTTP answer (refusals raise Problems)."""
    if status == "ok":
        return 201, {"Location": f"/api/orders/{_oid(rest[0])}"}, rest[0].encode()
    if status == "replay":
        return 201, {"Idempotent-Replayed": "true"}, rest[0].encode()
    if status in _REFUSALS:
        cls, detail = _REFUSALS[status]
        extra = {"left": int(rest[0])} if rest and status in ("sold_out", "limit_exceeded") else {}
        raise cls(detail, **extra)
    if status == "unknown_product":
        raise NotFound(f"no product {pid!r}", code="unknown_product")
    if status in ("unknown_option", "option_required"):
        raise BadRequest("choose one of the product's options" if status == "option_required"
                         else f"no option {option!r}", code=status)  # fmt: skip
    if status == "unknown_broadcast":
        raise NotFound(f"no broadcast {bid!r}")
    if status == "ended":
        raise Conflict("the broadcast has ended", code="broadcast_ended")
    if status == "cooldown":
        wait = str(max(1, int(rest[0]) // 1000))
        raise TooManyRequests("your hold on this product ran out; you can order it again soon",
                              code="hold_cooldown", headers={"Retry-After": wait})  # fmt: skip
    if status == "too_many_open":
        who = "you have" if rest[0] == "buyer" else "your address has"
        raise TooManyRequests(f"{who} too many unpaid orders: pay or cancel one first",
                              code="too_many_open_orders", limit_of=rest[0])  # fmt: skip
    if status == "oversubscribed":
        raise Conflict(
            "many buyers are paying for the last units; try again in a moment",
            code="oversubscribed", headers={"Retry-After": "10"}, left=int(rest[0]),
        )  # fmt: skip
    if status == "not_eligible":
        detail = _NOT_ELIGIBLE.get(rest[0], "this deal is not open to you")
        raise Forbidden(detail, code="not_eligible", needs=rest[0])
    raise RuntimeError(f"unexpected reserve result {status}")


async def create_order(request: Request, app: ShopApp) -> Response:
    body = await read_body(request, MAX_JSON, ("application/json",))
    status, headers, content = await place_order(
        app,
        request.path_params["bid"],
        bearer(request),
        request.headers.get("idempotency-key"),
        body,
        client_address(request),
    )
    return Response(content, status_code=status, media_type="application/json", headers=headers)


def _oid(answer: str) -> str:
    return str(json.loads(answer)["id"])


async def _order_for(request: Request, app: ShopApp) -> tuple[str, dict[str, str], Claims | None]:
    oid = request.path_params["oid"]
    row = await app.orders.get(oid)
    if row is None:
        raise NotFound(f"no order {oid!r}", code="unknown_order")
    if is_admin(request):
        return oid, row, None
    c = claims(request, bid_of(oid))
    if c.user_id != row["buyer_id"] and c.role is not Role.HOST:
        raise Forbidden("only the buyer or the host may do this", code="not_your_order")
    return oid, row, c


async def get_order(request: Request, app: ShopApp) -> JSONResponse:
    _, row, _ = await _order_for(request, app)
    body = public_order(row)
    if body["status"] == "reserved":
        body["payment"] = provider(app.settings.payment_provider).checkout(body)
    return JSONResponse(body)


async def _move(
    request: Request, app: ShopApp, target: str, oid: str | None = None
) -> JSONResponse:
    if oid is None:
        oid, _, _ = await _order_for(request, app)
    status, state = await app.orders.move(oid, target)
    if status in ("ok", "same"):
        row = await app.orders.get(oid)
        assert row is not None
        return JSONResponse(public_order(row))
    if status == "expired":
        raise OrderConflict("the hold expired; the stock went back on sale", code="order_expired")
    if status == "sold_out":
        raise SoldOut("sold out before payment (first paid, first served)")
    raise OrderConflict(f"the order is {state}; it cannot become {target}", code="bad_order_state")


async def confirm_order(request: Request, app: ShopApp) -> JSONResponse:
    """reserved → paid. With a real payment provider only the signed payment callback pays an
    order; here the host (or the operator) may mark it paid by hand (cash, a bank transfer).
    The buyer's own confirm pays only with the ``test`` provider (demos and tests)."""
    oid, _, c = await _order_for(request, app)
    buyer_only = c is not None and c.role is not Role.HOST
    if buyer_only and app.settings.payment_provider != "test":
        raise Forbidden("pay through the payment page; this order is paid once the payment is",
                        code="payment_required")  # fmt: skip
    return await _move(request, app, "paid", oid)


async def cancel_order(request: Request, app: ShopApp) -> JSONResponse:
    return await _move(request, app, "cancelled")


async def list_orders(request: Request, app: ShopApp) -> Response:
    admin_or(request)
    bid = request.path_params["bid"]
    await app.store.get(bid)
    q = request.query_params
    if q.get("format") == "csv":
        return Response(
            export.to_csv(await app.orders.all(bid)),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="orders-{bid}.csv"'},
        )
    if "limit" not in q and "after" not in q:  # everything (a show's orders, for the studio)
        return JSONResponse({"orders": [public_order(o) for o in await app.orders.all(bid)]})
    try:
        limit = int(q.get("limit", str(PAGE_DEFAULT)))
    except ValueError:
        raise BadRequest("limit must be an integer", code="bad_limit") from None
    if not 1 <= limit <= PAGE_MAX:
        raise BadRequest(f"limit must be 1..{PAGE_MAX}", code="bad_limit")
    try:
        rows, more = await app.orders.page(bid, q.get("after"), limit)
    except KeyError:
        raise BadRequest("after: no such order in this broadcast", code="bad_after") from None
    doc: dict[str, Any] = {"orders": [public_order(o) for o in rows], "next": more}
    return JSONResponse(doc)


PAGE_DEFAULT, PAGE_MAX = 100, 1000


async def exchange_rates(request: Request, app: ShopApp) -> JSONResponse:
    """The rates prices are shown at besides won (``{base, date, source, rates}``; no rates
    configured: ``rates`` is empty)."""
    return JSONResponse(app.fx.current().public(), headers={"Cache-Control": "public, max-age=300"})


def routes(app: Callable[[], ShopApp]) -> list[BaseRoute]:
    return [
        Route("/api/broadcasts/{bid}/products", bind(list_products, app), methods=["GET"]),
        Route(
            "/api/broadcasts/{bid}/products/snapshot", bind(snapshot_product, app), methods=["POST"]
        ),
        Route("/api/broadcasts/{bid}/products/{pid}", bind(put_product, app), methods=["PUT"]),
        Route(
            "/api/broadcasts/{bid}/products/{pid}/image", bind(product_image, app), methods=["GET"]
        ),
        Route("/api/broadcasts/{bid}/pin", bind(pin, app), methods=["POST"]),
        Route("/api/broadcasts/{bid}/pin", bind(unpin, app), methods=["DELETE"]),
        Route("/api/broadcasts/{bid}/orders", bind(create_order, app), methods=["POST"]),
        Route("/api/broadcasts/{bid}/orders", bind(list_orders, app), methods=["GET"]),
        Route("/api/orders/{oid}", bind(get_order, app), methods=["GET"]),
        Route("/api/orders/{oid}/confirm", bind(confirm_order, app), methods=["POST"]),
        Route("/api/orders/{oid}/cancel", bind(cancel_order, app), methods=["POST"]),
        Route("/api/fx", bind(exchange_rates, app), methods=["GET"]),
    ]
