"""The merchant's numbers while the show runs: the timeline sampler and the live read.

The counters are kept by the scripts where things happen (core/numbers.py lists them); this module
adds the timeline — every 10 s, for every live broadcast, the viewers present and the orders and
GMV so far — and reads everything back as ``GET …/stats`` answers it. Every process samples;
``HSETNX`` on the slot keeps the first point written for each 10 s, so any number of processes
make one timeline. The cost is a few commands per live broadcast per 10 s, nothing per viewer or
per order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis

from core.broadcasts import meta_key, recent_ids
from core.keys import key, text
from core.numbers import fresh_presence, presence_key, seen_key, stats_key, timeline_key
from core.pins import Pin, parse_pins, pins_key
from core.storage import keep_doing
from core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

STEP_MS = 10_000  # one timeline point per 10 s
FRESH_MS = 5_000  # a process's viewer count older than this is gone (chat reports every 2 s)
COUNTS = ("cancelled", "expired", "chat_messages")
# the totals are sums of per-product counters (the order scripts keep only those: fewer writes)
SUMS = {"orders": "o:", "units": "u:", "gmv": "g:", "paid_orders": "po:", "paid_units": "pu:",
        "paid_gmv": "pg:"}  # fmt: skip

# KEYS: stats; ARGV: viewers now. Keeps the highest number of viewers seen.
_PEAK = """
local peak = tonumber(redis.call('HGET', KEYS[1], 'viewers_peak') or '0')
if tonumber(ARGV[1]) > peak then redis.call('HSET', KEYS[1], 'viewers_peak', ARGV[1]) end
return 1
"""


class StatsSampler:
    """Adds a timeline point per ``step_ms`` to every live broadcast (any process may run one)."""

    def __init__(self, redis: Redis, step_ms: int = STEP_MS) -> None:
        self.redis = redis
        self.step_ms = step_ms
        self._peak = redis.register_script(_PEAK)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="stats-sampler")

    async def aclose(self) -> None:
        await cancel_and_wait(self._task)

    async def sample_once(
        self, now_ms: int | None = None, bids: Iterable[str] | None = None
    ) -> int:
        """A point for the current slot of every live broadcast (of ``bids``); how many."""
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        if bids is None:
            bids = await recent_ids(self.redis)
        slot = now_ms // self.step_ms
        n = 0
        for bid in bids:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hget(meta_key(bid), "status")
                pipe.hgetall(presence_key(bid))
                pipe.hgetall(stats_key(bid))
                status, presence, raw = await pipe.execute()
            if status is None or text(status) != "live":
                continue
            viewers, _ = fresh_presence(presence, now_ms, FRESH_MS)
            sums = totals({text(k): text(v) for k, v in raw.items()})
            point = {"t": slot * self.step_ms, "viewers": viewers,
                     "orders": sums["orders"], "gmv": sums["gmv"]}  # fmt: skip
            await self.redis.hsetnx(timeline_key(bid), str(slot), json.dumps(point))
            await self._peak(keys=[stats_key(bid)], args=[viewers])
            n += 1
        return n

    async def _run(self) -> None:
        step = self.step_ms / 1000
        # between rounds: to just into the next slot
        await keep_doing(self.sample_once, lambda: step - (time.time() % step) + 0.05,
                         "stats sampler", log)  # fmt: skip


def _int(raw: dict[str, str], field: str) -> int:
    return int(raw.get(field) or 0)


def totals(stats: dict[str, str]) -> dict[str, int]:
    """The show's totals from its per-product counters (and the plain counts)."""
    out = dict.fromkeys(SUMS, 0) | {f: _int(stats, f) for f in COUNTS}
    for field, value in stats.items():
        prefix = field[: field.find(":") + 1]
        for name, p in SUMS.items():
            if prefix == p:
                out[name] += int(value)
    return out


async def timeline(redis: Redis, bid: str) -> list[dict[str, int]]:
    raw: Any = await redis.hgetall(timeline_key(bid))
    return parse_timeline(bid, raw)


def parse_timeline(bid: str, raw: Any) -> list[dict[str, int]]:
    """The fields of ``HGETALL jt:{bid}:timeline`` as points, in time order."""
    points = []
    for slot, value in raw.items():
        try:
            doc = json.loads(value)
            points.append({k: int(doc[k]) for k in ("t", "viewers", "orders", "gmv")})
        except (ValueError, KeyError, TypeError):
            log.warning("timeline %s: unreadable point %s", bid, text(slot))
    return sorted(points, key=lambda p: p["t"])


async def live_numbers(
    redis: Redis, bid: str, names: dict[str, str], now_ms: int | None = None
) -> dict[str, Any]:
    """``GET …/stats``: the show's numbers now (``names``: product id → name)."""
    doc, _ = await numbers_and_pins(redis, bid, names, now_ms)
    return doc


async def numbers_and_pins(
    redis: Redis, bid: str, names: dict[str, str], now_ms: int | None = None
) -> tuple[dict[str, Any], list[Pin]]:
    """The live numbers, and the show's pins as read for them (the report reuses both)."""
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    async with redis.pipeline(transaction=False) as pipe:  # one slot: one round trip
        pipe.hgetall(stats_key(bid))
        pipe.hgetall(presence_key(bid))
        pipe.get(key(bid, "hearts"))
        pipe.hgetall(timeline_key(bid))
        pipe.lrange(pins_key(bid), 0, -1)
        raw_stats, presence, hearts, raw_points, raw_pins = await pipe.execute()
    unique = await redis.pfcount(seen_key(bid))  # not in a pipeline: a cluster client refuses
    stats = {text(k): text(v) for k, v in raw_stats.items()}
    points = parse_timeline(bid, raw_points)
    pinned = parse_pins(raw_pins)
    viewers, _ = fresh_presence(presence, now_ms, FRESH_MS)
    peak = max([viewers, _int(stats, "viewers_peak"), *(p["viewers"] for p in points)])
    out: dict[str, Any] = {"viewers": viewers, "viewers_peak": peak,
                           "viewers_unique": int(unique), "hearts": int(hearts or 0)}  # fmt: skip
    out |= totals(stats)
    out["conversion"] = round(out["orders"] / out["viewers_unique"], 4) if unique else 0.0
    out["per_product"] = per_product(stats, names)
    out["timeline"] = points
    out["pins"] = [{"at": p.at_ms, "product_id": p.product_id, "name": p.name}
                   for p in pinned]  # fmt: skip
    out["at"] = now_ms
    return out, pinned


def per_product(stats: dict[str, str], names: dict[str, str]) -> list[dict[str, Any]]:
    """Per product: orders, units, GMV (reserved or paid), best sellers first."""
    pids = {f[2:] for f in stats if f[:2] in ("o:", "u:", "g:")}
    rows = [{"product_id": pid, "name": names.get(pid, pid), "orders": _int(stats, f"o:{pid}"),
             "units": _int(stats, f"u:{pid}"), "gmv": _int(stats, f"g:{pid}")}
            for pid in pids]  # fmt: skip
    return sorted(rows, key=lambda r: (-r["gmv"], -r["units"], r["product_id"]))
