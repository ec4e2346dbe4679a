"""The merchant's orders as CSV (UTF-8 with BOM, so Excel shows Korean) or JSON."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from typing import Any

KST = dt.timezone(dt.timedelta(hours=9))
COLUMNS = [
    ("주문번호 order_id", "id"),
    ("주문시각 created_at (KST)", "created"),
    ("상태 status", "status"),
    ("상품ID product_id", "product_id"),
    ("상품명 product", "name"),
    ("옵션 option", "option"),
    ("수량 qty", "qty"),
    ("단가 unit_price (KRW)", "unit_price"),
    ("합계 total (KRW)", "total"),
    ("정가 list_price (KRW)", "list_price"),
    ("특가 deal", "deal"),
    ("구매자ID buyer_id", "buyer_id"),
    ("구매자 buyer", "buyer_name"),
]


def rows(orders: list[dict[str, str]]) -> list[dict[str, Any]]:
    out = []
    for o in orders:
        shown = json.loads(o["shown"])
        created = dt.datetime.fromtimestamp(int(o["created_at"]) / 1000, KST)
        out.append(
            {
                "id": o["id"],
                "created": created.strftime("%Y-%m-%d %H:%M:%S"),
                "status": o["status"],
                "product_id": o["product_id"],
                "name": shown["name"],
                "option": o.get("option_name") or o.get("option") or "",
                "qty": int(o["qty"]),
                "unit_price": int(o["unit_price"]),
                "total": int(o["unit_price"]) * int(o["qty"]),
                "list_price": shown["list_price"],
                "deal": "Y" if shown.get("deal") else "",
                "buyer_id": o["buyer_id"],
                "buyer_name": o["buyer_name"],
            }
        )
    return out


def to_csv(orders: list[dict[str, str]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([title for title, _ in COLUMNS])
    for r in rows(orders):
        writer.writerow([_safe(r[field]) for _, field in COLUMNS])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def _safe(value: object) -> object:
    """Neutralise spreadsheet formulas in text cells (CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
