"""Products, their live stock, and the pin (pure validation + Redis records).

Keys: ``jt:{bid}:products`` (hash pid → product JSON), ``jt:{bid}:stock`` (hash ``pid`` or
``pid/option`` → units left), ``jt:{bid}:pin`` (JSON), ``jt:{bid}:img:<pid>`` (JPEG bytes).
Money is an integer number of won.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

from redis.asyncio import Redis

from core.keys import key, text
from core.problems import BadRequest, NotFound, Unprocessable

MAX_STOCK = 10_000_000
MAX_PRICE = 100_000_000
MAX_PRODUCTS = 200  # per broadcast (a show sells a handful; a market day a few dozen)
_ID = re.compile(r"[A-Za-z0-9_-]{1,40}")
KEYWORD = r"[A-Za-z0-9가-힣_-]{1,20}"  # a product's chat keyword, after NFKC
_KEYWORD = re.compile(KEYWORD)
_IMAGE = re.compile(r"(?:https?://[^\s/]|/[^/\s])[^\s]*\Z", re.IGNORECASE)
MODES = ("hold", "fpfs")  # reserve on order (hold) / first paid first served (stock at confirm)


def _int(doc: dict[str, Any], name: str, lo: int, hi: int, default: int | None = None) -> int:
    value = doc.get(name, default)
    if value is None:
        raise BadRequest(f"{name} is required", code=f"bad_{name}")
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRequest(f"{name} must be an integer (won, units)", code=f"bad_{name}")
    if not lo <= value <= hi:
        raise BadRequest(f"{name} must be {lo}..{hi}", code=f"bad_{name}")
    return value


def check_id(value: object, what: str = "product_id") -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise BadRequest(f"{what}: 1-40 letters, digits, '-' or '_'", code=f"bad_{what}")
    return value


def validate_product(pid: str, doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
    """The product record to store and its stock entries; BadRequest on anything off."""
    check_id(pid)
    name = doc.get("name")
    if not isinstance(name, str) or not 0 < len(name.strip()) <= 100:
        raise BadRequest("name: 1-100 characters", code="bad_name")
    price = _int(doc, "price", 0, MAX_PRICE)
    list_price = _int(doc, "list_price", price, MAX_PRICE, default=price)
    limit = doc.get("per_buyer_limit")
    if limit is not None:
        limit = _int(doc, "per_buyer_limit", 1, 10_000)
    mode = doc.get("mode", "hold")
    if mode not in MODES:
        raise BadRequest("mode must be hold or fpfs", code="bad_mode")
    image = doc.get("image")
    if image is not None and (
        not isinstance(image, str) or len(image) > 2000 or (image and not _IMAGE.match(image))
    ):  # pages put it in <img src>: the web or our own paths, nothing else (javascript:, data:)
        raise BadRequest("image must be a URL", code="bad_image")
    keyword = doc.get("keyword")
    if keyword is not None:  # what a chat line "#keyword 2" can name (commerce/chat_orders.py)
        if isinstance(keyword, str):
            keyword = unicodedata.normalize("NFKC", keyword)
        if not isinstance(keyword, str) or not _KEYWORD.fullmatch(keyword):
            raise BadRequest(
                "keyword: 1-20 letters, digits, Hangul, _ or - (viewers type it after #)",
                code="bad_keyword",
            )
    stock: dict[str, int] = {}
    options_out: list[dict[str, str]] = []
    options = doc.get("options")
    if options:
        if not isinstance(options, list) or len(options) > 100:
            raise BadRequest("options must be a list of {id, name, stock}", code="bad_options")
        for opt in options:
            if not isinstance(opt, dict):
                raise BadRequest("options must be a list of {id, name, stock}", code="bad_options")
            oid = check_id(opt.get("id"), "option")
            oname = opt.get("name", oid)
            if not isinstance(oname, str) or not 0 < len(oname) <= 60:
                raise BadRequest("option name: 1-60 characters", code="bad_options")
            if f"{pid}/{oid}" in stock:
                raise BadRequest(f"option {oid} twice", code="bad_options")
            stock[f"{pid}/{oid}"] = _int(opt, "stock", 0, MAX_STOCK)
            options_out.append({"id": oid, "name": oname})
    else:
        stock[pid] = _int(doc, "stock", 0, MAX_STOCK)
    product = {
        "id": pid,
        "name": name.strip(),
        "price": price,
        "list_price": list_price,
        "per_buyer_limit": limit or 0,
        "mode": mode,
        "image": image or "",
        "keyword": keyword or "",
        "options": options_out,
    }
    return product, stock


def public(product: dict[str, Any], stock: dict[str, int]) -> dict[str, Any]:
    out = dict(product)
    out["per_buyer_limit"] = product["per_buyer_limit"] or None
    out["image"] = product["image"] or None
    out["keyword"] = product["keyword"] or None
    if product["options"]:
        out["options"] = [
            o | {"stock": stock.get(f"{product['id']}/{o['id']}", 0)} for o in product["options"]
        ]
        out["stock"] = sum(o["stock"] for o in out["options"])
    else:
        out["stock"] = stock.get(product["id"], 0)
    return out


class Catalog:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def put(self, bid: str, product: dict[str, Any], stock: dict[str, int]) -> bool:
        """Store the product (replacing its stock entries); True if it existed before."""
        pid = product["id"]
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(key(bid, "products"), pid)
            pipe.hlen(key(bid, "products"))
            old, count = await pipe.execute()
        if not old and count >= MAX_PRODUCTS:
            raise Unprocessable(f"a broadcast sells at most {MAX_PRODUCTS} products",
                                code="too_many_products")  # fmt: skip
        stale = []
        if old:
            prev = json.loads(old)
            stale = [f"{pid}/{o['id']}" for o in prev["options"]] + [pid]
        async with self.redis.pipeline(transaction=True) as pipe:
            if stale:
                pipe.hdel(key(bid, "stock"), *stale)
            pipe.hset(key(bid, "products"), pid, json.dumps(product, ensure_ascii=False))
            pipe.hset(key(bid, "stock"), mapping=dict(stock.items()))
            await pipe.execute()
        return bool(old)

    async def all(self, bid: str) -> list[dict[str, Any]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(key(bid, "products"))
            pipe.hgetall(key(bid, "stock"))
            raw_products, raw_stock = await pipe.execute()
        stock = {text(k): int(v) for k, v in raw_stock.items()}
        products = [json.loads(v) for v in raw_products.values()]
        return sorted((public(p, stock) for p in products), key=lambda p: p["id"])

    async def names(self, bid: str) -> dict[str, str]:
        """Product id → name (the products only, not their stock)."""
        raw: Any = await self.redis.hgetall(key(bid, "products"))
        return {text(k): json.loads(v)["name"] for k, v in raw.items()}

    async def get(self, bid: str, pid: str) -> dict[str, Any]:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(key(bid, "products"), pid)
            pipe.hgetall(key(bid, "stock"))
            raw, raw_stock = await pipe.execute()
        if not raw:
            raise NotFound(f"no product {pid!r}", code="unknown_product")
        return public(json.loads(raw), {text(k): int(v) for k, v in raw_stock.items()})

    async def pin(self, bid: str) -> dict[str, Any] | None:
        raw: Any = await self.redis.get(key(bid, "pin"))
        return json.loads(raw) if raw else None

    async def set_pin(self, bid: str, pin: dict[str, Any] | None) -> None:
        if pin is None:
            await self.redis.delete(key(bid, "pin"))
        else:
            await self.redis.set(key(bid, "pin"), json.dumps(pin, ensure_ascii=False))

    async def put_image(self, bid: str, pid: str, jpeg: bytes) -> None:
        await self.redis.set(key(bid, f"img:{pid}"), jpeg)

    async def image(self, bid: str, pid: str) -> bytes:
        raw: Any = await self.redis.get(key(bid, f"img:{pid}"))
        if not raw:
            raise NotFound(f"no image for {pid!r}")
        return bytes(raw)


def image_path(bid: str, pid: str) -> str:
    """Where a product picture stored here (a flash product's snapshot) is served."""
    return f"/api/broadcasts/{bid}/products/{pid}/image"


def image_pid(bid: str, path: str) -> str | None:
    """The product whose stored picture ``path`` names (None: an image elsewhere)."""
    prefix, suffix = image_path(bid, "\0").split("\0")
    if path.startswith(prefix) and path.endswith(suffix) and len(path) > len(prefix + suffix):
        return path[len(prefix) : -len(suffix)]
    return None


def deal_of(pin: dict[str, Any] | None) -> dict[str, Any] | None:
    """The deal of a pin record, as events and the overlay carry it (None: no deal)."""
    if pin is None or pin.get("deal_price") is None:
        return None
    return {"price": pin["deal_price"], "ends_at": pin.get("deal_ends_at")}


def check_deal(product: dict[str, Any], doc: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """The pin record for ``product`` from a pin request body."""
    deal_price = doc.get("deal_price")
    ends = doc.get("deal_ends_at")
    if deal_price is not None:
        deal_price = _int(doc, "deal_price", 0, product["price"])
    if ends is not None:
        ends = _int(doc, "deal_ends_at", now_ms + 1000, now_ms + 7 * 24 * 3600 * 1000)
        if deal_price is None:
            raise Unprocessable("deal_ends_at needs a deal_price", code="bad_deal")
    eligible = doc.get("eligible", "anyone")
    if eligible not in ELIGIBLE:
        raise BadRequest(f"eligible must be one of {', '.join(ELIGIBLE)}", code="bad_eligible")
    return {"product_id": product["id"], "deal_price": deal_price, "deal_ends_at": ends,
            "pinned_at": now_ms, "eligible": eligible}  # fmt: skip


# who may buy the pinned product: anyone; only viewers whose identity was made before the pin
# (a flash sale fresh identities cannot farm); only identities with a verified phone
ELIGIBLE = ("anyone", "joined_before", "verified")
