"""A broadcast served on this node but composed on another: an edge.

A WHEP viewer may reach any node. When the broadcast's origin (core/origin.py) is elsewhere,
this node keeps an :class:`EdgeMedia` for it: its viewers (an :class:`~stream.audience.Audience`,
here or on this node's own fan-out workers) take :class:`RelayedStreams`, buses fed by one
relay connection to the origin (stream/deliver/relay.py) that carries each codec and rung the
viewers here take, once, whatever their number. Keyframe requests go back over it.

The edge follows the origin: when the relay drops (the origin died) or the lease names another
node (the publisher reconnected there), it finds the new origin and pulls from it, and its
viewers, on the same peer connections, see that origin's picture (its slate first) with their
timestamps running on. When the origin is this very node (the publisher came here), the edge is
fed from the local compositor instead. With no viewer left for ``IDLE_S``, it closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from core import nodes
from core.broadcasts import BroadcastStore, Status
from core.config import Settings
from core.origin import origin_of
from core.problems import NotFound
from core.tasks import TaskSet
from stream.deliver.messages import BadMessage, End, Frame, Keyframe, Want, encode, read
from stream.deliver.relay import (
    GREETING_TIMEOUT_S,
    Origin,
    RelayRefused,
    client_tls,
    greet_origin,
)
from stream.deliver.relayed import RelayedStreams
from stream.encode.bus import Streams
from stream.encode.encoders import Codec, EncodedFrame
from stream.encode.ladder import Rung

from .audience import Audience

log = logging.getLogger(__name__)

POLL_S = 0.25  # how often an edge without an origin looks for one
BACKOFF_MAX_S = 5.0  # pulls that keep failing (an origin that refuses it) are tried this seldom
CHECK_S = 1.0  # how often a pulling edge checks that its origin is still the origin
IDLE_S = 10.0  # an edge with no viewers this long closes (and its pull with it)
CONNECT_TIMEOUT_S = 3.0
TLS_SCHEME = "tls://"  # an announced relay address that speaks TLS


@dataclasses.dataclass(frozen=True)
class Route:
    """Where the broadcast comes from now: another node's relay, or this node's own media."""

    node: str
    relay: str = ""  # host:port
    local: Origin | None = None
    url: str = ""  # the node's base URL (HTTP)
    tls: bool = False  # the relay speaks TLS


class Ended(Exception):
    """The broadcast has ended (or is gone): the edge closes."""


class LocalTap:
    """Feeds an edge's bus from this node's own compositor (the origin came here)."""

    def __init__(
        self, streams: RelayedStreams, source: Streams, codec: Codec, rung: str, gone: asyncio.Event
    ) -> None:
        self.streams, self.codec, self.rung = streams, codec, rung
        self.bus = source.bus(codec, rung or None)
        self.closed = gone
        self.bus.add(self)

    def offer(self, frame: EncodedFrame) -> None:
        self.streams.frame(self.codec, self.rung, frame)

    def close(self) -> None:  # the local media ended
        self.closed.set()


Locate = Callable[[], Awaitable[Route | None]]


class EdgeMedia(Audience):
    """The viewers on this node of a broadcast composed on another (see the module)."""

    def __init__(
        self,
        bid: str,
        settings: Settings,
        ladder: tuple[Rung, ...],
        locate: Locate,
        node_id: str,
        on_idle: Callable[[EdgeMedia], None],
    ) -> None:
        self.streams = RelayedStreams(bid, ladder)
        super().__init__(bid, settings, self.streams)
        self.ladder = ladder
        self.locate = locate  # raises Ended when the broadcast is over
        self.node_id = node_id
        self.on_idle = on_idle
        self.route: Route | None = None
        self.attempts = 0  # connections to origins tried so far
        self.pulls = 0  # upstreams attached so far
        self.holders = 0  # handed-over media fed from this edge (stream/handover.py)
        self.bytes_in = 0
        self._tasks = TaskSet()
        self._idle_since: float | None = None
        self._abort: Callable[[], None] | None = None  # stops the current pull
        self._wake = asyncio.Event()  # look for the origin now

    def start(self) -> None:
        self._tasks.spawn(self._follow(), name=f"edge-{self.bid}")
        self._tasks.spawn(self._check(), name=f"edge-watch-{self.bid}")

    async def _follow(self) -> None:
        """Pull from the origin, whichever node it is, until the broadcast ends; pulls that
        keep failing are tried less and less often (:func:`backoff_s`)."""
        failures = 0
        while True:
            try:
                route = await self.locate()
            except Ended:
                self.on_idle(self)
                return
            except Exception as exc:  # Redis away: keep the viewers, look again
                log.warning("edge %s: cannot find the origin: %s", self.bid, exc)
                route = None
            if route is None:
                await self._pause()
                continue
            self.route = route
            pulls = self.pulls
            try:
                if route.local is not None:
                    await self._pull_local(route.local)
                else:
                    await self._pull_remote(route)
            except (OSError, TimeoutError, BadMessage, asyncio.IncompleteReadError) as exc:
                log.info("edge %s: the pull from %s ended: %r", self.bid, route.node, exc)
            finally:
                self.streams.attach(None)
                self.route = self._abort = None
            failures = 0 if self.pulls > pulls or route.local is not None else failures + 1
            await self._back_off(route, backoff_s(failures))

    async def _pause(self, seconds: float = POLL_S) -> bool:
        """Until ``seconds`` have passed or :meth:`relocate` wakes the edge (then True)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        woken = self._wake.is_set()
        self._wake.clear()
        return woken

    async def _back_off(self, route: Route, seconds: float) -> None:
        """Wait ``seconds`` before pulling from ``route`` again, but no longer than the origin
        stays where it is (looked up every ``POLL_S``): a new origin is pulled from at once."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if await self._pause(min(POLL_S, left)) or left <= POLL_S:
                return
            try:
                if await self.locate() != route:
                    return
            except Exception:  # over, or Redis away: the loop looks again and decides
                return

    def relocate(self) -> None:
        """The origin has just moved (a publisher came to this node): follow it now, not at the
        next check, so the viewers here see the new origin's first pictures (its slate)."""
        if self.route is not None and self.route.local is None and self._abort is not None:
            self._abort()
        self._wake.set()

    async def _pull_remote(self, route: Route) -> None:
        host, _, port = route.relay.rpartition(":")
        tls = (
            await asyncio.to_thread(client_tls, self.settings.relay_ca_file) if route.tls else None
        )
        self.attempts += 1
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(
                host, int(port), ssl=tls, server_hostname=host if tls else None
            )
        self._abort = writer.close  # reading ends with the connection
        try:
            async with asyncio.timeout(GREETING_TIMEOUT_S):
                await greet_origin(reader, writer, self.settings.secret, self.node_id)

            def send(msg: Want | Keyframe) -> None:
                if not writer.is_closing():
                    writer.write(encode(msg))

            self.pulls += 1
            self.streams.attach(send)
            log.info("edge %s: pulling from %s", self.bid, route.node)
            while True:
                match await read(reader):
                    case Frame() as msg:
                        self.bytes_in += len(msg.data)
                        self.streams.frame(msg.codec, msg.rung, msg.encoded())
                    case End():
                        return  # not the origin any more: look again
                    case other:
                        raise BadMessage(f"an origin does not send {other.kind!r}")
        except RelayRefused as exc:
            log.warning("edge %s: relay %s refused: %s", self.bid, route.node, exc)
        finally:
            writer.close()

    async def _pull_local(self, origin: Origin) -> None:
        taps: dict[tuple[Codec, str], LocalTap] = {}
        gone = asyncio.Event()  # the local media ended, or the pull is stopped
        self._abort = gone.set

        def send(msg: Want | Keyframe) -> None:
            key = (msg.codec, msg.rung)
            if isinstance(msg, Keyframe):
                if msg.rung in ("", *origin.source.rungs):
                    origin.source.bus(msg.codec, msg.rung or None).request_keyframe()
            elif msg.want and key not in taps:
                taps[key] = LocalTap(self.streams, origin.source, msg.codec, msg.rung, gone)
            elif not msg.want and key in taps:
                tap = taps.pop(key)
                tap.bus.discard(tap)

        self.pulls += 1
        self.streams.attach(send)
        log.info("edge %s: fed by this node's own media", self.bid)
        try:
            await gone.wait()
        finally:
            for tap in taps.values():
                tap.bus.discard(tap)

    async def _check(self) -> None:
        """Every ``CHECK_S``: the edge closes after ``IDLE_S`` without viewers; a pull from a
        node that is no longer the origin stops (the follower finds the new one)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(CHECK_S)
            if not self.idle() or self.holders:
                self._idle_since = None
            elif self._idle_since is None:
                self._idle_since = loop.time()
            elif loop.time() - self._idle_since >= IDLE_S:
                self.on_idle(self)
                return
            route = self.route
            if route is None or self._abort is None:
                continue
            try:
                now = await self.locate()
            except Ended:
                self.on_idle(self)
                return
            except Exception:
                continue
            moved = now is None or now.node != route.node or now.local is not route.local
            if moved and self._abort is not None:
                self._abort()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._abort is not None:
            self._abort()
        await self._tasks.aclose()
        await self.close_viewers()
        await self.streams.aclose()
        await self._watchers.aclose()


def backoff_s(failures: int) -> float:
    """The pause after ``failures`` pulls in a row that got nothing (refused, unreachable, not
    trusted): the poll at first, doubling up to ``BACKOFF_MAX_S``."""
    return min(POLL_S * (1 << min(failures, 8)), BACKOFF_MAX_S)


async def find_origin(
    redis: Redis,
    store: BroadcastStore,
    local: Callable[[str], Origin | None],
    node_id: str,
    bid: str,
) -> Route | None:
    """Where broadcast ``bid`` comes from now (None: nowhere yet, e.g. between a dead origin
    and the publisher's reconnect); :class:`Ended` when it is over or gone."""
    try:
        broadcast = await store.get(bid)
    except NotFound:
        raise Ended(bid) from None
    if broadcast.status is Status.ENDED:
        raise Ended(bid)
    node = await origin_of(redis, bid)
    if node is None:
        return None
    if node == node_id:
        media = local(bid)
        return Route(node, local=media) if media is not None else None
    record = await nodes.node(redis, node)
    relay = str(record.get("relay") or "") if record else ""
    if not record or not relay:
        return None
    tls = relay.startswith(TLS_SCHEME)
    return Route(node, relay.removeprefix(TLS_SCHEME), url=str(record.get("url") or ""), tls=tls)
