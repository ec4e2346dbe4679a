"""A broadcast's media on this process: :class:`BroadcastMedia` owns its compositor, its WHIP
publishers and WHEP viewers (here or on worker processes), its LL-HLS packager and its
recording."""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

from aiortc.mediastreams import MediaStreamTrack

from core.config import Settings
from core.tokens import Claims, Role
from stream.compose.compositor import Compositor
from stream.compose.layout import MAX_PICTURES
from stream.deliver.rtc import (
    announce,
    answer_offer,
    check_offer,
    new_peer_connection,
)
from stream.encode.bus import FrameBus, Streams
from stream.encode.encoders import Codec
from stream.encode.ladder import ladder_for
from stream.ingest.publisher import Publisher, PublisherState, Source

from .audience import Audience
from .deliver.hls.packager import HlsPackager
from .deliver.record.recorder import Limits, Recorder, prune_recordings
from .deliver.rtmp.destinations import DestinationStore
from .deliver.rtmp.restreamer import Restreamer
from .errors import (
    BroadcastEnded,
    CohostLimit,
    HostLive,
    SessionNotFound,
)
from .handover import Handover

log = logging.getLogger(__name__)


class BroadcastMedia(Audience):
    """A broadcast whose origin is this process: its publishers, compositor, outputs, viewers."""

    def __init__(
        self,
        bid: str,
        settings: Settings,
        restream: DestinationStore | None = None,
        portrait: bool = False,
    ) -> None:
        self.portrait = portrait
        width, height = settings.output_size(portrait)
        self.ladder = ladder_for(settings.ladder, width, height, settings.video_bitrate)
        self.compositor = Compositor(
            bid, width, height, settings.video_fps, settings.video_bitrate, self.ladder,
        )  # fmt: skip
        super().__init__(bid, settings, self.compositor)
        self.publishers: dict[str, Publisher] = {}
        self._hls: HlsPackager | None = None
        self.recorder: Recorder | None = None
        self.restreamer: Restreamer | None = None
        self.restream = restream  # the destinations (None: no restreaming set up)
        self.handover: Handover | None = None  # set: another node is the origin now

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
            # off the event loop: it reads every recording's meta
            self._spawn(asyncio.to_thread(prune_recordings, s.data_dir, s.record_retention_days))
            self.recorder = Recorder(self.compositor, self.bid, s.data_dir,
                                     Limits(s.record_min_free_mb, s.record_max_mb))  # fmt: skip
            self.recorder.start()
        if self.restream is not None:
            self.restreamer = Restreamer(self.bid, self.compositor, self.restream,
                                         s.restream_allow_private, s.restream_ca_file)  # fmt: skip
            self.restreamer.start()

    async def hand_over(self, upstream: Streams) -> None:
        """This node is not the broadcast's origin any more (the publisher went to another):
        compose nothing, leave the outputs to the new origin (the recording is finished when
        the show ends); the viewers here stay, fed from ``upstream``, this node's edge of it."""
        last_s = self.compositor.clock_s()
        await self.compositor.stop()
        if self._hls is not None:
            await self._hls.aclose()
            self._hls = None
        if self.restreamer is not None:
            await self.restreamer.hand_off()
            self.restreamer = None
        if self.recorder is not None:
            await self.recorder.aclose()
        c = self.compositor
        buses: dict[tuple[Codec, str], FrameBus] = {(Codec.OPUS, ""): c.audio_bus}
        for codec in (Codec.H264, Codec.VP8):
            buses |= {(codec, rung): c.bus(codec, rung) for rung in c.rungs}
        self.handover = Handover(buses, upstream, last_s)
        self.handover.start()
        log.info("handed over to the new origin", extra={"bid": self.bid})

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

        self._watch(pc, lambda: self.remove_publisher(pid), publisher.connected)
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

    def session(self, kind: str, sid: str) -> Any:
        if kind == "whip":
            found = self.publishers.get(sid)
            if found is None:
                raise SessionNotFound(f"no WHIP session {sid!r} on this broadcast")
            return found
        return super().session(kind, sid)

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
        if self.handover is not None:
            self.handover.close()
        elif self.recorder is not None:
            await self.recorder.aclose()
        await self.compositor.aclose()
        await self._watchers.aclose()
