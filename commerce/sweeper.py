"""Expire holds whose time is up, returning their stock (exactly once, whatever runs it).

Every process runs one; two sweepers racing on the same hold are harmless: the move script
finds the order already expired and does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time

from redis.asyncio import Redis

from core.broadcasts import recent_ids
from core.storage import keep_doing
from core.tasks import cancel_and_wait

from .orders import Orders

log = logging.getLogger(__name__)


PRUNE_EVERY = 60  # rounds between two passes over the order indexes


class Sweeper:
    def __init__(self, redis: Redis, orders: Orders, interval: float = 1.0) -> None:
        self.redis = redis
        self.orders = orders
        self.interval = interval
        self.expired = 0
        self.rounds = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="order-sweeper")

    async def aclose(self) -> None:
        await cancel_and_wait(self._task)

    async def sweep_once(self, now_ms: int | None = None, bids: list[str] | None = None) -> int:
        """Expire every due hold (of ``bids``, default: every recent broadcast); how many."""
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        if bids is None:
            bids = await recent_ids(self.redis)
        n = 0
        prune = self.rounds % PRUNE_EVERY == 0
        self.rounds += 1
        for bid in bids:
            for oid in await self.orders.due(bid, now_ms):
                status, _ = await self.orders.move(oid, "expired", sweeping=True, now_ms=now_ms)
                if status == "ok":
                    n += 1
            if prune:  # unpaid records expire; their index entries go here
                await self.orders.prune_index(bid)
        self.expired += n
        return n

    async def _run(self) -> None:
        await keep_doing(self.sweep_once, lambda: self.interval, "order sweeper", log)
