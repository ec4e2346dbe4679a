"""Nodes of a deployment: every ``jangteo serve`` sharing one Redis says who it is, where it is
reached and how busy it is, every few seconds; the operator lists them (``GET /api/nodes``).

Each node keeps ``jt:{nodes}:node:<id>`` (JSON, expiring ``TTL_S`` after its last heartbeat) and
its id in the set ``jt:{nodes}:ids``; the hash tag keeps them in one Cluster slot, so a listing is
one ``MGET``. A node that stops cleanly removes itself; one that dies is gone from the list once
its key expires (the listing prunes ids whose key is gone). ``jt:{nodes}:drain:<id>`` is set
while the operator drains the node (jangteo/drain.py); the node reads it with each heartbeat.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from .keys import text
from .storage import keep_doing
from .tasks import cancel_and_wait

log = logging.getLogger(__name__)

EVERY_S = 5.0
TTL_S = 15  # three missed heartbeats and a node is gone
IDS = "jt:{nodes}:ids"


DRAIN_KEPT_S = 7 * 86400  # a drain asked of a node that never comes back is forgotten


def node_key(node_id: str) -> str:
    return f"jt:{{nodes}}:node:{node_id}"


def drain_key(node_id: str) -> str:
    """Set while the operator has node ``node_id`` drained (jangteo/drain.py)."""
    return f"jt:{{nodes}}:drain:{node_id}"


async def set_drain(redis: Redis, node_id: str, on: bool) -> None:
    if on:
        await redis.set(drain_key(node_id), "1", ex=DRAIN_KEPT_S)
    else:
        await redis.delete(drain_key(node_id))


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class NodeRegistry:
    """This node's heartbeat. ``counts()`` gives what it carries now (``broadcasts``, ``viewers``,
    its drain's state)."""

    def __init__(
        self,
        redis: Redis,
        node_id: str,
        url: str,
        counts: Callable[[], dict[str, Any]],
        every_s: float = EVERY_S,
        ttl_s: int = TTL_S,
        on_beat: Callable[[], Awaitable[object]] | None = None,
        relay: Callable[[], str] = str,
        on_drain: Callable[[bool, float], object] | None = None,
    ) -> None:
        self.redis = redis
        self.node_id = node_id
        self.url = url
        self.counts = counts
        self.every_s = every_s
        self.ttl_s = ttl_s
        self.on_beat = on_beat  # more to renew with each heartbeat (the origin leases)
        self.relay = relay  # host:port of this node's relay listener ("" for none)
        # told at each heartbeat whether the operator drains the node, and when it was read
        self.on_drain = on_drain
        self.started_at = int(time.time() * 1000)
        self._last = (time.monotonic(), _cpu_s())
        self._task: asyncio.Task[None] | None = None

    def record(self) -> dict[str, Any]:
        """What this node says of itself: ``load`` is this process's CPU (cores) since the last
        heartbeat, ``loadavg`` the machine's 1-minute load per core."""
        now, cpu = time.monotonic(), _cpu_s()
        t0, c0 = self._last
        self._last = (now, cpu)
        cores = os.cpu_count() or 1
        return {"id": self.node_id, "url": self.url, "relay": self.relay(), **self.counts(),
                "load": round((cpu - c0) / max(now - t0, 1e-3), 3),
                "loadavg": round(os.getloadavg()[0] / cores, 3), "cores": cores,
                "started_at": self.started_at, "at": int(time.time() * 1000)}  # fmt: skip

    async def beat(self) -> None:
        if self.on_drain is not None:
            asked = time.monotonic()
            self.on_drain(bool(await self.redis.exists(drain_key(self.node_id))), asked)
        raw = json.dumps(self.record(), ensure_ascii=False)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(node_key(self.node_id), raw, ex=self.ttl_s)
            pipe.sadd(IDS, self.node_id)
            await pipe.execute()
        if self.on_beat is not None:
            await self.on_beat()

    async def start(self) -> None:
        """Beat from now on; a node that starts serves (a drain asked of it before is over)."""
        try:
            await self.redis.delete(drain_key(self.node_id))
        except (RedisError, OSError) as exc:
            log.warning("node %s: could not clear its drain: %s", self.node_id, exc)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="node-heartbeat")

    async def aclose(self) -> None:
        await cancel_and_wait(self._task)
        try:  # leaving cleanly: gone from the list at once
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.delete(node_key(self.node_id))
                pipe.srem(IDS, self.node_id)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("node %s: could not leave the registry: %s", self.node_id, exc)

    async def _run(self) -> None:
        await keep_doing(self.beat, lambda: self.every_s, "node heartbeat", log)


async def node(redis: Redis, node_id: str) -> dict[str, Any] | None:
    """One node's last heartbeat, if it is alive."""
    raw: Any = await redis.get(node_key(node_id))
    return json.loads(raw) if raw else None


async def nodes(redis: Redis) -> list[dict[str, Any]]:
    """The nodes heard from within their TTL, by id; ids of nodes gone are pruned."""
    ids = sorted(text(i) for i in await redis.smembers(IDS))
    if not ids:
        return []
    raw: Any = await redis.mget([node_key(i) for i in ids])
    alive, gone = [], []
    now = int(time.time() * 1000)
    for node_id, value in zip(ids, raw, strict=True):
        if value is None:
            gone.append(node_id)
            continue
        try:
            doc = json.loads(value)
        except ValueError:
            gone.append(node_id)
            continue
        doc["age_ms"] = max(0, now - int(doc.get("at", now)))
        alive.append(doc)
    if gone:
        await redis.srem(IDS, *gone)
    return alive
