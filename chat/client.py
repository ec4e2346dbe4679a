"""One chat socket as the hub sees it.

Where the server's WebSocket protocol allows it (chat/wire.py), frames are written straight to the
socket's transport, their bytes built once for every socket (the hub writes a whole batch to its
sockets in one tight loop, chat/hub.py); a client whose transport holds more than MAX_BUFFERED
bytes, or has held some for longer than SLOW_AFTER_S, is too slow (:meth:`Client.backlog`).
Elsewhere: a bounded send queue and its own sender task (``send_text``); a client whose queue
fills, or whose oldest frame has been on the wire longer than SLOW_AFTER_S, is too slow. Either
way the hub closes a slow client with 4008 instead of delaying anyone else.
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

from .wire import SocketGone, Wire, text_frame

SEND_QUEUE = 1024  # frames queued for one client, at most
SLOW_AFTER_S = 3.0  # a client whose oldest unsent frame is older than this is too slow
MAX_BUFFERED = 1 << 20  # bytes a written client may leave unsent in its transport

Sender = Callable[[str], Awaitable[None]]
Closer = Callable[[int, str], Awaitable[None]]


class ClientState(enum.Enum):
    JOINING = "joining"
    LIVE = "live"
    CLOSED = "closed"


class Client:
    def __init__(
        self, claims: Claims, send: Sender, close: Closer, wire: Wire | None = None
    ) -> None:
        self.claims = claims
        self.id = secrets.token_hex(6)
        self._send = send
        self._close = close
        self.wire = wire  # straight onto the transport (chat/wire.py), when safe
        self.backlog_since: float | None = None  # since when its transport has held bytes
        self.state = ClientState.JOINING
        self.last_id: tuple[int, int] = (0, 0)
        self.held: list[dict[str, Any]] = []
        self.queue: asyncio.Queue[tuple[float, str]] = asyncio.Queue(maxsize=SEND_QUEUE)
        self._sending_since: float | None = None
        self.task: asyncio.Task[None] | None = None
        self.too_slow = False

    def start(self) -> None:
        if self.wire is None:  # written clients need no sender of their own
            self.task = asyncio.get_running_loop().create_task(
                self._run(), name=f"chat-send-{self.id}"
            )

    async def _run(self) -> None:
        try:
            while True:
                queued_at, frame = await self.queue.get()
                self._sending_since = queued_at  # how old the frame on the wire is
                await self._send(frame)
                self._sending_since = None
        except Exception:  # the socket went away; the receive loop notices and detaches
            self.state = ClientState.CLOSED

    def offer(self, frame: str, data: bytes | None = None, now: float | None = None) -> bool:
        """Send ``frame`` (``data``: its WebSocket bytes, when already built; ``now``: the
        monotonic time, when the caller has it); False if this client is closed or too slow."""
        if self.state is ClientState.CLOSED:
            return False
        if now is None:
            now = time.monotonic()
        if self.wire is not None:
            try:
                buffered = self.wire.send(data if data is not None else text_frame(frame.encode()))
            except SocketGone:
                self.state = ClientState.CLOSED  # the receive loop notices and detaches
                return False
            return self.backlog(buffered, now)
        stuck = self._sending_since is not None and now - self._sending_since > SLOW_AFTER_S
        if stuck or self.queue.full():
            self.too_slow = True
            self.state = ClientState.CLOSED
            return False
        self.queue.put_nowait((now, frame))
        return True

    def backlog(self, buffered: int, now: float) -> bool:
        """Note that the transport holds ``buffered`` bytes unsent at ``now``; False (and closed)
        if that makes this client too slow: over MAX_BUFFERED, or a backlog for SLOW_AFTER_S."""
        if buffered == 0:
            self.backlog_since = None
            return True
        if self.backlog_since is None:
            self.backlog_since = now
        if buffered > MAX_BUFFERED or now - self.backlog_since > SLOW_AFTER_S:
            self.too_slow = True
            self.state = ClientState.CLOSED
            return False
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
