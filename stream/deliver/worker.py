"""A fan-out worker process: viewers' peer connections, fed with the origin's encoded frames.

Started by :class:`stream.deliver.pool.WorkerPool` as
``python -m stream.deliver.worker SOCKET TOKEN INDEX`` with ``JANGTEO_WORKER_SETTINGS`` (ICE
settings as JSON). It connects to the origin's Unix socket, answers WHEP offers the origin hands
over (negotiating ICE and DTLS on its own UDP sockets), and sends every viewer the frames the
origin streams to it, through the fast fan-out (stream/deliver/rtpsend.py). Keyframe requests go
back to the origin. It exits when the channel closes. The messages: :mod:`stream.deliver.messages`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import sys

from aiortc import RTCPeerConnection

from core.config import Settings, parse_ice_servers
from core.tasks import TaskSet
from stream.encode.encoders import Codec
from stream.encode.ladder import Rung

from .fanout import ViewerTrack
from .messages import (
    Answer,
    Delete,
    End,
    Frame,
    Gone,
    Hello,
    Offer,
    Refused,
    ToOrigin,
    encode,
    read,
)
from .relayed import RelayedStreams
from .rtc import (
    announce,
    close_peer,
    configure_host_addresses,
    connected_within,
    new_peer_connection,
)
from .whep import negotiate_viewer, viewer_kinds, viewer_tracks

log = logging.getLogger("stream.deliver.worker")


class Broadcast(RelayedStreams):
    """A worker's copy of one broadcast's encoded streams: a bus per codec and rung its viewers
    take, fed by the origin once it is asked (:class:`Want`)."""

    def __init__(self, worker: Worker, bid: str, ladder: tuple[Rung, ...]) -> None:
        super().__init__(bid, ladder)
        self.upstream = worker.send  # the origin, over the worker's channel


class Worker:
    def __init__(self, settings: Settings, writer: asyncio.StreamWriter) -> None:
        self.settings = settings
        self.writer = writer
        self.broadcasts: dict[str, Broadcast] = {}
        self.viewers: dict[str, tuple[str, RTCPeerConnection, list[ViewerTrack]]] = {}
        self._tasks = TaskSet()

    def send(self, msg: ToOrigin) -> None:
        if not self.writer.is_closing():
            self.writer.write(encode(msg))

    def broadcast(self, bid: str, ladder: tuple[Rung, ...]) -> Broadcast:
        if bid not in self.broadcasts:
            self.broadcasts[bid] = Broadcast(self, bid, ladder)
        return self.broadcasts[bid]

    async def offer(self, msg: Offer) -> None:
        rid, bid, offer = msg.id, msg.bid, msg.sdp
        try:
            kinds = viewer_kinds(offer)
        except Exception as exc:
            self.send(Refused(rid, str(exc)))
            return
        sid = secrets.token_hex(8)
        pc = new_peer_connection(self.settings)
        holder: dict[str, Codec] = {}
        tracks = viewer_tracks(
            pc, kinds, self.broadcast(bid, msg.ladder), lambda: holder["video"],
            fast=True, rung=msg.rung, abr=msg.abr,
        )  # fmt: skip
        try:
            answer, codec = await negotiate_viewer(pc, offer, kinds)
        except Exception as exc:
            for track in tracks:
                track.stop()
            await close_peer(pc)
            self.send(Refused(rid, str(exc)))
            return
        if codec is not None:
            holder["video"] = codec
        self.viewers[sid] = (bid, pc, tracks)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed") and sid in self.viewers:
                self.send(Gone(sid))
                self._tasks.spawn(self.close_viewer(sid))

        async def deadline() -> None:  # a peer that never connects is dropped
            connected = await connected_within(pc, self.settings.connect_timeout_s)
            if not connected and sid in self.viewers:
                self.send(Gone(sid))
                await self.close_viewer(sid)

        self._tasks.spawn(deadline())

        sdp = announce(answer, self.settings.announced_address)
        self.send(Answer(rid, sid, "audio" in kinds, codec, sdp))

    async def close_viewer(self, sid: str) -> None:
        found = self.viewers.pop(sid, None)
        if found is None:
            return
        _, pc, tracks = found
        for track in tracks:
            track.stop()
        await close_peer(pc)

    def frame(self, msg: Frame) -> None:
        found = self.broadcasts.get(msg.bid)
        if found is not None:
            found.frame(msg.codec, msg.rung, msg.encoded())

    async def end(self, bid: str) -> None:
        """The origin has no viewer of ``bid`` here any more: close its peers and buses (the
        buses first, so a peer connecting meanwhile cannot join a bus about to close)."""
        broadcast = self.broadcasts.pop(bid, None)
        sids = [s for s, (b, _, _) in self.viewers.items() if b == bid]
        for sid in sids:
            self.send(Gone(sid))  # in case the origin still counts it
        if broadcast is not None:
            await broadcast.aclose()
        for sid in sids:
            await self.close_viewer(sid)

    async def run(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                match await read(reader):
                    case Frame() as msg:  # first: ~60 a second per broadcast
                        self.frame(msg)
                    case Offer() as msg:
                        self._tasks.spawn(self.offer(msg))
                    case Delete(sid=sid):
                        self._tasks.spawn(self.close_viewer(sid))
                    case End(bid=bid):
                        self._tasks.spawn(self.end(bid))
                    case _:  # the worker's own messages: not for it
                        pass
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            await self._tasks.aclose()
            for bid in {b for b, _, _ in self.viewers.values()} | set(self.broadcasts):
                await self.end(bid)


async def main(path: str, token: str, index: int) -> None:
    conf = json.loads(os.environ.get("JANGTEO_WORKER_SETTINGS", "{}"))
    settings = Settings(
        ice_servers=parse_ice_servers(json.dumps(conf.get("ice_servers") or [])),
        ice_host_addresses=tuple(conf.get("ice_host_addresses") or ()),
        announced_address=conf.get("announced_address"),
        connect_timeout_s=float(conf.get("connect_timeout_s") or 15.0),
    )
    if settings.ice_host_addresses:
        configure_host_addresses(list(settings.ice_host_addresses))
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(encode(Hello(token, index, os.getpid())))
    worker = Worker(settings, writer)
    await worker.run(reader)
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    from core.loop import run
    from core.malloc import tune_malloc

    tune_malloc()
    run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
