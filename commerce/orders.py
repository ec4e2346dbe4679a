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
from core.redismux import MuxError, RedisMux, ReplyError

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


# KEYS: 1 products, 2 stock, 3 pin, 4 idem, 5 bought, 6 order, 7 orders, 8 holds, 9 stream,
#       10 broadcast meta, 11 webhook outbox, 12 open counts, 13 the buyer's cooldown on the product
# ARGV: 1 pid, 2 option, 3 qty, 4 body hash, 5 now ms, 6 hold ms, 7 oid, 8 buyer id,
#       9 buyer name, 10 masked name, 11 idem ttl s, 12 maxlen, 13 buyer address,
#       14 flash-sale hold ms, 15 open per buyer, 16 open per address, 17 outbox on ('1'),
#       18 buyer's identity made at (ms), 19 buyer verified ('1')
_RESERVE = r"""
local bstatus = redis.call('HGET', KEYS[10], 'status')
if not bstatus then return {'unknown_broadcast'} end
if bstatus == 'ended' then return {'ended'} end
local prev = redis.call('GET', KEYS[4])
if prev then
  local sep = string.find(prev, '|', 1, true)
  if string.sub(prev, 1, sep - 1) ~= ARGV[4] then return {'key_reused'} end
  return {'replay', string.sub(prev, sep + 1)}
end
local pj = redis.call('HGET', KEYS[1], ARGV[1])
if not pj then return {'unknown_product'} end
local p = cjson.decode(pj)
local skey = ARGV[1]
local option_name = ''
if #p.options > 0 then
  if ARGV[2] == '' then return {'option_required'} end
  for _, o in ipairs(p.options) do
    if o.id == ARGV[2] then option_name = o.name end
  end
  if option_name == '' then return {'unknown_option'} end
  skey = ARGV[1] .. '/' .. ARGV[2]
elseif ARGV[2] ~= '' then
  return {'unknown_option'}
end
local now = tonumber(ARGV[5])
local qty = tonumber(ARGV[3])
local price = p.price
local deal = nil
local hold_ms = tonumber(ARGV[6])
local pin = redis.call('GET', KEYS[3])
if pin then
  local pn = cjson.decode(pin)
  if pn.product_id == ARGV[1] then
    if pn.eligible == 'joined_before' and tonumber(ARGV[18]) >= (pn.pinned_at or 0) then
      return {'not_eligible', 'joined_before'}
    end
    if pn.eligible == 'verified' and ARGV[19] ~= '1' then return {'not_eligible', 'verified'} end
    if type(pn.deal_price) == 'number' then
      if type(pn.deal_ends_at) == 'number' and now >= pn.deal_ends_at then
        return {'deal_ended'}
      end
      price = pn.deal_price
      deal = {price = pn.deal_price, ends_at = pn.deal_ends_at}
      hold_ms = math.min(hold_ms, tonumber(ARGV[14]))  -- a flash sale holds for less
    end
  end
end
if redis.call('EXISTS', KEYS[13]) == 1 then
  return {'cooldown', tostring(redis.call('PTTL', KEYS[13]))}
end
local left = tonumber(redis.call('HGET', KEYS[2], skey) or '0')
if left < qty then return {'sold_out', tostring(left)} end
if p.per_buyer_limit > 0 then
  local had = tonumber(redis.call('HGET', KEYS[5], ARGV[1]) or '0')
  if had + qty > p.per_buyer_limit then
    return {'limit_exceeded', tostring(p.per_buyer_limit - had)}
  end
end
local ou = 'u:' .. ARGV[8]
if tonumber(redis.call('HGET', KEYS[12], ou) or '0') >= tonumber(ARGV[15]) then
  return {'too_many_open', 'buyer'}
end
local oa = 'a:' .. ARGV[13]
if ARGV[13] ~= '' and tonumber(redis.call('HGET', KEYS[12], oa) or '0') >= tonumber(ARGV[16]) then
  return {'too_many_open', 'address'}
end
local hold = p.mode == 'hold'
if not hold then  -- first paid, first served: at most three payers racing for each unit left
  local op = 'p:' .. skey
  if tonumber(redis.call('HGET', KEYS[12], op) or '0') >= math.max(3 * left, 10) then
    return {'oversubscribed', tostring(left)}
  end
  redis.call('HINCRBY', KEYS[12], op, 1)
end
redis.call('HINCRBY', KEYS[12], ou, 1)
if ARGV[13] ~= '' then redis.call('HINCRBY', KEYS[12], oa, 1) end
if hold then left = redis.call('HINCRBY', KEYS[2], skey, -qty) end
redis.call('HINCRBY', KEYS[5], ARGV[1], qty)
local expires = now + hold_ms
local shown = {name = p.name, price = price, list_price = p.list_price, deal = deal or cjson.null}
local answer = {
  id = ARGV[7], status = 'reserved', product_id = ARGV[1],
  option = ARGV[2] ~= '' and ARGV[2] or cjson.null,
  qty = qty, unit_price = price, total = price * qty, shown = shown,
  created_at = now, expires_at = expires, mode = p.mode
}
local answer_json = cjson.encode(answer)
redis.call('HSET', KEYS[6], 'id', ARGV[7], 'status', 'reserved', 'product_id', ARGV[1],
  'option', ARGV[2], 'option_name', option_name, 'stock_key', skey, 'qty', qty,
  'unit_price', price, 'mode', p.mode, 'stock_taken', hold and '1' or '0',
  'buyer_id', ARGV[8], 'buyer_name', ARGV[9], 'shown', cjson.encode(shown),
  'created_at', now, 'expires_at', expires, 'answer', answer_json, 'addr', ARGV[13],
  'idem_key', KEYS[4])
redis.call('ZADD', KEYS[7], now, ARGV[7])
redis.call('ZADD', KEYS[8], expires, ARGV[7])
redis.call('SET', KEYS[4], ARGV[4] .. '|' .. answer_json, 'EX', ARGV[11])
redis.call('XADD', KEYS[9], 'MAXLEN', '~', ARGV[12], '*', 'e', cjson.encode(
  {type = 'order', product_id = ARGV[1], buyer_name_masked = ARGV[10], qty = qty, ts = now}))
if hold then
  redis.call('XADD', KEYS[9], 'MAXLEN', '~', ARGV[12], '*', 'e', cjson.encode(
    {type = 'stock', product_id = ARGV[1], option = ARGV[2] ~= '' and ARGV[2] or cjson.null,
     left = left, ts = now}))
end
if ARGV[17] == '1' then
  redis.call('XADD', KEYS[11], 'MAXLEN', '~', '10000', '*', 'type', 'order.created',
    'order', ARGV[7])
end
return {'ok', answer_json}
"""

# KEYS: 1 order, 2 holds, 3 stock, 4 bought, 5 stream, 6 webhook outbox, 7 open counts,
#       8 the buyer's cooldown on the product
# ARGV: 1 target (paid|cancelled|expired), 2 now ms, 3 maxlen, 4 require_due ('1' for the sweeper),
#       5 how long an unpaid order's record is kept (s), 6 cooldown after an expired hold (ms),
#       7 outbox on ('1')
_MOVE = r"""
local o = redis.call('HMGET', KEYS[1], 'status', 'expires_at', 'qty', 'stock_key', 'stock_taken',
                     'product_id', 'option', 'id', 'buyer_id', 'addr', 'mode')
local status = o[1]
if not status then return {'not_found'} end
local target = ARGV[1]
local now = tonumber(ARGV[2])
if status == target then return {'same', status} end
if status ~= 'reserved' then return {'bad_state', status} end
local qty = tonumber(o[3])
local due = now >= tonumber(o[2])
if ARGV[4] == '1' and not due then return {'not_due', status} end
if target == 'paid' and due then target = 'expired' end
local left = nil
if target == 'paid' then
  if o[5] == '0' then
    local have = tonumber(redis.call('HGET', KEYS[3], o[4]) or '0')
    if have < qty then return {'sold_out', tostring(have)} end
    left = redis.call('HINCRBY', KEYS[3], o[4], -qty)
    redis.call('HSET', KEYS[1], 'stock_taken', '1')
  end
  redis.call('HSET', KEYS[1], 'status', 'paid', 'paid_at', now)
else
  if o[5] == '1' then left = redis.call('HINCRBY', KEYS[3], o[4], qty) end
  redis.call('HINCRBY', KEYS[4], o[6], -qty)
  redis.call('HSET', KEYS[1], 'status', target, 'closed_at', now, 'stock_taken', '0')
  redis.call('EXPIRE', KEYS[1], ARGV[5])  -- an unpaid order is kept a while, not forever
  if target == 'expired' and tonumber(ARGV[6]) > 0 then
    redis.call('SET', KEYS[8], '1', 'PX', ARGV[6])  -- no renewing a hold by ordering again
  end
end
local counted = {'u:' .. o[9]}  -- it no longer counts as open
if o[10] and o[10] ~= '' then counted[#counted + 1] = 'a:' .. o[10] end
if o[11] == 'fpfs' then counted[#counted + 1] = 'p:' .. o[4] end
for _, f in ipairs(counted) do
  if redis.call('HINCRBY', KEYS[7], f, -1) <= 0 then redis.call('HDEL', KEYS[7], f) end
end
redis.call('ZREM', KEYS[2], o[8])
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[3], '*', 'e', cjson.encode(
  {type = 'order_status', id = o[8], status = target, to = o[9], ts = now}))
if left then
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[3], '*', 'e', cjson.encode(
    {type = 'stock', product_id = o[6], option = o[7] ~= '' and o[7] or cjson.null, left = left,
     ts = now}))
end
if ARGV[7] == '1' then
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', '10000', '*',
    'type', target == 'paid' and 'order.paid' or 'order.cancelled', 'order', o[8], 'reason', target)
end
if target ~= ARGV[1] then return {'expired', target} end
return {'ok', target}
"""


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
        self._reserve = redis.register_script(_RESERVE)
        self._move = redis.register_script(_MOVE)

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
        now_ms: int | None = None,
    ) -> tuple[str, list[str]]:
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
        ]
        res: Any
        if self.mux is not None:
            try:
                res = await self.mux.script(_RESERVE, keys, args)
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
