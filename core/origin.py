"""Which node carries a broadcast's media: its origin, a lease in Redis (``jt:{bid}:origin`` = the
node's id). The host's WHIP publisher makes its node the origin (a reconnect through another node
moves it there; co-hosts are sent to the origin: stream/http.py); the node renews the lease with
its heartbeat while it has publishers of that broadcast; a node that dies lets it expire within
``LEASE_S``; the end of the show releases it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis

from .keys import key, text

LEASE_S = 15

# KEYS: origin; ARGV: node id, lease s. Renews a lease this node holds, takes back one that
# lapsed (nobody holds it: it expired while Redis was away); another node's is left alone.
_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if not holder then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) return 1 end
return 0
"""
# KEYS: origin; ARGV: node id, lease s, the holder seen before ("" for none). Claims only if the
# lease still names what was seen (or already this node).
_CLAIM_IF = """
local holder = redis.call('GET', KEYS[1]) or ''
if holder == ARGV[3] or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return 1
end
return 0
"""
# KEYS: origin; ARGV: node id. Releases only a lease this node holds.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def origin_key(bid: str) -> str:
    return key(bid, "origin")


async def claim(redis: Redis, bid: str, node_id: str, lease_s: int = LEASE_S) -> None:
    await redis.set(origin_key(bid), node_id, ex=lease_s)


async def claim_if(
    redis: Redis, bid: str, node_id: str, seen: str | None, lease_s: int = LEASE_S
) -> bool:
    """Claim the lease unless it moved since it was seen naming ``seen`` (None: nobody): a
    co-host starting the media where it is must not take the show from a host who just
    claimed it elsewhere."""
    script = redis.register_script(_CLAIM_IF)
    done: Any = await script(keys=[origin_key(bid)], args=[node_id, lease_s, seen or ""])
    return bool(done)


async def renew(redis: Redis, bids: Iterable[str], node_id: str, lease_s: int = LEASE_S) -> int:
    """Renew this node's leases of ``bids`` (each in its own slot: one call each), taking back
    lapsed ones; how many it holds now."""
    script = redis.register_script(_RENEW)  # EVALSHA; the script's text only the first time
    n = 0
    for bid in bids:
        n += int(await script(keys=[origin_key(bid)], args=[node_id, lease_s]))
    return n


async def release(redis: Redis, bid: str, node_id: str) -> bool:
    done: Any = await redis.register_script(_RELEASE)(keys=[origin_key(bid)], args=[node_id])
    return bool(done)


async def clear(redis: Redis, bid: str) -> None:
    """Nothing carries the broadcast any more (it ended)."""
    await redis.delete(origin_key(bid))


async def origin_of(redis: Redis, bid: str) -> str | None:
    raw: Any = await redis.get(origin_key(bid))
    return text(raw) if raw else None
