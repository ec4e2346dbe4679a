"""A broadcast's media on this process: :class:`BroadcastMedia` owns its compositor, its WHIP
publishers and WHEP viewers (here or on worker processes), its LL-HLS packager and its
recording."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any

from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack

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
from stream.encode.ladder import ladder_for
from stream.ingest.publisher import Publisher, PublisherState, Source

from .deliver.hls.packager import HlsPackager
from .deliver.record.recorder import Limits, Recorder, prune_recordings
from .deliver.rtmp.destinations import DestinationStore
from .deliver.rtmp.restreamer import Restreamer
from .deliver.whep import Viewer, negotiate_viewer, viewer_kinds, viewer_tracks
from .errors import (
    BroadcastEnded,
    CohostLimit,
    HostLive,
    RenditionNotFound,
    SessionNotFound,
    TooManySessions,
)

if TYPE_CHECKING:
    from stream.deliver.pool import RemoteViewer, WorkerPool

log = logging.getLogger(__name__)


class BroadcastMedia:
    def __init__(
        self,
        bid: str,
        settings: Settings,
        restream: DestinationStore | None = None,
        portrait: bool = False,
    ) -> None:
        self.bid = bid
        self.settings = settings
        self.portrait = portrait
        width, height = settings.output_size(portrait)
        self.ladder = ladder_for(settings.ladder, width, height, settings.video_bitrate)
        self.compositor = Compositor(
            bid, width, height, settings.video_fps, settings.video_bitrate, self.ladder,
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
        self._hls: HlsPackager | None = None
        self.recorder: Recorder | None = None
        self.restreamer: Restreamer | None = None
        self.restream = restream  # the destinations (None: no restreaming set up)

    @property
    def hls_running(self) -> HlsPackager | None:
        """The LL-HLS packager if something started it."""
        return self._hls

    def hls(self) -> HlsPackager:
        """The broadcast's LL-HLS, started by the first request for it."""
        if self._closed:
            raise BroadcastEnded("the broadcast's media has closed")
        if self._hls is None:
            self._hls = HlsPackager(self.compositor)
        self._hls.start()
        return self._hls

    def start(self) -> None:
        self.compositor.start()
        s = self.settings
        if s.record:
            prune_recordings(s.data_dir, s.record_retention_days)
            self.recorder = Recorder(self.compositor, self.bid, s.data_dir,
                                     Limits(s.record_min_free_mb, s.record_max_mb))  # fmt: skip
            self.recorder.start()
        if self.restream is not None:
            self.restreamer = Restreamer(self.bid, self.compositor, self.restream,
                                         s.restream_allow_private, s.restream_ca_file)  # fmt: skip
            self.restreamer.start()

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
            packets, octets = sent_by(viewer)
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
            p, o = sent_by(viewer)
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
        if self._hls is not None:
            await self._hls.aclose()
        if self.restreamer is not None:
            await self.restreamer.aclose()
        if self.recorder is not None:
            await self.recorder.aclose()
        await self.compositor.aclose()
        await self._watchers.aclose()


def sent_by(viewer: Viewer | RemoteViewer) -> tuple[int, int]:
    """What aiortc's senders of ``viewer`` counted (private names, see rtpsend.SENDER_FIELDS)."""
    packets = octets = 0
    for sender in viewer.senders():
        s: Any = sender
        packets += int(s._RTCRtpSender__packet_count)
        octets += int(s._RTCRtpSender__octet_count)
    return packets, octets
