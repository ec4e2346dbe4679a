"""The report after (or during) a show: the live numbers plus what only the whole show tells —
each pin with what it sold and its conversion, orders per minute — as JSON or as CSV (UTF-8 with
BOM, so Excel keeps Korean; formulas neutralised). The HTML page draws the same JSON.

Orders are read once, only the fields the report needs (HMGET, pipelined): 10,000 orders cost one
round trip of 10,000 small replies.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from redis.asyncio import Redis

from core.keys import key, text

from .export import _safe
from .stats import numbers_and_pins

SALE = ("reserved", "paid")  # what counts as sold; cancelled and expired do not
FIELDS = ("status", "product_id", "qty", "unit_price", "created_at")
MINUTE_MS = 60_000


async def sales(redis: Redis, bid: str) -> list[tuple[str, int, int, int]]:
    """Every order that counts as a sale: (product id, qty, total won, created at ms)."""
    ids: Any = await redis.zrange(key(bid, "orders"), 0, -1)
    async with redis.pipeline(transaction=False) as pipe:
        for oid in ids:
            pipe.hmget(key(bid, f"order:{text(oid)}"), *FIELDS)
        rows = await pipe.execute()
    out = []
    for status, pid, qty, price, at in rows:
        if status is None or text(status) not in SALE:
            continue
        q = int(qty)
        out.append((text(pid), q, q * int(price), int(at)))
    return out


async def build(
    redis: Redis, broadcast: dict[str, Any], names: dict[str, str], now_ms: int
) -> dict[str, Any]:
    """The report of ``broadcast`` (its public record) as of ``now_ms``."""
    bid = broadcast["id"]
    doc, pinned = await numbers_and_pins(redis, bid, names, now_ms)
    sold = await sales(redis, bid)
    start = broadcast.get("started_at") or (min(s[3] for s in sold) if sold else now_ms)
    end = broadcast.get("ended_at") or now_ms
    doc["broadcast"] = {k: broadcast.get(k) for k in ("id", "title", "status", "started_at",
                                                      "ended_at", "orientation")}  # fmt: skip
    doc["duration_s"] = max(0, (end - start) // 1000)
    doc["orders_per_minute"] = per_minute(sold, start, end)
    doc["pins"] = pin_results(pinned, sold, doc["timeline"], end)
    return doc


def per_minute(sold: list[tuple[str, int, int, int]], start: int, end: int) -> list[dict[str, int]]:
    """Orders and GMV in each minute from the start (empty minutes included)."""
    minutes = max(1, -(-(end - start) // MINUTE_MS))
    orders, gmv = [0] * minutes, [0] * minutes
    for _, _, total, at in sold:
        i = min(minutes - 1, max(0, (at - start) // MINUTE_MS))
        orders[i] += 1
        gmv[i] += total
    return [{"t": start + i * MINUTE_MS, "orders": orders[i], "gmv": gmv[i]}
            for i in range(minutes)]  # fmt: skip


def pin_results(
    pinned: list[Any], sold: list[tuple[str, int, int, int]], points: list[dict[str, int]],
    end: int,
) -> list[dict[str, Any]]:  # fmt: skip
    """Each pin, while it lasted (until the next pin or the end): its product's orders, units and
    GMV, the viewers on average, and conversion = orders / average viewers."""
    out = []
    for i, p in enumerate(pinned):
        until = pinned[i + 1].at_ms if i + 1 < len(pinned) else end
        mine = [s for s in sold if s[0] == p.product_id and p.at_ms <= s[3] < until]
        seen = [pt["viewers"] for pt in points if p.at_ms <= pt["t"] < until]
        viewers = sum(seen) / len(seen) if seen else 0.0
        orders = len(mine)
        out.append({"at": p.at_ms, "until": until, "product_id": p.product_id, "name": p.name,
                    "price": p.price, "orders": orders, "units": sum(s[1] for s in mine),
                    "gmv": sum(s[2] for s in mine), "viewers": round(viewers, 1),
                    "conversion": round(orders / viewers, 4) if viewers else 0.0})  # fmt: skip
    return out


SUMMARY = [
    ("시청자 최고 viewers_peak", "viewers_peak"),
    ("순 시청자 viewers_unique", "viewers_unique"),
    ("채팅 chat_messages", "chat_messages"),
    ("하트 hearts", "hearts"),
    ("주문 orders", "orders"),
    ("수량 units", "units"),
    ("매출 gmv (KRW)", "gmv"),
    ("결제 완료 매출 paid_gmv (KRW)", "paid_gmv"),
    ("취소 cancelled", "cancelled"),
    ("만료 expired", "expired"),
    ("전환율 conversion", "conversion"),
    ("방송 시간 duration_s", "duration_s"),
]


def to_csv(doc: dict[str, Any]) -> bytes:
    """Four tables one after another: the summary, per product, per pin, the timeline."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    b = doc["broadcast"]
    w.writerow(["방송 broadcast", _safe(b["id"]), _safe(b.get("title") or "")])
    w.writerows([label, doc[field]] for label, field in SUMMARY)
    w.writerow([])
    w.writerow(["상품ID product_id", "상품명 product", "주문 orders", "수량 units",
                "매출 gmv (KRW)"])  # fmt: skip
    w.writerows([_safe(r["product_id"]), _safe(r["name"]), r["orders"], r["units"], r["gmv"]]
                for r in doc["per_product"])  # fmt: skip
    w.writerow([])
    w.writerow(["고정 시각 pinned_at (ms)", "상품ID product_id", "상품명 product", "가격 price",
                "주문 orders", "수량 units", "매출 gmv (KRW)", "평균 시청자 viewers",
                "전환율 conversion"])  # fmt: skip
    w.writerows([p["at"], _safe(p["product_id"]), _safe(p["name"]), p["price"], p["orders"],
                 p["units"], p["gmv"], p["viewers"], p["conversion"]]
                for p in doc["pins"])  # fmt: skip
    w.writerow([])
    w.writerow(["시각 t (ms)", "시청자 viewers", "누적 주문 orders", "누적 매출 gmv (KRW)"])
    w.writerows([p["t"], p["viewers"], p["orders"], p["gmv"]] for p in doc["timeline"])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")
