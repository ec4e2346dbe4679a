"""Order capture: ONE Lua script reserves, records and announces an order atomically.

``reserve`` checks, in one call: the Idempotency-Key (same key → the same answer; same key with
another body → refused), the product and option, the pinned deal's window, the per-buyer limit and
the stock; then takes the stock (``hold`` mode), writes the order record with what was shown
(name, price, list price, deal), indexes it, and appends ``order`` and ``stock`` events to the
broadcast's stream. ``confirm``, ``cancel`` and ``expire`` move the order's state with the stock
returned exactly once (a second sweeper, a retry or a late confirm finds the state already moved).

State machine: ``reserved → paid | cancelled | expired``.

Holds that cannot be farmed: at most ``open_per_buyer`` reserved orders per buyer and
``open_per_address`` per client address at once; a pinned deal (a flash sale) holds for
``flash_hold_s``; a buyer whose hold ran out waits ``cooldown_s`` before ordering that product
again; first-paid-first-served products take at most three open reservations per unit left.

What is kept: paid orders stay (the merchant's books; Korean e-commerce law keeps payment and
delivery records for five years: export them). An unpaid order (cancelled, expired) expires after
``unpaid_retention_s``, and a buyer keeps at most KEPT_UNPAID of them (older ones go with their
idempotency record), so reserve-cancel loops leave a bounded trace. Webhook outbox entries are
written only when a shop endpoint is configured, and deleted once delivered.

Keys (one slot per broadcast): ``jt:{bid}:order:<oid>`` (hash), ``jt:{bid}:orders`` (zset by
creation), ``jt:{bid}:holds`` (zset by expiry), ``jt:{bid}:bought:<uid>`` (hash pid → units),
``jt:{bid}:idem:<uid>:<key>`` (the first answer, 24 h), ``jt:{bid}:open`` (hash: open orders per
``u:<buyer>``, ``a:<address>``, ``p:<stock key>``), ``jt:{bid}:cool:<uid>:<pid>`` (a cooldown),
``jt:{bid}:unpaid:<uid>`` (list: that buyer's closed unpaid orders, newest first).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import secrets
import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError as RedisResponseError

from core.broadcasts import meta_key
from core.events import STREAM_MAXLEN, stream_key
from core.keys import key, text
from core.numbers import stats_key
from core.redismux import MuxError, RedisMux, ReplyError

from .order_scripts import MOVE, RESERVE

IDEMPOTENCY_TTL_S = 24 * 3600
KEPT_UNPAID = 20  # closed unpaid orders kept per buyer


@dataclasses.dataclass(frozen=True)
class OrderRules:
    hold_s: float = 600.0
    flash_hold_s: float = 120.0
    cooldown_s: float = 300.0
    open_per_buyer: int = 5
    open_per_address: int = 20
    unpaid_retention_s: int = 3 * 24 * 3600
    outbox: bool = False  # webhooks configured: announce changes in the outbox
    stats: bool = True  # count orders in the broadcast's numbers (commerce/stats.py)


def body_hash(product_id: str, qty: int, option: str | None) -> str:
    canon = json.dumps([product_id, qty, option or ""], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:32]


def mask_name(name: str) -> str:
    """``김민지`` → ``김**``: enough to feel real, not enough to identify."""
    name = name.strip()
    return (name[:1] + "**") if name else "***"


_PREFIX = secrets.token_hex(3)  # this process
_COUNTER = itertools.count(int(time.time() * 1000) % 1_000_000_000)


def new_order_id(bid: str) -> str:
    """Unique without a Redis round trip: this process's random prefix and a counter."""
    return f"{bid}-{_PREFIX}{next(_COUNTER):x}"


def bid_of(order_id: str) -> str:
    return order_id.rsplit("-", 1)[0]


class Orders:
    def __init__(
        self, redis: Redis, rules: OrderRules | None = None, mux: RedisMux | None = None
    ) -> None:
        self.redis = redis
        self.mux = mux  # the hot path (reserve) goes through it when given
        self.rules = rules or OrderRules()
        self.hold_ms = int(self.rules.hold_s * 1000)
        self._reserve = redis.register_script(RESERVE)
        self._move = redis.register_script(MOVE)

    async def reserve(
        self,
        bid: str,
        *,
        product_id: str,
        qty: int,
        option: str | None,
        buyer_id: str,
        buyer_name: str,
        idempotency_key: str,
        address: str = "",
        joined_at_ms: int = 0,
        verified: bool = False,
        via: str = "live",
        shown_in: tuple[str, float, int, str] | None = None,
        now_ms: int | None = None,
    ) -> tuple[str, list[str]]:
        """``shown_in``: (currency, won→it rate, decimals, rates' date) the buyer saw the price
        in besides won: the order records the converted total (it is charged in won)."""
        oid = new_order_id(bid)
        r = self.rules
        keys = [
            key(bid, "products"),
            key(bid, "stock"),
            key(bid, "pin"),
            key(bid, f"idem:{buyer_id}:{idempotency_key}"),
            key(bid, f"bought:{buyer_id}"),
            key(bid, f"order:{oid}"),
            key(bid, "orders"),
            key(bid, "holds"),
            stream_key(bid),
            meta_key(bid),
            key(bid, "outbox"),
            key(bid, "open"),
            key(bid, f"cool:{buyer_id}:{product_id}"),
            stats_key(bid),
        ]
        args: list[Any] = [
            product_id,
            option or "",
            qty,
            body_hash(product_id, qty, option),
            now_ms if now_ms is not None else int(time.time() * 1000),
            self.hold_ms,
            oid,
            buyer_id,
            buyer_name,
            mask_name(buyer_name),
            IDEMPOTENCY_TTL_S,
            STREAM_MAXLEN,
            address,
            int(r.flash_hold_s * 1000),
            r.open_per_buyer,
            r.open_per_address,
            "1" if r.outbox else "0",
            joined_at_ms,
            "1" if verified else "0",
            via,
            *((shown_in[0], repr(shown_in[1]), shown_in[2], shown_in[3]) if shown_in
              else ("", "0", 0, "")),
            "1" if r.stats else "0",
        ]  # fmt: skip
        res: Any
        if self.mux is not None:
            try:
                res = await self.mux.script(RESERVE, keys, args)
            except MuxError as exc:
                raise RedisConnectionError(str(exc)) from exc
            except ReplyError as exc:
                raise RedisResponseError(str(exc)) from exc
        else:
            res = await self._reserve(keys=keys, args=args)
        return text(res[0]), [text(x) for x in res[1:]]

    async def move(
        self, order_id: str, target: str, *, sweeping: bool = False, now_ms: int | None = None
    ) -> tuple[str, str | None]:
        bid = bid_of(order_id)
        raw: Any = await self.redis.hmget(key(bid, f"order:{order_id}"), "buyer_id", "product_id")
        buyer = text(raw[0]) if raw[0] else "none"
        product = text(raw[1]) if raw[1] else "none"
        r = self.rules
        res: Any = await self._move(
            keys=[
                key(bid, f"order:{order_id}"),
                key(bid, "holds"),
                key(bid, "stock"),
                key(bid, f"bought:{buyer}"),
                stream_key(bid),
                key(bid, "outbox"),
                key(bid, "open"),
                key(bid, f"cool:{buyer}:{product}"),
                stats_key(bid),
            ],
            args=[
                target,
                now_ms if now_ms is not None else int(time.time() * 1000),
                STREAM_MAXLEN,
                "1" if sweeping else "0",
                r.unpaid_retention_s,
                int(r.cooldown_s * 1000),
                "1" if r.outbox else "0",
            ],
        )
        status, state = text(res[0]), (text(res[1]) if len(res) > 1 else None)
        if status in ("ok", "expired") and state in ("cancelled", "expired"):
            await self._keep_unpaid(bid, buyer, order_id)
        return status, state

    async def _keep_unpaid(self, bid: str, buyer: str, order_id: str) -> None:
        """Note a closed unpaid order of ``buyer``; beyond the newest KEPT_UNPAID, older ones
        are dropped with their idempotency records (retrying those keys makes a new order)."""
        listed = key(bid, f"unpaid:{buyer}")
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.lpush(listed, order_id)
            pipe.expire(listed, self.rules.unpaid_retention_s)
            pipe.lrange(listed, KEPT_UNPAID, -1)
            pipe.ltrim(listed, 0, KEPT_UNPAID - 1)
            _, _, old, _ = await pipe.execute()
        if not old:
            return
        olds = [text(o) for o in old]
        async with self.redis.pipeline(transaction=False) as pipe:
            for oid in olds:
                pipe.hmget(key(bid, f"order:{oid}"), "idem_key", "status")
            rows = await pipe.execute()
        async with self.redis.pipeline(transaction=False) as pipe:
            for oid, (idem, status) in zip(olds, rows, strict=True):
                if status is not None and text(status) == "paid":
                    continue  # never: only unpaid orders are listed; kept for safety
                pipe.delete(key(bid, f"order:{oid}"))
                if idem:
                    pipe.delete(text(idem))
                pipe.zrem(key(bid, "orders"), oid)
            await pipe.execute()

    async def prune_index(self, bid: str, limit: int = 500) -> int:
        """Take the oldest index entries whose records have expired out of ``orders``."""
        ids: Any = await self.redis.zrange(key(bid, "orders"), 0, limit - 1)
        if not ids:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for oid in ids:
                pipe.exists(key(bid, f"order:{text(oid)}"))
            alive = await pipe.execute()
        gone = [oid for oid, there in zip(ids, alive, strict=True) if not there]
        if gone:
            await self.redis.zrem(key(bid, "orders"), *gone)
        return len(gone)

    async def get(self, order_id: str) -> dict[str, str] | None:
        raw: Any = await self.redis.hgetall(key(bid_of(order_id), f"order:{order_id}"))
        return {text(k): text(v) for k, v in raw.items()} if raw else None

    async def all(self, bid: str) -> list[dict[str, str]]:
        ids: Any = await self.redis.zrange(key(bid, "orders"), 0, -1)
        return await self._rows(bid, ids)

    async def page(
        self, bid: str, after: str | None, limit: int
    ) -> tuple[list[dict[str, str]], str | None]:
        """Up to ``limit`` orders in the order they were placed, after the order ``after``
        (None: from the first); and the id to continue after, if there are more."""
        start = 0
        if after is not None:
            rank: Any = await self.redis.zrank(key(bid, "orders"), after)
            if rank is None:
                raise KeyError(after)
            start = int(rank) + 1
        ids: Any = await self.redis.zrange(key(bid, "orders"), start, start + limit)
        more = len(ids) > limit
        rows = await self._rows(bid, ids[:limit])
        return rows, (text(ids[limit - 1]) if more else None)

    async def _rows(self, bid: str, ids: Any) -> list[dict[str, str]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for oid in ids:
                pipe.hgetall(key(bid, f"order:{text(oid)}"))
            rows = await pipe.execute()
        return [{text(k): text(v) for k, v in r.items()} for r in rows if r]

    async def due(self, bid: str, now_ms: int, limit: int = 200) -> list[str]:
        ids: Any = await self.redis.zrangebyscore(key(bid, "holds"), 0, now_ms, start=0, num=limit)
        return [text(i) for i in ids]


def public_order(row: dict[str, str]) -> dict[str, Any]:
    answer = json.loads(row["answer"])
    answer["status"] = row["status"]
    answer["buyer"] = {"id": row["buyer_id"], "name": row["buyer_name"]}
    if row.get("paid_at"):
        answer["paid_at"] = int(row["paid_at"])
    if row.get("closed_at"):
        answer["closed_at"] = int(row["closed_at"])
    return dict(answer)
