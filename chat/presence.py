"""How many watch a broadcast, summed over every process and node.

Each process reports its own number to ``jt:{bid}:presence`` every ``PRESENCE_INTERVAL``: a
broadcast's chat does while it has sockets here (its sockets, or the WebRTC viewers here if
more: chat/hub.py), and :class:`MediaPresence` does for the broadcasts watched here without a
chat here (viewers whose chat went to another node, an edge's viewers, viewers who only watch).
:func:`watching` is the total as this process answers it: the others' fresh reports and its own
number now.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from redis.exceptions import RedisError

from core.keys import text
from core.numbers import fresh_presence, presence_key
from core.tasks import TaskSet

from .store import ChatStore

log = logging.getLogger(__name__)

PRESENCE_INTERVAL = 2.0
FRESH_S = PRESENCE_INTERVAL * 2.5  # a report older than this is a process gone


class MediaPresence:
    """Reports the viewers of the broadcasts with media here (``watched()``: bid → viewers) that
    have no chat here (``chatting(bid)``), as process ``process``; a broadcast no longer watched
    here is reported once more with 0."""

    def __init__(
        self,
        store: ChatStore,
        process: str,
        watched: Callable[[], dict[str, int]],
        chatting: Callable[[str], bool],
        every_s: float = PRESENCE_INTERVAL,
    ) -> None:
        self.store = store
        self.process = process
        self.watched = watched
        self.chatting = chatting
        self.every_s = every_s
        self._reported: set[str] = set()
        self._tasks = TaskSet()

    def start(self) -> None:
        self._tasks.spawn(self._loop(), name="media-presence")

    async def _loop(self) -> None:
        while True:
            try:
                await self.report()
            except (RedisError, OSError) as exc:  # Redis away: the next round reports
                log.debug("viewer presence not reported: %s", exc)  # the chat says so too
            await asyncio.sleep(self.every_s)

    async def report(self) -> None:
        now = {bid: n for bid, n in self.watched().items() if n and not self.chatting(bid)}
        gone = {bid: 0 for bid in self._reported - now.keys() if not self.chatting(bid)}
        for bid, n in (now | gone).items():
            await self.store.report_presence(bid, self.process, n, FRESH_S)
        self._reported = set(now)

    async def aclose(self) -> None:
        await self._tasks.aclose()


async def watching(store: ChatStore, bid: str, process: str, own: int) -> int:
    """Viewers of ``bid`` everywhere: the fresh reports of the other processes, and ``own``
    (this process's number now, fresher than its last report)."""
    raw = await store.redis.hgetall(presence_key(bid))
    others = {p: v for p, v in raw.items() if text(p) != process}
    total, _ = fresh_presence(others, int(time.time() * 1000), FRESH_S * 1000)
    return total + own
