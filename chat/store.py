"""Chat state in Redis: the stream, settings, bans, slow mode, rate limits, hearts, presence.

Keys (all in the broadcast's slot): ``jt:{bid}:chat`` (stream), ``jt:{bid}:chatcfg`` (hash),
``jt:{bid}:ban:<uid>``, ``jt:{bid}:slow:<uid>``, ``jt:{bid}:rl:<uid>``, ``jt:{bid}:deleted`` (set),
``jt:{bid}:hearts``, ``jt:{bid}:presence`` (hash: process → "count|ms").

Sending is ONE Lua script: ban, freeze, slow mode and the token bucket are checked and the message
appended atomically, so the rules hold across any number of processes.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from redis.asyncio import Redis

from core.events import STREAM_MAXLEN, encode_event, stream_key
from core.keys import key, text
from core.numbers import fresh_presence, presence_key, seen_key, stats_key

# KEYS: stream, cfg, ban, slow, rl, the broadcast's numbers
# ARGV: event json, now ms, bypass_freeze, bypass_slow, bypass_rate, rate capacity, rate window ms,
#       maxlen
_SEND = """
if redis.call('EXISTS', KEYS[3]) == 1 then
  return {'banned', redis.call('PTTL', KEYS[3])}
end
local cfg = redis.call('HMGET', KEYS[2], 'frozen', 'slow_mode_s')
if cfg[1] == '1' and ARGV[3] ~= '1' then return {'frozen', 0} end
local slow = tonumber(cfg[2] or '0') or 0
if slow > 0 and ARGV[4] ~= '1' then
  local ttl = redis.call('PTTL', KEYS[4])
  if ttl > 0 then return {'slow_mode', ttl} end
end
local now = tonumber(ARGV[2])
if ARGV[5] ~= '1' then
  local cap = tonumber(ARGV[6])
  local window = tonumber(ARGV[7])
  local b = redis.call('HMGET', KEYS[5], 't', 'at')
  local tokens = tonumber(b[1] or cap)
  local at = tonumber(b[2] or now)
  tokens = math.min(cap, tokens + (now - at) * cap / window)
  if tokens < 1 then
    return {'rate_limited', math.ceil((1 - tokens) * window / cap)}
  end
  redis.call('HSET', KEYS[5], 't', tostring(tokens - 1), 'at', tostring(now))
  redis.call('PEXPIRE', KEYS[5], window * 2)
end
if slow > 0 and ARGV[4] ~= '1' then
  redis.call('SET', KEYS[4], '1', 'PX', slow * 1000)
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[8], '*', 'e', ARGV[1])
redis.call('HINCRBY', KEYS[6], 'chat_messages', 1)
return {'ok', id}
"""

# KEYS: hearts, stream; ARGV: count, maxlen
_HEARTS = """
local total = redis.call('INCRBY', KEYS[1], ARGV[1])
local ev = '{"type":"hearts","total":' .. total .. '}'
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', 'e', ev)
return total
"""


@dataclasses.dataclass(frozen=True)
class ChatSettings:
    slow_mode_s: int = 0
    frozen: bool = False
    banned_words: tuple[str, ...] = ()
    announcement: str | None = None

    def public(self) -> dict[str, Any]:
        return {"slow_mode_s": self.slow_mode_s, "frozen": self.frozen}


@dataclasses.dataclass(frozen=True)
class SendResult:
    ok: bool
    id: str | None = None
    code: str | None = None
    retry_ms: int = 0


class ChatStore:
    def __init__(self, redis: Redis, rate_capacity: int = 5, rate_window_s: float = 10.0) -> None:
        self.redis = redis
        self.rate_capacity = rate_capacity
        self.rate_window_ms = int(rate_window_s * 1000)
        self._send = redis.register_script(_SEND)
        self._hearts = redis.register_script(_HEARTS)
        self._settings_cache: dict[str, tuple[float, ChatSettings]] = {}

    async def send(
        self,
        bid: str,
        uid: str,
        event: dict[str, Any],
        *,
        bypass_freeze: bool,
        bypass_slow: bool,
        bypass_rate: bool,
    ) -> SendResult:
        res = await self._send(
            keys=[
                stream_key(bid),
                key(bid, "chatcfg"),
                key(bid, f"ban:{uid}"),
                key(bid, f"slow:{uid}"),
                key(bid, f"rl:{uid}"),
                stats_key(bid),
            ],
            args=[
                encode_event(event),
                int(time.time() * 1000),
                int(bypass_freeze),
                int(bypass_slow),
                int(bypass_rate),
                self.rate_capacity,
                self.rate_window_ms,
                STREAM_MAXLEN,
            ],
        )
        status, value = text(res[0]), res[1]
        if status == "ok":
            return SendResult(True, id=text(value))
        return SendResult(False, code=status, retry_ms=max(0, int(value)))

    async def add_hearts(self, bid: str, count: int) -> int:
        total = await self._hearts(
            keys=[key(bid, "hearts"), stream_key(bid)], args=[count, STREAM_MAXLEN]
        )
        return int(total)

    async def hearts(self, bid: str) -> int:
        return int(await self.redis.get(key(bid, "hearts")) or 0)

    async def seen(self, bid: str, uid: str) -> None:
        """``uid`` joined: one more unique viewer if it is the first time (HyperLogLog)."""
        await self.redis.pfadd(seen_key(bid), uid)

    # -- settings --------------------------------------------------------------------------------
    async def settings(self, bid: str, max_age: float = 0.0) -> ChatSettings:
        cached = self._settings_cache.get(bid)
        if cached and time.monotonic() - cached[0] <= max_age:
            return cached[1]
        raw = {text(k): text(v) for k, v in (await self.redis.hgetall(key(bid, "chatcfg"))).items()}
        s = ChatSettings(
            slow_mode_s=int(raw.get("slow_mode_s", "0") or 0),
            frozen=raw.get("frozen") == "1",
            banned_words=tuple(json.loads(raw.get("banned_words", "[]"))),
            announcement=raw.get("announcement") or None,
        )
        self._settings_cache[bid] = (time.monotonic(), s)
        return s

    async def put_settings(self, bid: str, s: ChatSettings) -> None:
        await self.redis.hset(
            key(bid, "chatcfg"),
            mapping={
                "slow_mode_s": s.slow_mode_s,
                "frozen": "1" if s.frozen else "0",
                "banned_words": json.dumps(list(s.banned_words), ensure_ascii=False),
                "announcement": s.announcement or "",
            },
        )
        self._settings_cache.pop(bid, None)

    # -- moderation ------------------------------------------------------------------------------
    async def ban(self, bid: str, uid: str, duration_s: int | None) -> None:
        if duration_s:
            await self.redis.set(key(bid, f"ban:{uid}"), "1", ex=duration_s)
        else:
            await self.redis.set(key(bid, f"ban:{uid}"), "1")

    async def unban(self, bid: str, uid: str) -> bool:
        return bool(await self.redis.delete(key(bid, f"ban:{uid}")))

    async def mark_deleted(self, bid: str, entry_id: str) -> bool:
        """True if ``entry_id`` is a chat message in history that was not deleted before."""
        found: Any = await self.redis.xrange(stream_key(bid), entry_id, entry_id, count=1)
        if not found:
            return False
        event = json.loads(found[0][1][b"e"])
        if event.get("type") != "chat":
            return False
        return bool(await self.redis.sadd(key(bid, "deleted"), entry_id))

    async def deleted(self, bid: str, ids: list[str]) -> set[str]:
        if not ids:
            return set()
        flags = await self.redis.smismember(key(bid, "deleted"), ids)
        return {i for i, f in zip(ids, flags, strict=True) if f}

    # -- presence --------------------------------------------------------------------------------
    async def report_presence(self, bid: str, process: str, count: int, fresh_s: float) -> int:
        now = int(time.time() * 1000)
        k = presence_key(bid)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(k, process, f"{count}|{now}")
            pipe.pexpire(k, int(fresh_s * 4000))
            pipe.hgetall(k)
            _, _, raw = await pipe.execute()
        total, stale = fresh_presence(raw, now, fresh_s * 1000)
        if stale:
            await self.redis.hdel(k, *stale)
        return total
