"""A broadcast's restreams while its media runs on this process: one :class:`Pusher` per
destination, started when the media starts (or when a destination is added while live),
stopped when it is deleted or the show ends. Every ``SYNC_S`` it reads the destinations again
(one added through another process shows up here too) and writes each push's status where any
process answers from (``jt:{bid}:restream``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from typing import Any

from redis.exceptions import RedisError

from core.tasks import TaskSet, cancelling
from stream.encode.bus import BusSource
from stream.encode.encoders import Codec

from .destinations import Destination, DestinationStore
from .pusher import Pusher, tls_context

log = logging.getLogger(__name__)
SYNC_S = 5.0


class Restreamer:
    def __init__(
        self, bid: str, source: BusSource, store: DestinationStore, allow_private: bool,
        ca_file: str | None = None,
    ) -> None:  # fmt: skip
        self.bid = bid
        self.source = source
        self.store = store
        self.allow_private = allow_private
        self.ca_file = ca_file
        self._syncing = asyncio.Lock()  # the loop and the API both sync
        self.pushers: dict[str, Pusher] = {}
        self._tasks = TaskSet()  # the sync loop
        self._writes = TaskSet()  # statuses being kept
        self._unwritten: dict[str, dict[str, Any]] = {}  # the latest status of each, not yet kept

    def start(self) -> None:
        self._tasks.spawn(self._sync_loop(), name=f"restream-{self.bid}")

    async def _sync_loop(self) -> None:
        while True:
            try:
                await self.sync()
            except Exception as exc:  # Redis away, a record unreadable: the next round retries
                if cancelling():
                    raise
                log.warning("restream sync of %s failed: %s", self.bid, exc)
            for did, pusher in self.pushers.items():  # a heartbeat: the statuses are current
                self._report(did, pusher.snapshot())
            await asyncio.sleep(SYNC_S)

    async def sync(self) -> None:
        """Start pushes for new destinations, stop those deleted."""
        async with self._syncing:
            wanted = {d.id: d for d in await self.store.all(self.bid)}
            for did in [d for d in self.pushers if d not in wanted]:
                await self.pushers.pop(did).aclose()
            for did, destination in wanted.items():
                if did not in self.pushers and not self._tasks.closed:
                    try:
                        self._start(destination)
                    except Exception:  # one destination's trouble is not the others'
                        log.exception("restream %s: cannot start", did)

    def tls(self) -> ssl.SSLContext:  # made when first needed, in a pusher's thread
        return tls_context(self.ca_file)

    def _start(self, destination: Destination) -> None:
        names = [r.name for r in self.source.ladder]
        rung = destination.rendition if destination.rendition in names else names[0]
        pusher = Pusher(
            destination, self.source.bus(Codec.H264, rung), self.source.bus(Codec.AAC),
            lambda status: self._report(destination.id, status), self.allow_private,
            self.tls,
        )  # fmt: skip
        self.pushers[destination.id] = pusher
        pusher.start()

    def _report(self, did: str, status: dict[str, Any]) -> None:
        """Keep ``status`` where every process reads it: one writer per destination, which
        always writes the latest (statuses never land out of order)."""
        if did not in self.pushers:  # deleted: its status goes with it
            return
        writing = did in self._unwritten
        self._unwritten[did] = status | {"updated": int(time.time() * 1000)}
        if not writing and not self._writes.closed:
            self._writes.spawn(self._write_status(did))

    async def _write_status(self, did: str) -> None:
        while (status := self._unwritten.get(did)) is not None:
            with contextlib.suppress(RedisError, OSError):
                await self.store.set_status(self.bid, did, status)
            if self._unwritten.get(did) is status:
                del self._unwritten[did]

    async def hand_off(self) -> None:
        """Stop pushing without a word: the broadcast's new origin pushes now and keeps the
        statuses (an "idle" from here would overwrite its "live")."""
        pushers = list(self.pushers.values())
        self.pushers.clear()  # their last reports go nowhere
        await self._tasks.aclose()
        await self._writes.aclose()
        await asyncio.gather(*(p.aclose() for p in pushers), return_exceptions=True)

    async def aclose(self) -> None:
        await self._tasks.aclose()
        pushers = list(self.pushers.values())
        await asyncio.gather(*(p.aclose() for p in pushers), return_exceptions=True)
        self.pushers.clear()
        await self._writes.drain(5)  # the last statuses ("idle") kept
