"""A broadcast's media on this process, and the hub that holds them.

:class:`BroadcastMedia` owns the compositor, the WHIP publishers and the WHEP viewers of one
broadcast; :class:`MediaHub` creates them on demand and closes them all on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any

from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack

from core import metrics
from core.config import Settings
from core.tasks import TaskSet
from core.tokens import Claims, Role
from stream.compose.compositor import Compositor
from stream.compose.layout import MAX_PICTURES
from stream.deliver.rtc import (
    announce,
    answer_offer,
    check_offer,
    connected_within,
    new_peer_connection,
)
from stream.encode.encoders import Codec
from stream.encode.ladder import Rung, ladder_for
from stream.ingest.publisher import Publisher, PublisherState, Source

from .deliver.whep import Viewer, negotiate_viewer, viewer_kinds, viewer_tracks
from .errors import CohostLimit, HostLive, RenditionNotFound, SessionNotFound, TooManySessions

if TYPE_CHECKING:
    from stream.deliver.pool import RemoteViewer, WorkerPool

log = logging.getLogger(__name__)


class BroadcastMedia:
    def __init__(self, bid: str, settings: Settings) -> None:
        self.bid = bid
        self.settings = settings
        self.ladder = ladder_for(settings.ladder, settings.video_width, settings.video_height,
                                 settings.video_bitrate)  # fmt: skip
        self.compositor = Compositor(
            bid, settings.video_width, settings.video_height, settings.video_fps,
            settings.video_bitrate, self.ladder,
        )  # fmt: skip
        self.publishers: dict[str, Publisher] = {}
        self.viewers: dict[str, Viewer | RemoteViewer] = {}
        self.workers: WorkerPool | None = None  # set: viewers are served by worker processes
        self._closed = False
        self._watchers = TaskSet()
        # (user id, address) of WHEP offers being negotiated: they count against the limits
        self._admitting: list[tuple[str, str]] = []
        self.packets_out_closed = 0
        self.bytes_out_closed = 0

    def start(self) -> None:
        self.compositor.start()

    # -- WHIP ------------------------------------------------------------------------------------
    def host_publisher(self) -> Publisher | None:
        for p in self.publishers.values():
            if p.claims.role is Role.HOST and p.state != PublisherState.CLOSED:
                return p
        return None

    async def add_publisher(self, claims: Claims, offer: str) -> tuple[Publisher, str]:
        check_offer(offer, need_send=True)
        if claims.role is Role.HOST:
            current = self.host_publisher()
            if current is not None:
                if current.claims.user_id != claims.user_id:
                    raise HostLive(
                        "another host is already publishing to this broadcast",
                    )
                log.info(
                    "host reconnects; replacing session %s", current.id, extra={"bid": self.bid}
                )
                await self.remove_publisher(current.id)
        else:
            same = [
                p
                for p in self.publishers.values()
                if p.claims.user_id == claims.user_id and p.claims.role is not Role.HOST
            ]
            for p in same:  # the same co-host reconnecting replaces its old session
                await self.remove_publisher(p.id)
            cohosts = [p for p in self.publishers.values() if p.claims.role is not Role.HOST]
            if len(cohosts) >= MAX_PICTURES - 1:
                raise CohostLimit(f"{MAX_PICTURES - 1} co-hosts are already on air")
        pid = secrets.token_hex(8)
        pc = new_peer_connection(self.settings)
        source = Source(pid, claims.role, claims.user_id, claims.name)
        publisher = Publisher(id=pid, claims=claims, pc=pc, source=source)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            publisher.attach(track)

        self._watch(pc, lambda: self.remove_publisher(pid), publisher_id=pid)
        try:
            answer = await answer_offer(pc, offer)
        except BaseException:
            await pc.close()
            raise
        self.publishers[pid] = publisher
        self.compositor.add_source(source)
        self._deadline(pc, lambda: self.remove_publisher(pid))
        log.info("publisher %s joined as %s", pid, claims.role.value, extra={"bid": self.bid})
        return publisher, announce(answer, self.settings.announced_address)

    async def remove_publisher(self, pid: str) -> None:
        publisher = self.publishers.pop(pid, None)
        if publisher is None:
            return
        self.compositor.remove_source(publisher.source)
        await publisher.aclose()
        log.info("publisher %s left", pid, extra={"bid": self.bid})

    # -- WHEP ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def admission(self, claims: Claims, address: str) -> Iterator[None]:
        """Hold a place for one WHEP offer while it is negotiated; TooManySessions (429) when
        the person, their address or the broadcast already has as many sessions as allowed."""
        s = self.settings
        held = [(v.claims.user_id, v.address) for v in self.viewers.values()] + self._admitting
        retry = {"Retry-After": "10"}
        if len(held) >= s.max_viewers:
            raise TooManySessions(f"this broadcast has its {s.max_viewers} viewers already",
                                  code="broadcast_full", headers=retry)  # fmt: skip
        if sum(1 for user, _ in held if user == claims.user_id) >= s.whep_per_user:
            raise TooManySessions(
                f"you are already watching in {s.whep_per_user} places; close one first",
                headers=retry,
            )
        if address and sum(1 for _, a in held if a == address) >= s.whep_per_address:
            raise TooManySessions(f"{s.whep_per_address} sessions from your address already",
                                  code="too_many_sessions_from_address", headers=retry)  # fmt: skip
        place = (claims.user_id, address)
        self._admitting.append(place)
        try:
            yield
        finally:
            self._admitting.remove(place)

    async def add_viewer(
        self, claims: Claims, offer: str, address: str = "", rendition: str = ""
    ) -> tuple[Viewer | RemoteViewer, str]:
        """A WHEP viewer, on ``rendition`` for good when it names one (else on the top rung,
        then wherever its link takes it)."""
        if rendition and rendition not in self.compositor.rungs:
            names = ", ".join(self.compositor.rungs)
            raise RenditionNotFound(f"no rendition {rendition!r} here (there are {names})")
        with self.admission(claims, address):
            return await self._add_viewer(claims, offer, address, rendition)

    async def _add_viewer(
        self, claims: Claims, offer: str, address: str, rendition: str
    ) -> tuple[Viewer | RemoteViewer, str]:
        if self.workers is not None:  # a fan-out worker process serves it
            remote, answer = await self.workers.add_viewer(self, claims, offer, address, rendition)
            self.viewers[remote.id] = remote
            return remote, answer
        kinds = viewer_kinds(offer)
        vid = secrets.token_hex(8)
        pc = new_peer_connection(self.settings)
        holder: dict[str, Codec] = {}
        tracks = viewer_tracks(
            pc, kinds, self.compositor, lambda: holder["video"],
            fast=self.settings.fanout == "fast", rung=rendition,
            abr=self.settings.abr and not rendition,
        )  # fmt: skip
        try:
            answer, codec = await negotiate_viewer(pc, offer, kinds)
            if codec is not None:
                holder["video"] = codec
        except BaseException:
            for track in tracks:
                track.stop()
            await pc.close()
            raise
        viewer = Viewer(vid, claims, pc, tracks, holder.get("video"), address, rendition)
        self.viewers[vid] = viewer
        self._watch(pc, lambda: self.remove_viewer(vid))
        self._deadline(pc, lambda: self.remove_viewer(vid))
        log.info("viewer %s joined (%s)", vid, holder.get("video"), extra={"bid": self.bid})
        return viewer, announce(answer, self.settings.announced_address)

    def forget_viewer(self, vid: str) -> None:
        self.viewers.pop(vid, None)

    async def remove_viewer(self, vid: str) -> None:
        viewer = self.viewers.pop(vid, None)
        if viewer is None:
            return
        if self.settings.fanout != "fast":  # the fast fan-outs count every viewer's packets
            packets, octets = _sent(viewer)
            self.packets_out_closed += packets
            self.bytes_out_closed += octets
        await viewer.aclose()
        log.info("viewer %s left", vid, extra={"bid": self.bid})

    def audience(self) -> int:
        """WHEP sessions of viewers (the studio's own preview of its output does not count)."""
        return sum(1 for v in self.viewers.values() if v.claims.role is Role.VIEWER)

    def session(self, kind: str, sid: str) -> Publisher | Viewer | RemoteViewer:
        found = (self.publishers if kind == "whip" else self.viewers).get(sid)
        if found is None:
            raise SessionNotFound(f"no {kind.upper()} session {sid!r} on this broadcast")
        return found

    def traffic(self) -> tuple[int, int]:
        """RTP packets and payload bytes sent to this process's viewers, read from counters: the
        fast fan-outs' totals (no walk over viewers), or each aiortc sender's own."""
        packets, octets = self.packets_out_closed, self.bytes_out_closed
        if self.settings.fanout == "fast":
            for sink in list(self.compositor.sinks.values()):
                packets += sink.packets_sent
                octets += sink.octets_sent
            return packets, octets
        for viewer in self.viewers.values():
            p, o = _sent(viewer)
            packets += p
            octets += o
        return packets, octets

    # -- lifecycle -------------------------------------------------------------------------------
    def _watch(
        self,
        pc: RTCPeerConnection,
        on_gone: Callable[[], Coroutine[Any, Any, None]],
        publisher_id: str | None = None,
    ) -> None:
        @pc.on("connectionstatechange")
        async def on_state() -> None:
            state = pc.connectionState
            if publisher_id and state == "connected" and publisher_id in self.publishers:
                self.publishers[publisher_id].state = PublisherState.CONNECTED
            if state in ("failed", "closed") and not self._closed:
                self._spawn(on_gone())

    def _deadline(
        self, pc: RTCPeerConnection, on_gone: Callable[[], Coroutine[Any, Any, None]]
    ) -> None:
        """Drop the session if its peer has not connected within the connect timeout."""

        async def watch() -> None:
            if not await connected_within(pc, self.settings.connect_timeout_s):
                log.info("a session did not connect in time; dropped", extra={"bid": self.bid})
                await on_gone()

        self._spawn(watch())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._watchers.spawn(coro)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.gather(
            *(p.aclose() for p in self.publishers.values()),
            *(v.aclose() for v in self.viewers.values()),
            return_exceptions=True,
        )
        self.publishers.clear()
        self.viewers.clear()
        await self.compositor.aclose()
        await self._watchers.aclose()


def _sent(viewer: Viewer | RemoteViewer) -> tuple[int, int]:
    """What aiortc's senders of ``viewer`` counted (private names, see rtpsend.SENDER_FIELDS)."""
    packets = octets = 0
    for sender in viewer.senders():
        s: Any = sender
        packets += int(s._RTCRtpSender__packet_count)
        octets += int(s._RTCRtpSender__octet_count)
    return packets, octets


class MediaHub:
    """Every broadcast with media on this process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.broadcasts: dict[str, BroadcastMedia] = {}
        metrics.BROADCASTS.register(self, lambda: len(self.broadcasts))
        metrics.PUBLISHERS.register(self, lambda: sum(len(b.publishers) for b in self.medias()))
        metrics.VIEWERS.register(self, lambda: sum(len(b.viewers) for b in self.medias()))
        metrics.PACKETS_OUT.register(self, lambda: self.traffic()[0])
        metrics.BYTES_OUT.register(self, lambda: self.traffic()[1])
        metrics.VIEWER_SKIPS.register(self, self.skips)
        self._ended = (0, 0, 0)  # what ended broadcasts had sent and skipped

        self.workers: WorkerPool | None = None  # fan-out worker processes (--workers)
        # awaited when a broadcast's media starts / ends on this process (the overlay feed)
        self.on_started: Callable[[BroadcastMedia], Awaitable[None]] | None = None
        self.on_ended: Callable[[str], Awaitable[None]] | None = None

    @property
    def ladder(self) -> tuple[Rung, ...]:
        """The rendition ladder every broadcast on this process is encoded at."""
        s = self.settings
        return ladder_for(s.ladder, s.video_width, s.video_height, s.video_bitrate)

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

    async def open(self, bid: str) -> BroadcastMedia:
        """The broadcast's media, started (and announced to ``on_started``) if it was not."""
        media = self.broadcasts.get(bid)
        if media is None:
            media = self.ensure(bid)
            if self.on_started is not None:
                try:
                    await self.on_started(media)
                except BaseException:  # nothing half-started stays behind
                    self.broadcasts.pop(bid, None)
                    await media.aclose()
                    raise
        return media

    def ensure(self, bid: str) -> BroadcastMedia:
        media = self.broadcasts.get(bid)
        if media is None:
            media = self.broadcasts[bid] = BroadcastMedia(bid, self.settings)
            media.workers = self.workers
            media.start()
        return media

    @contextlib.asynccontextmanager
    async def session_scope(self, bid: str) -> AsyncIterator[BroadcastMedia]:
        """The broadcast's media for adding a session; if the add fails and this request created
        the media, it is closed again (a refused offer leaves nothing running)."""
        created = bid not in self.broadcasts
        media = await self.open(bid)
        try:
            yield media
        except BaseException:
            if created and not media.publishers and not media.viewers:
                await self.end(bid)
            raise

    async def end(self, bid: str) -> None:
        media = self.broadcasts.pop(bid, None)
        if media is not None:
            if self.on_ended is not None:
                await self.on_ended(bid)
            await media.aclose()
            self._ended = _plus(self._ended, (*media.traffic(), _skips(media)))

    def medias(self) -> list[BroadcastMedia]:
        return list(self.broadcasts.values())

    def traffic(self) -> tuple[int, int]:
        """RTP packets and payload bytes sent to this process's viewers since it started."""
        packets, octets, _ = self._ended
        for media in self.medias():
            p, o = media.traffic()
            packets, octets = packets + p, octets + o
        return packets, octets

    def skips(self) -> int:
        """Backlogs dropped by viewers that fell behind, since this process started."""
        return self._ended[2] + sum(_skips(m) for m in self.medias())

    async def aclose(self) -> None:
        for gauge in _GAUGES:
            gauge.unregister(self)
        medias = list(self.broadcasts.values())
        self.broadcasts.clear()
        await asyncio.gather(*(m.aclose() for m in medias), return_exceptions=True)


_GAUGES = (metrics.BROADCASTS, metrics.PUBLISHERS, metrics.VIEWERS, metrics.PACKETS_OUT,
           metrics.BYTES_OUT, metrics.VIEWER_SKIPS)  # fmt: skip


def _skips(media: BroadcastMedia) -> int:
    c = media.compositor
    return sum(b.skips for b in (*c.video_buses.values(), c.audio_bus))


def _plus(a: tuple[int, int, int], b: tuple[int, int, int]) -> tuple[int, int, int]:
    return a[0] + b[0], a[1] + b[1], a[2] + b[2]
