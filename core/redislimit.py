"""Token buckets in Redis: limits that hold across every process of a deployment (new guest
identities per address, …). One Lua call per take; the bucket key expires once it is full again.
"""

from __future__ import annotations

import math
import time
from typing import Any

from redis.asyncio import Redis

# KEYS: bucket; ARGV: capacity, tokens per ms, now ms, cost → {1, 0} or {0, retry ms}
_TAKE = """
local cap = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local b = redis.call('HMGET', KEYS[1], 't', 'at')
local tokens = tonumber(b[1] or cap)
local at = tonumber(b[2] or now)
tokens = math.min(cap, tokens + math.max(0, now - at) * rate)
if tokens < cost then return {0, math.ceil((cost - tokens) / rate)} end
redis.call('HSET', KEYS[1], 't', tostring(tokens - cost), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(cap / rate) + 1000)
return {1, 0}
"""


class RedisBuckets:
    def __init__(self, redis: Redis) -> None:
        self._take = redis.register_script(_TAKE)

    async def take(self, key: str, per_minute: float, burst: float, cost: float = 1) -> float:
        """Take ``cost`` from the bucket at ``key``: 0 when allowed, else the seconds to wait."""
        res: Any = await self._take(
            keys=[key], args=[burst, per_minute / 60_000, int(time.time() * 1000), cost]
        )
        return 0.0 if int(res[0]) else math.ceil(int(res[1]) / 100) / 10
