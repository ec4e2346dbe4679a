"""A broadcast's pins, in the order they happened, kept beside it (``jt:{bid}:pins``): the
chapters of its replay, EXT-X-DATERANGE in its HLS, the moments in the merchant's numbers.
Whatever pins a product (the pin route, the demo's sample) records it here too."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from redis.asyncio import Redis

from .keys import key

MAX_PINS = 2000


@dataclasses.dataclass(frozen=True, slots=True)
class Pin:
    at_ms: int  # epoch ms
    product_id: str
    name: str
    price: int  # won, as shown: the deal price when there was one
    image: str = ""

    def public(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def pins_key(bid: str) -> str:
    return key(bid, "pins")


async def record_pin(redis: Redis, bid: str, pin: Pin) -> None:
    raw = json.dumps(pin.public(), ensure_ascii=False, separators=(",", ":"))
    async with redis.pipeline(transaction=True) as pipe:
        pipe.rpush(pins_key(bid), raw)
        pipe.ltrim(pins_key(bid), -MAX_PINS, -1)
        await pipe.execute()


async def pins(redis: Redis, bid: str) -> list[Pin]:
    raw: Any = await redis.lrange(pins_key(bid), 0, -1)
    return parse_pins(raw)


def parse_pins(raw: Any) -> list[Pin]:
    """The records of ``LRANGE jt:{bid}:pins`` as pins (for callers reading it in a pipeline)."""
    out = []
    for item in raw:
        try:
            doc = json.loads(item)
            out.append(Pin(int(doc["at_ms"]), str(doc["product_id"]), str(doc["name"]),
                           int(doc["price"]), str(doc.get("image") or "")))  # fmt: skip
        except (ValueError, KeyError, TypeError):
            continue  # a record we cannot read is left out, not fatal
    return out
