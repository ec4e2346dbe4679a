"""Chat-to-order: a viewer's chat line like ``구매 2`` (the pinned product) or ``#A1 2`` (the
product with keyword A1) reserves the order and sends that viewer — only them — a private
``order_pending`` event; nothing is bought until they confirm it with one tap (Korean e-commerce
law wants an explicit confirm step)."""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import Protocol

from redis.asyncio import Redis

from core.events import publish
from core.tokens import Claims, Role

from .catalog import KEYWORD, Catalog
from .orders import Orders

_BUY = re.compile(r"^(?:구매|buy)\s*(\d{1,2})?\s*(?:개|ea)?$", re.IGNORECASE)
_TAG = re.compile(rf"^#({KEYWORD})\s*(\d{{1,2}})?\s*(?:개|ea)?$")

_REASONS = {
    "sold_out": "품절되었습니다 · Sold out",
    "limit_exceeded": "1인 구매 한도를 넘었습니다 · Over the per-buyer limit",
    "deal_ended": "특가가 끝났습니다 · The deal has ended",
    "option_required": "옵션을 골라 주문해 주세요 · Choose an option on the product card",
    "too_many_open": "결제하지 않은 주문이 많습니다 · Pay or cancel an open order first",
    "cooldown": "잠시 후 다시 주문해 주세요 · Your hold ran out: try again shortly",
    "not_eligible": "이 특가는 참여 조건이 있습니다 · This deal is not open to you",
    "oversubscribed": "결제 중인 주문이 많습니다 · Many buyers are paying: try again shortly",
}


class OrderDesk(Protocol):
    redis: Redis
    catalog: Catalog
    orders: Orders


def parse(text: str) -> tuple[str | None, int] | None:
    """``(keyword or None for the pinned product, qty)`` if ``text`` is an order command."""
    m = _BUY.match(text.strip())
    if m:
        return None, int(m.group(1) or 1)
    m = _TAG.match(text.strip())
    if m:
        return m.group(1), int(m.group(2) or 1)
    return None


async def try_order(app: OrderDesk, bid: str, claims: Claims, text: str, address: str = "") -> bool:
    """Reserve for a chat order command; True if ``text`` was one (handled either way)."""
    parsed = parse(text)
    if parsed is None or claims.role is Role.HOST:
        return False
    keyword, qty = parsed
    if not 1 <= qty <= 99:
        return False
    pid: str | None = None
    if keyword is None:
        pin = await app.catalog.pin(bid)
        pid = pin["product_id"] if pin else None
    else:
        for product in await app.catalog.all(bid):
            if product.get("keyword") and product["keyword"].casefold() == keyword.casefold():
                pid = product["id"]
                break
    now = int(time.time() * 1000)
    if pid is None:
        text = "주문할 상품을 찾지 못했습니다 · No such product"
        await publish(
            app.redis, bid, {"type": "system", "to": claims.user_id, "ts": now, "text": text}
        )
        return True
    status, rest = await app.orders.reserve(
        bid, product_id=pid, qty=qty, option=None, buyer_id=claims.user_id,
        buyer_name=claims.name, idempotency_key=f"chat-{secrets.token_hex(8)}",
        address=address, joined_at_ms=claims.joined_at, verified=claims.verified,
    )  # fmt: skip
    if status == "ok":
        event = {"type": "order_pending", "order": json.loads(rest[0]), "to": claims.user_id,
                 "ts": now}  # fmt: skip
    else:
        reason = _REASONS.get(status, "주문할 수 없습니다 · The order could not be placed")
        event = {"type": "system", "text": reason, "code": status, "to": claims.user_id, "ts": now}
    await publish(app.redis, bid, event)
    return True
