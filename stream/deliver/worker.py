"""A fan-out worker process: viewers' peer connections, fed with the origin's encoded frames.

Started by :class:`stream.deliver.pool.WorkerPool` as
``python -m stream.deliver.worker SOCKET TOKEN INDEX`` with ``JANGTEO_WORKER_SETTINGS`` (ICE
settings as JSON). It connects to the origin's Unix socket, answers WHEP offers the origin hands
over (negotiating ICE and DTLS on its own UDP sockets), and sends every viewer the frames the
origin streams to it, through the fast fan-out (stream/deliver/rtpsend.py). Keyframe requests go
back to the origin. It exits when the channel closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import functools
import json
import logging
import os
import secrets
import sys
from typing import Any

from aiortc import RTCPeerConnection

from core.config import Settings, parse_ice_servers
from core.tasks import TaskSet
from stream.encode.bus import FrameBus
from stream.encode.encoders import Codec, EncodedFrame

from . import channel
from .fanout import ViewerTrack
from .rtc import (
    announce,
    close_peer,
    configure_host_addresses,
    connected_within,
    new_peer_connection,
)
from .whep import negotiate_viewer, viewer_kinds, viewer_tracks

log = logging.getLogger("stream.deliver.worker")


class Worker:
    def __init__(self, settings: Settings, writer: asyncio.StreamWriter) -> None:
        self.settings = settings
        self.writer = writer
        self.buses: dict[tuple[str, Codec], FrameBus] = {}
        self.viewers: dict[str, tuple[str, RTCPeerConnection, list[ViewerTrack]]] = {}
        self._tasks = TaskSet()

    def send(self, header: dict[str, Any]) -> None:
        if not self.writer.is_closing():
            self.writer.write(channel.pack(header))

    def bus(self, bid: str, codec: Codec) -> FrameBus:
        key = (bid, codec)
        if key not in self.buses:
            if codec is Codec.OPUS:
                self.buses[key] = FrameBus("audio", lambda: None)
            else:
                self.buses[key] = FrameBus("video", functools.partial(self.keyframe, bid))
        return self.buses[key]

    def keyframe(self, bid: str) -> None:
        """Ask the origin's encoder of ``bid`` for a keyframe (rate-limited there)."""
        self.send({"t": "keyframe", "bid": bid})

    async def offer(self, msg: dict[str, Any]) -> None:
        rid, bid, offer = msg["id"], str(msg["bid"]), str(msg["sdp"])
        try:
            kinds = viewer_kinds(offer)
        except Exception as exc:
            self.send({"t": "error", "id": rid, "detail": str(exc)})
            return
        sid = secrets.token_hex(8)
        pc = new_peer_connection(self.settings)
        holder: dict[str, Codec] = {}
        tracks = viewer_tracks(
            pc, kinds, lambda c: self.bus(bid, c), lambda: holder["video"],
            fast=True,
        )  # fmt: skip
        try:
            answer, codec = await negotiate_viewer(pc, offer, kinds)
        except Exception as exc:
            for track in tracks:
                track.stop()
            await close_peer(pc)
            self.send({"t": "error", "id": rid, "detail": str(exc)})
            return
        if codec is not None:
            holder["video"] = codec
        self.viewers[sid] = (bid, pc, tracks)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed") and sid in self.viewers:
                self.send({"t": "gone", "sid": sid})
                self._tasks.spawn(self.close_viewer(sid))

        async def deadline() -> None:  # a peer that never connects is dropped
            connected = await connected_within(pc, self.settings.connect_timeout_s)
            if not connected and sid in self.viewers:
                self.send({"t": "gone", "sid": sid})
                await self.close_viewer(sid)

        self._tasks.spawn(deadline())

        self.send({"t": "answer", "id": rid, "sid": sid, "audio": "audio" in kinds,
                   "video": codec.value if codec else None,
                   "sdp": announce(answer, self.settings.announced_address)})  # fmt: skip

    async def close_viewer(self, sid: str) -> None:
        found = self.viewers.pop(sid, None)
        if found is None:
            return
        _, pc, tracks = found
        for track in tracks:
            track.stop()
        await close_peer(pc)

    def frame(self, msg: dict[str, Any], payload: bytes) -> None:
        num, den = msg["tb"]
        frame = EncodedFrame(payload, int(msg["pts"]), fractions.Fraction(num, den),
                             bool(msg["key"]), float(msg["at"]))  # fmt: skip
        self.bus(str(msg["bid"]), Codec(msg["codec"])).publish([frame])

    async def end(self, bid: str) -> None:
        """The origin has no viewer of ``bid`` here any more: close its peers and buses (the
        buses first, so a peer connecting meanwhile cannot join a bus about to close)."""
        buses = [self.buses.pop(k) for k in [k for k in self.buses if k[0] == bid]]
        sids = [s for s, (b, _, _) in self.viewers.items() if b == bid]
        for sid in sids:
            self.send({"t": "gone", "sid": sid})  # in case the origin still counts it
        for bus in buses:
            await bus.aclose()
        for sid in sids:
            await self.close_viewer(sid)

    async def run(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                msg, payload = await channel.read(reader)
                kind = msg.get("t")
                if kind == "frame":
                    self.frame(msg, payload)
                elif kind == "offer":
                    self._tasks.spawn(self.offer(msg))
                elif kind == "delete":
                    self._tasks.spawn(self.close_viewer(str(msg["sid"])))
                elif kind == "end":
                    self._tasks.spawn(self.end(str(msg["bid"])))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            await self._tasks.aclose()
            for bid in {b for b, _, _ in self.viewers.values()} | {b for b, _ in self.buses}:
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
    writer.write(channel.pack({"t": "hello", "token": token, "index": index, "pid": os.getpid()}))
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
