"""The viewers of one broadcast on this process: :class:`Audience` admits WHEP offers under the
limits, serves them here or on a fan-out worker, counts them and drops a viewer whose peer goes.
A broadcast's origin media (stream/media.py) has one, and so has an edge that pulls the
broadcast from its origin on another node (stream/edge.py): viewers are served the same way from
either, over the streams of their :attr:`Audience.source`."""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any

from aiortc import RTCPeerConnection

from core.config import Settings
from core.tasks import TaskSet
from core.tokens import Claims, Role
from stream.deliver.rtc import announce, connected_within, new_peer_connection
from stream.deliver.whep import Viewer, negotiate_viewer, viewer_kinds, viewer_tracks
from stream.encode.bus import Streams
from stream.encode.encoders import Codec

from .errors import RenditionNotFound, SessionNotFound, TooManySessions

if TYPE_CHECKING:
    from stream.deliver.pool import RemoteViewer, WorkerPool

log = logging.getLogger(__name__)


class Audience:
    def __init__(self, bid: str, settings: Settings, source: Streams) -> None:
        self.bid = bid
        self.settings = settings
        self.source = source
        self.viewers: dict[str, Viewer | RemoteViewer] = {}
        self.workers: WorkerPool | None = None  # set: viewers are served by worker processes
        self._closed = False
        self._watchers = TaskSet()
        # (user id, address) of WHEP offers being negotiated: they count against the limits
        self._admitting: list[tuple[str, str]] = []
        self.packets_out_closed = 0
        self.bytes_out_closed = 0

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
        if rendition and rendition not in self.source.rungs:
            names = ", ".join(self.source.rungs)
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
            pc, kinds, self.source, lambda: holder["video"],
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

    def idle(self) -> bool:
        """No viewer, and none being admitted."""
        return not self.viewers and not self._admitting

    def audience(self) -> int:
        """WHEP sessions of viewers (the studio's own preview of its output does not count)."""
        return sum(1 for v in self.viewers.values() if v.claims.role is Role.VIEWER)

    def session(self, kind: str, sid: str) -> Any:
        """The WHEP session ``sid`` (SessionNotFound if there is none)."""
        found = self.viewers.get(sid) if kind == "whep" else None
        if found is None:
            raise SessionNotFound(f"no {kind.upper()} session {sid!r} on this broadcast")
        return found

    def traffic(self) -> tuple[int, int]:
        """RTP packets and payload bytes sent to this process's viewers, read from counters: the
        fast fan-outs' totals (no walk over viewers), or each aiortc sender's own."""
        packets, octets = self.packets_out_closed, self.bytes_out_closed
        if self.settings.fanout == "fast":
            for sink in list(self.source.sinks.values()):
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
        on_connected: Callable[[], None] | None = None,
    ) -> None:
        @pc.on("connectionstatechange")
        async def on_state() -> None:
            state = pc.connectionState
            if on_connected is not None and state == "connected":
                on_connected()
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
        self._closed = True
        await self.close_viewers()
        await self._watchers.aclose()

    async def close_viewers(self) -> None:
        viewers = list(self.viewers.values())
        self.viewers.clear()
        for viewer in viewers:
            with contextlib.suppress(Exception):
                await viewer.aclose()


def sent_by(viewer: Viewer | RemoteViewer) -> tuple[int, int]:
    """What aiortc's senders of ``viewer`` counted (private names, see rtpsend.SENDER_FIELDS)."""
    packets = octets = 0
    for sender in viewer.senders():
        s: Any = sender
        packets += int(s._RTCRtpSender__packet_count)
        octets += int(s._RTCRtpSender__octet_count)
    return packets, octets
