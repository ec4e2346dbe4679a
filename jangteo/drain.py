"""Taking a node out of service without stopping the shows on it: a drain.

The operator asks any node (``POST /api/nodes/{node}/drain``, or ``jangteo drain``): the flag
``jt:{nodes}:drain:<id>`` is set (core/nodes.py), and the node sees it at its next heartbeat (at
once when it answered the request itself). From then on:

- nobody new: ``/healthz`` answers 503 ``draining`` (a load balancer sends nobody here), the pages'
  node lists leave the node out, new WHIP and WHEP sessions are answered 503 ``draining`` with
  ``Retry-After`` (the pages go to another node) and new chat sockets are closed 1013;
- everyone here is let go: its viewers, ``BATCH_PER_S`` a second (their pages play from another
  node, which pulls the show from wherever it is composed), then its publishers (their studios
  publish through another node, which becomes the origin; the media here is handed over and
  closes), then its chat sockets (1012: they resume on another node from their last event);
- its heartbeat says ``draining``, ``sessions`` (what is left) and ``drained`` once nothing is:
  the operator stops the node then.

``DELETE /api/nodes/{node}/drain`` puts it back in service; a node that starts again serves.
"""

from __future__ import annotations

import asyncio
import logging
import time

from chat.hub import ChatHub
from core.tasks import TaskSet
from stream.hub import MediaHub

log = logging.getLogger(__name__)

BATCH_PER_S = 200  # viewers let go a second: the other nodes take them without a stampede
ROUND_S = 1.0
CLOSE_RESTART = 1012  # the chat socket's close code: "service restart", come back elsewhere
CLOSE_TRY_LATER = 1013  # a chat socket arriving at a draining node


class Drain:
    """This node's drain: :meth:`set` (asked here) or :meth:`heard` (the heartbeat read the
    flag) starts or stops it; :meth:`report` for the heartbeat."""

    def __init__(self, hub: MediaHub, chat: ChatHub) -> None:
        self.hub = hub
        self.chat = chat
        self._set_at = 0.0
        self._tasks = TaskSet()

    @property
    def active(self) -> bool:
        return self.hub.draining  # the media routes read it there

    def heard(self, on: bool, asked_at: float) -> None:
        """What the heartbeat read of the flag (asked at ``asked_at``, monotonic): a read older
        than this node's own last :meth:`set` (asked of this node) is out of date."""
        if asked_at >= self._set_at:
            self._apply(on)

    def set(self, on: bool) -> None:
        """Asked of this node itself (its flag is written too)."""
        self._set_at = time.monotonic()
        self._apply(on)

    def _apply(self, on: bool) -> None:
        if on == self.active:
            return
        self.hub.draining = on
        if on:
            log.info("draining: letting everyone go, taking nobody new")
            if not self._tasks:  # one that is still finishing its round goes on
                self._tasks.spawn(self._let_go(), name="drain")
        else:  # the round under way ends by itself (a session is never cut half way)
            log.info("back in service")

    def sessions(self) -> dict[str, int]:
        return {
            "publishers": sum(len(m.publishers) for m in self.hub.medias()),
            "viewers": sum(m.audience() for m in self.hub.audiences()),
            "chat": sum(len(c.clients) for c in self.chat.broadcasts.values()),
        }

    def report(self) -> dict[str, object]:
        """What the heartbeat says of the drain."""
        sessions = self.sessions()
        drained = self.active and not any(sessions.values())
        return {"draining": self.active, "drained": drained, "sessions": sessions}

    async def _let_go(self) -> None:
        """Rounds of ``ROUND_S`` while draining: each lets go of up to ``BATCH_PER_S`` viewers,
        then (no viewer left) the publishers and the chat sockets. Later rounds catch a session
        whose request passed the check just before the drain began."""
        while self.active:
            viewers = [(m, sid) for m in self.hub.audiences() for sid in list(m.viewers)]
            for media, sid in viewers[:BATCH_PER_S]:
                await media.remove_viewer(sid)
            if len(viewers) <= BATCH_PER_S:
                await self._publishers_and_chat()
            await asyncio.sleep(ROUND_S)  # the pace of the move, not a wait for something

    async def _publishers_and_chat(self) -> None:
        for media in self.hub.medias():
            for pid in list(media.publishers):
                await media.remove_publisher(pid)
        for chat in list(self.chat.broadcasts.values()):
            for client in tuple(chat.clients):
                await client.aclose(CLOSE_RESTART, "node draining: reconnect")

    async def aclose(self) -> None:
        await self._tasks.aclose()
