"""Broadcasts: the state machine and its Redis records.

``scheduled → live → ended`` (and ``scheduled → ended``). One transition function checks the move;
:class:`BroadcastStore` applies it atomically in Redis and publishes a ``status`` event into the
broadcast's stream.

Keys: ``jt:{bid}:meta`` (hash), ``jt:{bid}:staff`` (hash: user id → role of every co-host and
moderator token issued), ``jt:broadcasts`` (sorted set of ids by creation time, the one key
outside a broadcast's slot).
"""

from __future__ import annotations

import dataclasses
import enum
import secrets
import time
from typing import Any

from redis.asyncio import Redis

from .events import publish
from .keys import key, text
from .problems import Conflict, Forbidden, NotFound
from .tokens import Claims, Role


class Status(enum.StrEnum):
    SCHEDULED = "scheduled"
    LIVE = "live"
    ENDED = "ended"


_MOVES: dict[Status, frozenset[Status]] = {
    Status.SCHEDULED: frozenset({Status.LIVE, Status.ENDED}),
    Status.LIVE: frozenset({Status.ENDED}),
    Status.ENDED: frozenset(),
}


class BadTransition(Conflict):
    default_code = "bad_state"


def transition(current: Status, target: Status) -> Status:
    """The one place that decides which status moves are allowed."""
    if target not in _MOVES[current]:
        code = "broadcast_ended" if current is Status.ENDED else "bad_state"
        raise BadTransition(
            f"broadcast is {current.value}; cannot become {target.value}", code=code
        )
    return target


def meta_key(bid: str) -> str:
    return key(bid, "meta")


def merchant_shows_key(merchant_id: str) -> str:
    """A merchant's broadcasts (zset by creation), in the merchant's own slot."""
    return f"jt:{{m:{merchant_id}}}:shows"


INDEX_KEY = "jt:broadcasts"

# KEYS[1] meta; ARGV: expected status, new status, timestamp field, now_ms
_CAS_STATUS = """
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return {err='missing'} end
if cur ~= ARGV[1] then return cur end
redis.call('HSET', KEYS[1], 'status', ARGV[2], ARGV[3], ARGV[4])
return 'OK'
"""


LANDSCAPE, PORTRAIT = "landscape", "portrait"
ORIENTATIONS = (LANDSCAPE, PORTRAIT)


@dataclasses.dataclass(frozen=True)
class Broadcast:
    id: str
    title: str
    status: Status
    created_at: int  # epoch ms
    started_at: int | None
    ended_at: int | None
    host_user: str
    orientation: str = LANDSCAPE  # the picture's shape, for the whole show
    merchant_id: str = ""  # whose show: a merchant's shows add up (forecast)

    @property
    def portrait(self) -> bool:
        return self.orientation == PORTRAIT

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "status": self.status.value,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "orientation": self.orientation,
            "merchant_id": self.merchant_id or f"m_{self.id}",
        }


def _opt_int(raw: str | None) -> int | None:
    return int(raw) if raw else None


def new_broadcast_id() -> str:
    return "b" + secrets.token_hex(5)


RECENT_S = 7 * 24 * 3600


async def recent_ids(redis: Redis, within_s: float = RECENT_S) -> list[str]:
    """Broadcasts created in the last ``within_s`` (what background workers look after)."""
    since = (time.time() - within_s) * 1000
    raw: Any = await redis.zrangebyscore(INDEX_KEY, since, "+inf")
    return [r.decode() if isinstance(r, bytes) else str(r) for r in raw]


class BroadcastStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._cas = redis.register_script(_CAS_STATUS)

    async def create(
        self,
        title: str,
        host_user: str,
        bid: str | None = None,
        orientation: str = LANDSCAPE,
        merchant_id: str | None = None,
    ) -> Broadcast:
        if orientation not in ORIENTATIONS:
            raise ValueError(f"orientation: one of {', '.join(ORIENTATIONS)}")
        bid = bid or new_broadcast_id()
        merchant = merchant_id or f"m_{bid}"  # one merchant per broadcast unless told
        now = int(time.time() * 1000)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                meta_key(bid),
                mapping={
                    "id": bid,
                    "title": title,
                    "status": Status.SCHEDULED.value,
                    "created_at": now,
                    "host_user": host_user,
                    "orientation": orientation,
                    "merchant_id": merchant,
                },
            )
            await pipe.execute()
        # the indexes live in their own slots (a cluster's transaction keeps to one slot); a
        # broadcast missing from them for a moment is only not yet swept or forecast
        await self.redis.zadd(INDEX_KEY, {bid: now})
        await self.redis.zadd(merchant_shows_key(merchant), {bid: now})
        return Broadcast(
            bid, title, Status.SCHEDULED, now, None, None, host_user, orientation, merchant
        )

    async def of_merchant(self, merchant_id: str) -> list[str]:
        """The merchant's broadcasts, oldest first."""
        raw: Any = await self.redis.zrange(merchant_shows_key(merchant_id), 0, -1)
        return [text(r) for r in raw]

    async def get(self, bid: str) -> Broadcast:
        raw = await self.redis.hgetall(meta_key(bid))
        if not raw:
            raise NotFound(f"no broadcast {bid!r}")
        f = {text(k): text(v) for k, v in raw.items()}
        return Broadcast(
            id=f["id"],
            title=f["title"],
            status=Status(f["status"]),
            created_at=int(f["created_at"]),
            started_at=_opt_int(f.get("started_at")),
            ended_at=_opt_int(f.get("ended_at")),
            host_user=f.get("host_user", ""),
            orientation=f.get("orientation", LANDSCAPE),
            merchant_id=f.get("merchant_id", ""),
        )

    async def move(self, bid: str, target: Status) -> Broadcast:
        """Apply ``current → target`` atomically; a lost race re-checks against the new status."""
        for _ in range(3):
            current = (await self.get(bid)).status
            transition(current, target)
            field = "started_at" if target is Status.LIVE else "ended_at"
            now = int(time.time() * 1000)
            result = await self._cas(
                keys=[meta_key(bid)], args=[current.value, target.value, field, now]
            )
            if result == b"OK":
                await publish(
                    self.redis, bid, {"type": "status", "status": target.value, "ts": now}
                )
                return await self.get(bid)
        raise BadTransition("broadcast status changed concurrently; try again")

    async def add_staff(self, bid: str, user_id: str, role: Role) -> None:
        """Remember that ``user_id`` holds a staff role here (bans check who outranks whom)."""
        await self.redis.hset(key(bid, "staff"), user_id, role.value)

    async def role_of(self, bid: str, user_id: str) -> Role:
        """The role ``user_id`` holds in this broadcast (viewer unless it was given another)."""
        broadcast = await self.get(bid)
        if user_id == broadcast.host_user:
            return Role.HOST
        raw = await self.redis.hget(key(bid, "staff"), user_id)
        return Role(text(raw)) if raw else Role.VIEWER

    async def ensure_live(self, bid: str) -> Broadcast:
        b = await self.get(bid)
        if b.status is Status.SCHEDULED:
            try:
                return await self.move(bid, Status.LIVE)
            except BadTransition:
                b = await self.get(bid)
        if b.status is Status.ENDED:
            raise Conflict("the broadcast has ended", code="broadcast_ended")
        return b


# co-hosts pin only when the host allows it: the hash jt:{bid}:cohost, field can_pin 1/0
def cohost_key(bid: str) -> str:
    return key(bid, "cohost")


async def cohost_can_pin(redis: Redis, bid: str) -> bool:
    return text(await redis.hget(cohost_key(bid), "can_pin") or b"0") == "1"


async def check_pin_allowed(redis: Redis, bid: str, who: Claims | None) -> None:
    """A co-host pins and unpins only when the host allowed it (403 ``cohost_not_allowed``)."""
    if who is not None and who.role is Role.COHOST and not await cohost_can_pin(redis, bid):
        raise Forbidden("the host has not allowed co-hosts to pin", code="cohost_not_allowed")
