"""Every broadcast with media on this process: :class:`MediaHub` creates a broadcast's
:class:`~stream.media.BroadcastMedia` on demand, ends it (finishing its recording in the
background) and closes them all on shutdown; it owns the process's media metrics."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import metrics
from core.config import Settings
from core.tasks import TaskSet
from core.tokens import Role
from stream.encode.ladder import Rung, ladder_for

from .deliver.record.vod import finish as finish_recording
from .errors import (
    RenditionNotFound,
)

if TYPE_CHECKING:
    from stream.deliver.pool import WorkerPool
    from stream.deliver.relay import RelayServer

from .audience import Audience
from .deliver.rtmp.destinations import DestinationStore
from .edge import EdgeMedia, Ended, Route
from .media import BroadcastMedia

log = logging.getLogger(__name__)

CHECK_S = 1.0  # how often this node checks it is still the origin of what it composes


class MediaHub:
    """Every broadcast with media on this process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.broadcasts: dict[str, BroadcastMedia] = {}  # the ones this node is the origin of
        self.edges: dict[str, EdgeMedia] = {}  # viewers here of broadcasts composed elsewhere
        # broadcasts this node was the origin of until the publisher went to another node: their
        # viewers here are fed from this node's edge (stream/handover.py) until they leave
        self.retired: dict[str, BroadcastMedia] = {}
        self.unfinished: dict[str, Path] = {}  # their recordings, finished when the show ends
        metrics.BROADCASTS.register(self, lambda: len(self.broadcasts))
        metrics.PUBLISHERS.register(self, lambda: sum(len(b.publishers) for b in self.medias()))
        metrics.VIEWERS.register(self, lambda: sum(len(b.viewers) for b in self.audiences()))
        metrics.PACKETS_OUT.register(self, lambda: self.traffic()[0])
        metrics.BYTES_OUT.register(self, lambda: self.traffic()[1])
        metrics.VIEWER_SKIPS.register(self, self.skips)
        metrics.EDGES.register(self, lambda: len(self.edges))
        self._ended = (0, 0, 0)  # what ended broadcasts had sent and skipped
        self.tasks = TaskSet()  # recordings being finished
        self.restream: DestinationStore | None = None  # set by the app (it has Redis)
        self.finishing: dict[str, Path] = {}

        self.workers: WorkerPool | None = None  # fan-out worker processes (--workers)
        # the relay other nodes pull from (set: this node is one of several, and viewers of a
        # broadcast composed elsewhere are served by an edge here)
        self.relay: RelayServer | None = None
        self.node_id = ""
        # where a broadcast comes from now (stream/edge.py find_origin, bound by the app)
        self.find_origin: Callable[[str], Awaitable[Route | None]] | None = None
        self._edge_closing = TaskSet()
        self._following = TaskSet()  # the check that this node is still its broadcasts' origin
        self._joining: collections.Counter[str] = collections.Counter()  # WHIP arrivals now
        self._joined: dict[str, float] = {}  # when the last one of each broadcast ended
        self.draining = False  # the operator takes this node out of service (jangteo/drain.py)
        # awaited when a broadcast's media starts / ends on this process (the overlay feed)
        self.on_started: Callable[[BroadcastMedia], Awaitable[None]] | None = None
        self.on_ended: Callable[[str], Awaitable[None]] | None = None
        # awaited with (bid, user id, session id) when a host's session here was replaced by
        # one on another node (stream/http.py tell_replaced)
        self.on_replaced: Callable[[str, str, str], Awaitable[None]] | None = None

    @property
    def ladder(self) -> tuple[Rung, ...]:
        """The rendition ladder of a broadcast of the configured shape (a portrait one has the
        same rungs, turned: :meth:`ladder_of`)."""
        return self.ladder_of(self.settings.default_orientation == "portrait")

    def ladder_of(self, portrait: bool) -> tuple[Rung, ...]:
        s = self.settings
        return ladder_for(s.ladder, *s.output_size(portrait), s.video_bitrate)

    def check_rendition(self, name: str) -> None:
        """RenditionNotFound (404) unless ``name`` is a rung of the ladder."""
        names = [r.name for r in self.ladder]
        if name not in names:
            raise RenditionNotFound(f"no rendition {name!r} here (there are {', '.join(names)})")

    def still(self, bid: str) -> Callable[[], Any] | None:
        """What takes the broadcast's current composed picture (BGR), when its media runs here."""
        media = self.broadcasts.get(bid)
        return media.compositor.snapshot_bgr if media else None

    def get(self, bid: str) -> BroadcastMedia | None:
        return self.broadcasts.get(bid)

    async def open(self, bid: str, portrait: bool = False) -> BroadcastMedia:
        """The broadcast's media, started (and announced to ``on_started``) if it was not;
        ``portrait``: composed upright (the broadcast's orientation)."""
        media = self.broadcasts.get(bid)
        if media is None:
            media = self.ensure(bid, portrait)
            if self.on_started is not None:
                try:
                    await self.on_started(media)
                except BaseException:  # nothing half-started stays behind
                    self.broadcasts.pop(bid, None)
                    await media.aclose()
                    raise
        return media

    def ensure(self, bid: str, portrait: bool = False) -> BroadcastMedia:
        media = self.broadcasts.get(bid)
        if media is None:
            media = BroadcastMedia(bid, self.settings, self.restream, portrait=portrait)
            self.broadcasts[bid] = media
            media.workers = self.workers
            media.start()
        return media

    @contextlib.asynccontextmanager
    async def session_scope(
        self, bid: str, portrait: bool = False
    ) -> AsyncIterator[BroadcastMedia]:
        """The broadcast's media for adding a session; if the add fails and this request created
        the media, it is closed again (a refused offer leaves nothing running)."""
        created = bid not in self.broadcasts
        media = await self.open(bid, portrait)
        try:
            yield media
        except BaseException:
            if created and not media.publishers and not media.viewers:
                await self.end(bid)
            raise

    def edge(self, bid: str, portrait: bool = False) -> EdgeMedia:
        """The edge serving this node's viewers of ``bid`` (started if there was none)."""
        edge = self.edges.get(bid)
        if edge is None:
            find = self.find_origin
            if find is None:
                raise RuntimeError("edges need find_origin")
            edge = EdgeMedia(bid, self.settings, self.ladder_of(portrait),
                             lambda: find(bid), self.node_id, self._edge_idle)  # fmt: skip
            edge.workers = self.workers
            self.edges[bid] = edge
            edge.start()
        return edge

    def follow_origins(self) -> None:
        """Every ``CHECK_S``, for each broadcast with media here: once it has ended (the end may
        have been asked of another node), its media here ends; composed here while its origin is
        another node (the host reconnected there), its publishers here are let go (co-hosts
        come back through the origin) and it is handed over; a handed-over media closes once its
        last viewer has left."""
        self._following.spawn(self._follow(), name="follow-origins")

    @contextlib.contextmanager
    def publisher_joining(self, bid: str) -> Iterator[None]:
        """Around a WHIP publisher's arrival and its claim of the origin: meanwhile the lease
        may still name the node it came from, and the origin check leaves the media alone."""
        self._joining[bid] += 1
        try:
            yield
        finally:
            self._joining[bid] -= 1
            if not self._joining[bid]:
                del self._joining[bid]
            self._joined[bid] = time.monotonic()

    def _arriving(self, bid: str, since: float) -> bool:
        """Whether a publisher of ``bid`` arrived (or is arriving) since ``since``."""
        return bid in self._joining or self._joined.get(bid, 0.0) >= since

    async def _follow(self) -> None:
        find = self.find_origin
        if find is None:
            raise RuntimeError("following origins needs find_origin")
        while True:
            await asyncio.sleep(CHECK_S)
            for bid in {*self.broadcasts, *self.retired, *self.unfinished}:
                route: Route | Ended | None
                looked = time.monotonic()
                try:
                    route = await find(bid)
                except Ended as ended:  # the show is over (or gone)
                    route = ended
                except Exception as exc:  # Redis away: stay as we are, look again
                    log.warning("cannot find the origin of %s: %s", bid, exc)
                    break
                try:
                    await self._follow_one(bid, route, looked)
                except Exception:  # one broadcast's trouble is not the others'
                    log.exception("following the origin of %s failed", bid)
            for bid, retired in list(self.retired.items()):
                if retired.idle():
                    await self._close_retired(bid)

    async def _follow_one(self, bid: str, route: Route | Ended | None, looked: float) -> None:
        if isinstance(route, Ended):
            await self.end(bid)
            return
        media = self.broadcasts.get(bid)
        if media is None or route is None or route.node == self.node_id:
            return
        if self._arriving(bid, looked):  # a publisher came here after the lease was read
            return
        if media.publishers:  # the host went to another node: its co-hosts follow it there
            log.info("%s is composed on %s now: its %d publishers here go there",
                     bid, route.node, len(media.publishers), extra={"bid": bid})  # fmt: skip
            for pid, publisher in list(media.publishers.items()):
                await media.remove_publisher(pid)
                if publisher.claims.role is Role.HOST and self.on_replaced is not None:
                    await self.on_replaced(bid, publisher.claims.user_id, pid)
        await self._hand_over(bid, media)

    async def _hand_over(self, bid: str, media: BroadcastMedia) -> None:
        if self.broadcasts.get(bid) is not media or media.publishers or bid in self._joining:
            return  # it came back meanwhile
        del self.broadcasts[bid]
        if self.on_ended is not None:  # its overlay is drawn by the new origin
            await self.on_ended(bid)
        self.retired[bid] = media
        if not media.viewers:
            await self._close_retired(bid)
            return
        edge = self.edge(bid, media.portrait)
        edge.holders += 1
        await media.hand_over(edge.streams)

    async def _close_retired(self, bid: str) -> None:
        """A handed-over media closes; what it recorded is finished when the show ends."""
        media = self.retired.pop(bid)
        await media.aclose()
        self._ended = _plus(self._ended, (*media.traffic(), _skips(media)))
        if media.recorder is not None:
            self.unfinished[bid] = media.recorder.root
        edge = self.edges.get(bid)
        if edge is not None and media.handover is not None:
            edge.holders -= 1

    def _edge_idle(self, edge: EdgeMedia) -> None:
        """An edge with no viewers left (or of a broadcast that ended) closes, pull and all."""
        if self.edges.get(edge.bid) is edge:
            del self.edges[edge.bid]
            self._ended = _plus(self._ended, (*edge.traffic(), 0))
        self._edge_closing.spawn(edge.aclose(), name=f"edge-close-{edge.bid}")

    async def viewer_media(self, bid: str, portrait: bool = False) -> Audience:
        """Where a WHEP viewer of ``bid`` arriving here is served: the broadcast's own media
        when this node is its origin (or the only node), else this node's edge of it."""
        media = self.broadcasts.get(bid)
        if self.relay is None:
            return await self.open(bid, portrait)
        find = self.find_origin
        route = await find(bid) if find is not None else None
        if media is not None and route is not None and route.local is media:
            return media
        return self.edge(bid, portrait)

    @contextlib.asynccontextmanager
    async def viewer_scope(self, bid: str, portrait: bool = False) -> AsyncIterator[Audience]:
        """:meth:`session_scope` for a viewer: its audience, closed again if the add fails and
        this request started it."""
        created = bid not in self.broadcasts and bid not in self.edges
        media = await self.viewer_media(bid, portrait)
        try:
            yield media
        except BaseException:
            if created and not media.viewers:
                if isinstance(media, EdgeMedia):
                    self._edge_idle(media)
                elif isinstance(media, BroadcastMedia) and not media.publishers:
                    await self.end(bid)
            raise

    def audience_of(self, bid: str, sid: str) -> Audience | None:
        """The media holding viewer session ``sid`` of ``bid`` on this node."""
        held = self._held(bid)
        for media in held:
            if sid in media.viewers:
                return media
        return held[0] if held else None

    def _held(self, bid: str) -> list[Audience]:
        found = (self.broadcasts.get(bid), self.edges.get(bid), self.retired.get(bid))
        return [m for m in found if m is not None]

    def audience(self, bid: str) -> int:
        """Viewers of ``bid`` on this node (origin media, edge, handed-over media)."""
        return sum(m.audience() for m in self._held(bid))

    def watched(self) -> dict[str, int]:
        """The viewers on this node of each broadcast it has media of."""
        return {bid: self.audience(bid) for bid in {*self.broadcasts, *self.edges, *self.retired}}

    async def end(self, bid: str) -> None:
        """The broadcast ended: its media closes, its recording is finished (in the background:
        the replay is ready seconds later)."""
        edge = self.edges.pop(bid, None)
        if edge is not None:
            self._ended = _plus(self._ended, (*edge.traffic(), 0))
            await edge.aclose()
        if bid in self.retired:
            await self._close_retired(bid)
        self._joined.pop(bid, None)
        root = self.unfinished.pop(bid, None)  # recorded here before a handover
        media = self.broadcasts.pop(bid, None)
        if media is not None:
            if self.on_ended is not None:
                await self.on_ended(bid)
            await media.aclose()
            self._ended = _plus(self._ended, (*media.traffic(), _skips(media)))
            root = media.recorder.root if media.recorder is not None else root
        if root is not None:
            self.finishing[bid] = root
            self.tasks.spawn(self._finish(bid, root), name=f"finish-{bid}")

    async def _finish(self, bid: str, root: Path) -> None:
        try:
            await asyncio.to_thread(finish_recording, root)
        except Exception:
            log.exception("finishing the recording of %s failed", bid)
        finally:
            self.finishing.pop(bid, None)

    def medias(self) -> list[BroadcastMedia]:
        return list(self.broadcasts.values())

    def audiences(self) -> list[Audience]:
        return [*self.broadcasts.values(), *self.retired.values(), *self.edges.values()]

    def traffic(self) -> tuple[int, int]:
        """RTP packets and payload bytes sent to this process's viewers since it started."""
        packets, octets, _ = self._ended
        for media in self.audiences():
            p, o = media.traffic()
            packets, octets = packets + p, octets + o
        return packets, octets

    def skips(self) -> int:
        """Backlogs dropped by viewers that fell behind, since this process started."""
        return self._ended[2] + sum(_skips(m) for m in self.medias())

    async def aclose(self) -> None:
        for gauge in _GAUGES:
            gauge.unregister(self)
        await self._following.aclose()
        await self.tasks.drain(timeout=60)  # recordings being finished
        medias = self.audiences()
        self.broadcasts.clear()
        self.retired.clear()
        self.edges.clear()
        await asyncio.gather(*(m.aclose() for m in medias), return_exceptions=True)
        await self._edge_closing.drain(timeout=10)


_GAUGES = (metrics.BROADCASTS, metrics.PUBLISHERS, metrics.VIEWERS, metrics.PACKETS_OUT,
           metrics.BYTES_OUT, metrics.VIEWER_SKIPS, metrics.EDGES)  # fmt: skip


def _skips(media: BroadcastMedia) -> int:
    c = media.compositor
    return sum(b.skips for b in (*c.video_buses.values(), c.audio_bus))


def _plus(a: tuple[int, int, int], b: tuple[int, int, int]) -> tuple[int, int, int]:
    return a[0] + b[0], a[1] + b[1], a[2] + b[2]
