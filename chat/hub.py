"""Chat fan-out on one process: ONE Redis Streams reader per broadcast, many local sockets.

The reader XREADs new entries and turns a batch into ONE frame (serialised once: a JSON object for
one event, an array for several; its WebSocket bytes built once, chat/wire.py). Events gather for
``batch_s`` after each batch, and a lone event then waits up to one more ``batch_s`` for company: a
frame costs each socket one write whatever it holds, so under one event per ``batch_s`` two events
share a write. Sockets that have every earlier event ("in step") get the frame in one tight loop,
one ``transport.write`` each; their unsent bytes are checked every SWEEP_S, and a client over the
limits of chat/client.py is closed (4008, too slow) without delaying anyone. The others (joining,
catching up, the recipient of a private event, ``send_text`` clients with their bounded queues) are
offered the batch one by one. A joining client is registered before its history is read: events that
arrive meanwhile are held and then sent if they are newer than the history, so no event is lost or
repeated. A Redis error in the reader is treated as a possible gap: it reconnects and resumes from
its last id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from core import metrics
from core.events import stream_key
from core.keys import text
from core.tasks import TaskSet, cancel_all, cancelling
from core.tokens import Claims, Role

from .client import Client, ClientState
from .connections import Connections
from .entries import decode_entry, frame_of, id_key
from .presence import FRESH_S, PRESENCE_INTERVAL
from .store import ChatStore
from .wire import Fanout, text_frame

log = logging.getLogger(__name__)

HISTORY = 50
SWEEP_S = 0.25  # how often the in-step sockets' unsent bytes are checked
HEARTS_INTERVAL = 0.2
CLOSE_TOO_SLOW = 4008

# well under redis-py's default socket timeout (5 s): an idle broadcast's XREAD must come back
# before the read times out, or the reader would reconnect (and treat it as a gap) every 5 s
XREAD_BLOCK_MS = 2000


LineHook = Callable[[str, Claims, str, str], Awaitable[object]]


class BroadcastChat:
    def __init__(
        self, bid: str, redis: Redis, store: ChatStore, process: str, batch_s: float = 0.05
    ) -> None:
        self.bid = bid
        self.batch_s = batch_s
        self.redis = redis
        self.store = store
        self.process = process
        self.clients: set[Client] = set()
        # every client is either in step (wired, live, has every event up to ``sent_to``; its
        # last_id is written back when it leaves) or behind (offered each batch one by one)
        self._step: Fanout[Client] = Fanout()
        self._behind: dict[Client, None] = {}
        self.sent_to: tuple[int, int] = (0, 0)
        self.clock: Callable[[], float] = time.monotonic
        self._swept = 0.0
        self.cursor: str = "$"
        self.hearts_pending = 0
        self.viewers = 0
        self.extra_viewers: Callable[[], int] = lambda: 0
        self.deliveries = 0
        self.dropped_slow = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._reaper = TaskSet()
        # in-process consumers of every event batch, in order (the overlay feed); a batch of
        # [{"type": "reset"}] means events may have been lost: reload state
        self.listeners: list[Callable[[list[dict[str, Any]]], None]] = []

    async def start(self) -> None:
        last: Any = await self.redis.xrevrange(stream_key(self.bid), count=1)
        self.cursor = text(last[0][0]) if last else "0-0"
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._read(), name=f"chat-read-{self.bid}"),
            loop.create_task(self._hearts(), name=f"chat-hearts-{self.bid}"),
            loop.create_task(self._presence(), name=f"chat-presence-{self.bid}"),
        ]

    async def aclose(self) -> None:
        await cancel_all(self._tasks)
        await asyncio.gather(*(c.aclose(1001, "server closing") for c in self.clients))
        self.clients.clear()
        self._step.clear()
        self._behind.clear()
        await self._reaper.aclose()

    # -- reading and fan-out ---------------------------------------------------------------------
    async def _read(self) -> None:
        key = stream_key(self.bid)
        pending: list[dict[str, Any]] = []
        lone_until = 0.0  # a lone event waits for company until then
        while True:
            block = XREAD_BLOCK_MS
            if pending:  # one event, read before lone_until: wait for another until then
                block = max(1, int((lone_until - self.clock()) * 1000))
            try:
                got: Any = await self.redis.xread({key: self.cursor}, count=1000, block=block)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if cancelling():
                    raise asyncio.CancelledError from exc
                if pending:
                    self.dispatch(pending)
                    pending = []
                log.warning("chat reader: %s; reconnecting", exc, extra={"bid": self.bid})
                await asyncio.sleep(0.5)
                await self._after_reconnect(key)
                continue
            if got:
                entries = got[0][1]
                self.cursor = text(entries[-1][0])
                pending.extend(decode_entry(i, f) for i, f in entries)
            if not pending:
                continue
            if not self.batch_s:
                for event in pending:
                    self.dispatch([event])
                pending = []
                continue
            if len(pending) == 1 and self.clock() < lone_until:
                continue
            self.dispatch(pending)
            pending = []
            # let events gather: a busy broadcast sends fewer, larger frames
            await asyncio.sleep(self.batch_s)
            lone_until = self.clock() + self.batch_s

    async def _after_reconnect(self, key: str) -> None:
        """A reconnect may hide a gap: if our cursor is no longer in the stream (trimmed, or Redis
        lost its data), every client gets ``reset`` and fresh history."""
        try:
            if self.cursor in ("0-0", "$") or await self.redis.xrange(
                key, self.cursor, self.cursor, count=1
            ):
                return
            events, read_to = await self._history(key)
        except (RedisError, OSError):
            return  # still down: the read loop retries
        self.cursor = read_to or "0-0"  # go on from what the history read saw: no gap
        log.warning("chat reader lost its place; clients reset", extra={"bid": self.bid})
        for client in tuple(self._step):
            self._leave_step(client)
        self._tell_listeners([{"type": "reset"}])
        reset = json.dumps({"type": "reset"})
        for client in tuple(self.clients):
            client.offer(reset)
            visible = [e for e in events if client.visible(e)]
            if visible:
                client.offer(frame_of(visible))
                client.last_id = id_key(visible[-1]["sid"])

    def _tell_listeners(self, events: list[dict[str, Any]]) -> None:
        for listener in tuple(self.listeners):
            try:
                listener(events)
            except Exception:
                log.exception("chat listener failed", extra={"bid": self.bid})

    def dispatch(self, events: list[dict[str, Any]]) -> None:
        self._tell_listeners(events)
        now = self.clock()
        first, last = id_key(events[0]["sid"]), id_key(events[-1]["sid"])
        public = [e for e in events if "to" not in e]
        if len(public) < len(events):  # a private event's recipients get theirs one by one
            to = {e["to"] for e in events if "to" in e}
            for client in [c for c in self._step if c.claims.user_id in to]:
                self._leave_step(client)
        slow: list[Client] = []
        shared = frame_of(events) if len(public) == len(events) else None
        data = text_frame(shared.encode()) if shared is not None else None  # built once
        if public and self._step:
            step_data = data if data is not None else text_frame(frame_of(public).encode())
            self.deliveries += len(public) * self._write_step(step_data)
        self.sent_to = last
        for client in tuple(self._behind):
            if client.state is ClientState.JOINING:
                client.held.extend(events)
                continue
            if client.state is not ClientState.LIVE:
                if client.too_slow:  # found by a frame of its own (an error, the viewer count)
                    slow.append(client)
                continue
            if shared is not None and client.last_id < first:
                ok = client.offer(shared, data, now)
                n = len(events)
            else:
                mine = [
                    e for e in events if client.visible(e) and id_key(e["sid"]) > client.last_id
                ]
                ok = client.offer(frame_of(mine)) if mine else True
                n = len(mine)
            if not ok:  # too slow, or its socket is closing (the receive loop detaches it)
                if client.too_slow:
                    slow.append(client)
                continue
            client.last_id = max(client.last_id, last)
            self.deliveries += n
            if client.wire is not None and client.last_id == last:
                del self._behind[client]  # caught up: from now on written with the others
                self._step.add(client, client.wire)
        if now - self._swept >= SWEEP_S:
            self._swept = now
            slow.extend(self._sweep(now))
        for client in slow:
            self.dropped_slow += 1
            self._drop(client, CLOSE_TOO_SLOW, "too slow: messages were piling up")

    def _write_step(self, data: bytes) -> int:
        """Write ``data`` to every in-step socket; how many it went to. Closing ones leave."""
        n, gone = len(self._step), self._step.write(data)  # n counted before closing ones leave
        for client in gone:
            client.state = ClientState.CLOSED  # the receive loop notices and detaches
            self._behind[client] = None
        return n - len(gone)

    def _sweep(self, now: float) -> list[Client]:
        """The in-step clients that are too slow (chat/client.py), by their unsent bytes."""
        out: list[Client] = []
        for client, buffered in self._step.meters():
            n = buffered()
            if (n or client.backlog_since is not None) and (
                client.too_slow or not client.backlog(n, now)  # too_slow: found by an offer
            ):
                out.append(client)
        return out

    def _leave_step(self, client: Client) -> None:
        if self._step.discard(client):
            client.last_id = max(client.last_id, self.sent_to)
            if client in self.clients:
                self._behind[client] = None

    def _remove(self, client: Client) -> None:
        self.clients.discard(client)
        self._behind.pop(client, None)
        self._step.discard(client)

    def _drop(self, client: Client, code: int, reason: str) -> None:
        self._remove(client)
        self._reaper.spawn(client.aclose(code, reason))

    # -- joining ---------------------------------------------------------------------------------
    async def attach(self, client: Client, last_id: str | None) -> None:
        """Register ``client``, send its history (or the gap since ``last_id``), go live."""
        self.clients.add(client)
        self._behind[client] = None
        client.start()
        if client.claims.role is Role.VIEWER:  # the merchant's numbers: unique viewers
            await self.store.seen(self.bid, client.claims.user_id)
        key = stream_key(self.bid)
        first: list[str] = []
        events: list[dict[str, Any]]
        read_to: str | None = None  # the newest entry the history read saw (visible or not)
        if last_id:
            try:
                since = id_key(last_id)
            except ValueError:
                since = None
            still_there = since is not None and bool(
                await self.redis.xrange(key, last_id, last_id, count=1)
            )
            if still_there:
                raw: Any = await self.redis.xrange(key, f"({last_id}", "+")
                events = [decode_entry(i, f) for i, f in raw]
            else:
                first.append(json.dumps({"type": "reset"}))
                events, read_to = await self._history(key)
        else:
            events, read_to = await self._history(key)
        events = [e for e in events if client.visible(e)]
        settings = await self.store.settings(self.bid)
        hello = {"type": "settings", **settings.public()}
        frames = [*first, json.dumps(hello, ensure_ascii=False)]
        if settings.announcement:
            notice = {"type": "announcement", "text": settings.announcement}
            frames.append(json.dumps(notice, ensure_ascii=False))
        frames.append(json.dumps({"type": "viewers", "count": self.viewers}))
        # the hearts total so far (hearts events only come when someone taps)
        frames.append(json.dumps({"type": "hearts", "total": await self.store.hearts(self.bid)}))
        for f in frames:
            client.offer(f)
        if events:
            client.offer(frame_of(events))
            client.last_id = id_key(events[-1]["sid"])
        elif last_id and not first:
            client.last_id = id_key(last_id)
        else:
            # where the history read stood, not the reader's cursor: the reader may have moved on
            # meanwhile, and what it read then is held for this client, not to be skipped
            client.last_id = id_key(read_to) if read_to else (0, 0)
        held = [e for e in client.held if id_key(e["sid"]) > client.last_id and client.visible(e)]
        client.held = []
        if held:
            client.offer(frame_of(held))
            client.last_id = id_key(held[-1]["sid"])
        if client.state is ClientState.JOINING:
            client.state = ClientState.LIVE

    async def _history(self, key: str) -> tuple[list[dict[str, Any]], str | None]:
        """The latest HISTORY events worth showing, and the id of the newest entry read."""
        raw: Any = await self.redis.xrevrange(key, count=HISTORY * 2)
        events = [decode_entry(i, f) for i, f in reversed(raw)]
        gone = await self.store.deleted(self.bid, [e["sid"] for e in events if e["type"] == "chat"])
        shown = [e for e in events if e["sid"] not in gone and e["type"] != "deleted"]
        return shown[-HISTORY:], (events[-1]["sid"] if events else None)

    async def detach(self, client: Client) -> None:
        self._remove(client)
        await client.aclose()

    # -- hearts and presence ---------------------------------------------------------------------
    def _announce(self, frame: str) -> None:
        """``frame`` (no stream event: no id) to every live client now."""
        data, now = text_frame(frame.encode()), self.clock()
        self._write_step(data)
        for c in tuple(self._behind):
            if c.state is ClientState.LIVE and not c.offer(frame, data, now) and c.too_slow:
                self.dropped_slow += 1
                self._drop(c, CLOSE_TOO_SLOW, "too slow: messages were piling up")

    def tap(self, count: int) -> None:
        self.hearts_pending += count

    async def _hearts(self) -> None:
        while True:
            await asyncio.sleep(HEARTS_INTERVAL)
            n, self.hearts_pending = self.hearts_pending, 0
            if n:
                try:
                    await self.store.add_hearts(self.bid, n)
                except (RedisError, OSError):
                    self.hearts_pending += n  # keep the taps; try again next window

    async def flush_hearts(self) -> None:
        n, self.hearts_pending = self.hearts_pending, 0
        if n:
            await self.store.add_hearts(self.bid, n)

    async def _presence(self) -> None:
        while True:
            try:
                local = max(len(self.clients), self.extra_viewers())
                total = await self.store.report_presence(
                    self.bid, self.process, local, fresh_s=FRESH_S
                )
            except (RedisError, OSError):
                total = self.viewers
            if total != self.viewers:
                self.viewers = total
                self._announce(json.dumps({"type": "viewers", "count": total}))
            await asyncio.sleep(PRESENCE_INTERVAL)


class ChatHub:
    """Every broadcast with chat sockets on this process.

    A broadcast's reader (and the Redis connection its blocking XREAD holds) lives while sockets
    hold it: ``join`` takes a hold, ``release`` gives it back, and a broadcast left without holds
    for ``IDLE_S`` is closed, so a long-running process does not keep a reader per broadcast it
    ever served.
    """

    IDLE_S = 10.0

    def __init__(
        self,
        redis: Redis,
        store: ChatStore,
        batch_s: float = 0.05,
        connections: Connections | None = None,
    ) -> None:
        self.redis = redis
        self.connections = connections or Connections(per_user=5, per_address=200)
        self.batch_s = batch_s
        self.store = store
        self.process = secrets.token_hex(6)
        # a chat line that was sent: (bid, claims, text, address); commerce takes order lines
        self.on_line: LineHook | None = None
        self.broadcasts: dict[str, BroadcastChat] = {}
        self.media_viewers: Callable[[str], int] = lambda bid: 0
        self._lock = asyncio.Lock()
        self._holds: dict[str, int] = {}
        self._reapers = TaskSet()
        self._closed_deliveries = 0
        self._closed_dropped = 0
        metrics.CHAT_SOCKETS.register(self, lambda: sum(len(c.clients) for c in self._chats()))
        metrics.CHAT_DELIVERIES.register(
            self, lambda: self._closed_deliveries + sum(c.deliveries for c in self._chats())
        )
        metrics.CHAT_DROPPED_SLOW.register(
            self, lambda: self._closed_dropped + sum(c.dropped_slow for c in self._chats())
        )

    def _chats(self) -> list[BroadcastChat]:
        return list(self.broadcasts.values())

    async def join(self, bid: str) -> BroadcastChat:
        """The broadcast's chat, with a hold on it until :meth:`release`."""
        async with self._lock:
            chat = self.broadcasts.get(bid)
            if chat is None:
                chat = BroadcastChat(bid, self.redis, self.store, self.process, self.batch_s)
                chat.extra_viewers = lambda: self.media_viewers(bid)
                await chat.start()
                self.broadcasts[bid] = chat
            self._holds[bid] = self._holds.get(bid, 0) + 1
            return chat

    def release(self, bid: str) -> None:
        self._holds[bid] = self._holds.get(bid, 1) - 1
        if self._holds[bid] <= 0:
            self._reapers.spawn(self._close_if_idle(bid), name=f"chat-idle-{bid}")

    async def _close_if_idle(self, bid: str) -> None:
        await asyncio.sleep(self.IDLE_S)
        async with self._lock:
            if self._holds.get(bid, 0) > 0 or bid not in self.broadcasts:
                return
            chat = self.broadcasts.pop(bid)
            self._holds.pop(bid, None)
        await chat.aclose()
        self._closed_deliveries += chat.deliveries
        self._closed_dropped += chat.dropped_slow

    async def aclose(self) -> None:
        for gauge in (metrics.CHAT_SOCKETS, metrics.CHAT_DELIVERIES, metrics.CHAT_DROPPED_SLOW):
            gauge.unregister(self)
        await self._reapers.aclose()
        chats = list(self.broadcasts.values())
        self.broadcasts.clear()
        await asyncio.gather(*(c.aclose() for c in chats), return_exceptions=True)
