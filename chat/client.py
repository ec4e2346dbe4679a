"""One chat socket as the hub sees it: a bounded send queue and its own sender task.

A client whose queue fills, or whose oldest frame has been on the wire longer than SLOW_AFTER_S,
is marked too slow (the hub closes it with 4008) instead of delaying anyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from core.tasks import cancel_and_wait
from core.tokens import Claims

SEND_QUEUE = 1024  # frames queued for one client, at most
SLOW_AFTER_S = 3.0  # a client whose oldest unsent frame is older than this is too slow

Sender = Callable[[str], Awaitable[None]]
Closer = Callable[[int, str], Awaitable[None]]


class ClientState(enum.Enum):
    JOINING = "joining"
    LIVE = "live"
    CLOSED = "closed"


class Client:
    def __init__(self, claims: Claims, send: Sender, close: Closer) -> None:
        self.claims = claims
        self.id = secrets.token_hex(6)
        self._send = send
        self._close = close
        self.state = ClientState.JOINING
        self.last_id: tuple[int, int] = (0, 0)
        self.held: list[dict[str, Any]] = []
        self.queue: asyncio.Queue[tuple[float, str]] = asyncio.Queue(maxsize=SEND_QUEUE)
        self._sending_since: float | None = None
        self.task: asyncio.Task[None] | None = None
        self.too_slow = False

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run(), name=f"chat-send-{self.id}")

    async def _run(self) -> None:
        try:
            while True:
                queued_at, frame = await self.queue.get()
                self._sending_since = queued_at  # how old the frame on the wire is
                await self._send(frame)
                self._sending_since = None
        except Exception:  # the socket went away; the receive loop notices and detaches
            self.state = ClientState.CLOSED

    def offer(self, frame: str) -> bool:
        if self.state is ClientState.CLOSED:
            return False
        now = time.monotonic()
        stuck = self._sending_since is not None and now - self._sending_since > SLOW_AFTER_S
        if stuck or self.queue.full():
            self.too_slow = True
            self.state = ClientState.CLOSED
            return False
        self.queue.put_nowait((now, frame))
        return True

    def visible(self, event: dict[str, Any]) -> bool:
        to = event.get("to")
        return to is None or to == self.claims.user_id

    async def aclose(self, code: int | None = None, reason: str = "") -> None:
        self.state = ClientState.CLOSED
        if self.task is not None and self.task is not asyncio.current_task():
            await cancel_and_wait(self.task)
        if code is not None:
            with contextlib.suppress(Exception):
                await self._close(code, reason)
