"""A small chat client for tests: a websockets connection that collects events."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect


def ws_url(base_url: str, bid: str, token: str | None, last_id: str | None = None) -> str:
    url = base_url.replace("http://", "ws://") + f"/ws/{bid}"
    params = []
    if token:
        params.append(f"token={token}")
    if last_id:
        params.append(f"last_id={last_id}")
    return url + ("?" + "&".join(params) if params else "")


class ChatClient:
    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self.closed: tuple[int | None, str | None] | None = None
        self._task = asyncio.get_running_loop().create_task(self._pump())

    @classmethod
    async def open(cls, base_url: str, bid: str, token: str, last_id: str | None = None,
                   **kw: Any) -> ChatClient:  # fmt: skip
        conn = await connect(ws_url(base_url, bid, token, last_id), **kw)
        return cls(conn)

    async def _pump(self) -> None:
        try:
            async for frame in self.conn:
                doc = json.loads(frame)
                self.events.extend(doc if isinstance(doc, list) else [doc])
                self._changed.set()
        except Exception:
            pass
        self.closed = (self.conn.close_code, self.conn.close_reason)
        self._changed.set()

    async def send(self, **msg: Any) -> None:
        await self.conn.send(json.dumps(msg, ensure_ascii=False))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]

    async def wait(self, pred: Callable[[ChatClient], bool], timeout: float = 10) -> None:
        async def _wait() -> None:
            while not pred(self):
                if self.closed is not None:
                    raise ConnectionError(f"closed {self.closed} before the condition held")
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(_wait(), timeout)

    async def wait_for(self, kind: str, pred: Callable[[dict[str, Any]], bool] = lambda e: True,
                       timeout: float = 10) -> dict[str, Any]:  # fmt: skip
        await self.wait(lambda c: any(pred(e) for e in c.of(kind)), timeout)
        return next(e for e in self.of(kind) if pred(e))

    async def wait_closed(self, timeout: float = 10) -> tuple[int | None, str | None]:
        await asyncio.wait_for(asyncio.shield(self._task), timeout)
        assert self.closed is not None
        return self.closed

    async def aclose(self) -> None:
        await self.conn.close()
        await self._task
