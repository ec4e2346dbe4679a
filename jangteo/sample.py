"""The demo's sample catalog (three market-stall products with pictures, one pinned on a deal) and
its merchant's past shows (so the forecast for the next show has something to go on)."""

from __future__ import annotations

import asyncio
import time

import cv2
import numpy as np

from commerce.catalog import image_path, validate_product
from commerce.forecast import SAMPLE_PRODUCTS, synthetic_history
from commerce.merchant import store_show
from core.pins import Pin, record_pin

from .context import AppContext

DEAL_S = 600
DEMO_MERCHANT = "demo-market"
WEEK_MS = 7 * 86_400_000

PRODUCTS = [
    ("A1", {"name": "제주 감귤 3kg", "price": 29900, "list_price": 39900, "stock": 50,
            "keyword": "감귤", "per_buyer_limit": 5}, (0, 140, 255)),
    ("B2", {"name": "유기농 꿀사과 2kg", "price": 24900, "list_price": 27900, "stock": 30,
            "keyword": "사과"}, (40, 40, 210)),
    ("C3", {"name": "수제 딸기잼 500g", "price": 9900, "stock": 100, "keyword": "잼"},
     (80, 30, 180)),
]  # fmt: skip


def picture(color: tuple[int, int, int], seed: int) -> bytes:
    """A product photo stand-in: fruit-coloured circles on a crate-brown background."""
    img = np.empty((480, 480, 3), np.uint8)
    img[:] = (60, 90, 130)
    rng = np.random.default_rng(seed)
    for _ in range(9):
        x, y = (int(v) for v in rng.integers(70, 410, 2))
        cv2.circle(img, (x, y), int(rng.integers(50, 80)), color, -1, cv2.LINE_AA)
        cv2.circle(img, (x - 18, y - 18), 12, (255, 255, 255), -1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    return bytes(buf)


async def sample_catalog(ctx: AppContext, bid: str) -> None:
    for i, (pid, doc, color) in enumerate(PRODUCTS):
        image = image_path(bid, pid)
        product, stock = validate_product(pid, doc | {"image": image})
        await ctx.catalog.put_image(bid, pid, await asyncio.to_thread(picture, color, i))
        await ctx.catalog.put(bid, product, stock)
    now = int(time.time() * 1000)
    pin = {"product_id": "A1", "deal_price": 24900, "deal_ends_at": now + DEAL_S * 1000}
    await ctx.catalog.set_pin(bid, pin | {"pinned_at": now})
    a1 = await ctx.catalog.get(bid, "A1")
    await record_pin(ctx.redis, bid, Pin(now, "A1", a1["name"], 24900, a1.get("image") or ""))


async def sample_history(ctx: AppContext, merchant_id: str = DEMO_MERCHANT, shows: int = 8) -> None:
    """``shows`` weekly evening shows (19:00 in Korea) of ``merchant_id`` before this week, with a
    growing audience: ended broadcasts with their numbers (commerce/forecast.py)."""
    day_ms = 86_400_000
    evening = (int(time.time() * 1000) // day_ms) * day_ms + 10 * 3_600_000  # 19:00 KST = 10:00 UTC
    history, _, _ = synthetic_history(shows, start_ms=evening - shows * WEEK_MS)
    prices = {pid: price for pid, (_, price, _) in SAMPLE_PRODUCTS.items()}
    for i, show in enumerate(history):
        await store_show(ctx, merchant_id, show, prices, f"지난 방송 {i + 1}")
