"""Fan-out worker processes: the origin encodes, workers send to viewers, every core is used.

One process runs one event loop on one core; the per-packet work of many viewers (header, SRTP,
send) is what fills it. With ``--workers N`` the origin (``jangteo serve``) keeps ingest, the
compositor, the encoders, the API and chat, and starts N worker processes (``python -m
stream.deliver.worker``). A WHEP offer that reaches the origin is handed to the worker with
the fewest viewers; the worker negotiates ICE/DTLS on its own sockets and answers; the viewer
keeps talking to the origin's URL for DELETE (one URL, the worker is invisible). The origin sends
each encoded frame once per worker over a Unix socket (:mod:`stream.deliver.channel`): the worker
packetizes it once and fans it out (stream/deliver/rtpsend.py). Keyframe requests (a viewer
joining, PLI) come back over the same channel to the broadcast's rate-limited encoder. The
messages, typed: :mod:`stream.deliver.messages`.

A worker that dies takes only its viewers: the origin drops their sessions, the broadcast goes on,
and a new worker takes its place. A worker whose channel falls behind skips to the next keyframe.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol

from core.config import Settings
from core.problems import Unavailable
from core.tasks import TaskSet
from core.tokens import Claims
from stream.encode.bus import Streams
from stream.encode.encoders import Codec, EncodedFrame
from stream.errors import BadSdp

from .messages import (
    Answer,
    BadMessage,
    Delete,
    End,
    Frame,
    Gone,
    Hello,
    Keyframe,
    Message,
    Offer,
    Refused,
    ToWorker,
    Want,
    encode,
    read,
)

log = logging.getLogger(__name__)
WORKER_MODULE = "stream.deliver.worker"

START_TIMEOUT_S = 30.0
ANSWER_TIMEOUT_S = 15.0
MAX_CHANNEL_BUFFER = 4 << 20  # bytes queued to one worker before its feeds skip to a keyframe
HARD_CHANNEL_BUFFER = 16 << 20  # beyond this nothing is queued for it (audio and keyframes too)
RESPAWN_DELAY_S = 1.0


class BroadcastMedia(Protocol):
    """The broadcast media a worker serves viewers of (stream/hub.py ``BroadcastMedia``)."""

    bid: str
    source: Streams

    async def remove_viewer(self, vid: str) -> None: ...

    def forget_viewer(self, vid: str) -> None:
        """Drop the session of a viewer that is already gone (its worker stopped)."""


@dataclasses.dataclass(eq=False)
class RemoteViewer:
    """A viewer served by a worker; the origin keeps its session for DELETE and counting."""

    id: str
    claims: Claims
    link: WorkerLink
    media: BroadcastMedia
    video_codec: Codec | None
    address: str = ""
    closed: bool = False

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.link.viewer_left(self)
        self.link.send(Delete(self.id))

    def senders(self) -> list[Any]:
        return []


class FeedLink(Protocol):
    """Where a :class:`WorkerFeed` sends: a worker's channel, or an edge node's relay."""

    alive: bool
    feed_cpu_s: float

    def buffered(self) -> int: ...

    def send(self, msg: Frame | End) -> None: ...


class WorkerFeed:
    """Subscribes a worker (or an edge node) to one of a broadcast's buses (a codec at a rung,
    as it asked with :class:`Want`): each frame once over the channel."""

    def __init__(self, link: FeedLink, bid: str, source: Streams, codec: Codec, rung: str) -> None:
        self.link = link
        self.bid = bid
        self.codec = codec
        self.rung = rung
        self.bus = source.bus(codec, rung or None)
        self.bus.add(self)
        self.waiting_keyframe = False
        self.asked = False  # a keyframe was requested for this wait

    def request_keyframe(self) -> None:  # whoever encodes the bus now (stream/handover.py)
        self.bus.request_keyframe()

    def offer(self, frame: EncodedFrame) -> None:
        t0 = time.thread_time()
        self._offer(frame)
        self.link.feed_cpu_s += time.thread_time() - t0

    def _offer(self, frame: EncodedFrame) -> None:
        if not self.link.alive:
            return
        video = self.codec is not Codec.OPUS
        buffered = self.link.buffered()
        if buffered > HARD_CHANNEL_BUFFER:  # the worker is stalled: send nothing at all
            self.waiting_keyframe = video
            return
        if self.waiting_keyframe and not frame.keyframe:
            if buffered <= MAX_CHANNEL_BUFFER and not self.asked:  # drained: ask once
                self.asked = True
                self.request_keyframe()
            return
        if buffered > MAX_CHANNEL_BUFFER and video and not frame.keyframe:
            self.waiting_keyframe = True  # the next keyframe resumes it
            return
        self.waiting_keyframe = self.asked = False
        self.link.send(Frame.of(self.bid, self.codec, self.rung, frame))

    def close(self) -> None:  # the broadcast's bus closed: it has ended
        self.link.send(End(self.bid))

    def detach(self) -> None:
        self.bus.discard(self)


class WorkerLink:
    """The origin's end of one worker: its process, channel, viewers and feeds."""

    def __init__(self, pool: WorkerPool, index: int) -> None:
        self.pool = pool
        self.index = index
        self.proc: asyncio.subprocess.Process | None = None
        self.greeted: asyncio.subprocess.Process | None = None  # the process that said hello
        self.pid = 0
        self.writer: asyncio.StreamWriter | None = None
        self.alive = False
        self.ready = asyncio.Event()
        self.restarts = 0
        self.restarted = asyncio.Event()  # set when a replacement worker has said hello
        self.viewers: dict[str, RemoteViewer] = {}
        self.feeds: dict[tuple[str, Codec, str], WorkerFeed] = {}
        # offers in flight: request id → (the answer to come, the broadcast's media)
        self.pending: dict[int, tuple[asyncio.Future[Answer | Refused], BroadcastMedia]] = {}
        self.feed_cpu_s = 0.0  # the origin's CPU spent feeding this worker (benchmark)

    def buffered(self) -> int:
        return self.writer.transport.get_write_buffer_size() if self.writer else 0

    def send(self, msg: ToWorker) -> None:
        if self.writer is None or not self.alive or self.writer.is_closing():
            return
        self.writer.write(encode(msg))

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read the worker's messages until its channel closes."""
        self.writer, self.alive = writer, True
        try:
            while True:
                self._handle(await read(reader))
        except (asyncio.IncompleteReadError, ConnectionError, BadMessage):
            pass
        finally:
            self.alive = False
            writer.close()
            await self.pool.lost(self)

    def _handle(self, msg: Message) -> None:
        match msg:
            case Hello():
                self.pid = msg.pid
                self.greeted = self.proc
                self.ready.set()
                if self.restarts:
                    self.restarted.set()
            case Answer() | Refused():
                found = self.pending.pop(msg.id, None)
                if found is not None and not found[0].done():
                    found[0].set_result(msg)
            case Keyframe():
                media = self.media_of(msg.bid)
                if media is not None and msg.rung in ("", *media.source.rungs):
                    media.source.bus(msg.codec, msg.rung or None).request_keyframe()
            case Want():
                self.want(msg)
            case Gone():
                viewer = self.viewers.get(msg.sid)
                if viewer is not None:
                    self.pool.tasks.spawn(viewer.media.remove_viewer(viewer.id))
            case _:  # the origin's own messages: not for it
                pass

    def media_of(self, bid: str) -> BroadcastMedia | None:
        """The media of a broadcast this worker serves (or is negotiating a viewer of)."""
        served = [v.media for v in self.viewers.values()] + [m for _, m in self.pending.values()]
        return next((m for m in served if m.bid == bid), None)

    def viewer_left(self, viewer: RemoteViewer) -> None:
        self.viewers.pop(viewer.id, None)
        bid = viewer.media.bid
        if self.media_of(bid) is not None:  # still serving (or negotiating) a viewer of it
            return
        for key in [k for k in self.feeds if k[0] == bid]:  # its last viewer of that broadcast
            self.feeds.pop(key).detach()
        self.send(End(bid))

    def want(self, msg: Want) -> None:
        """Start or stop feeding the worker a codec and rung of a broadcast it serves."""
        key = (msg.bid, msg.codec, msg.rung)
        media = self.media_of(msg.bid)
        if not msg.want or media is None:
            if key in self.feeds:
                self.feeds.pop(key).detach()
            return
        if msg.rung and msg.rung not in media.source.rungs:
            return  # not a rung of this broadcast: nothing to send
        if key not in self.feeds:
            self.feeds[key] = WorkerFeed(self, msg.bid, media.source, msg.codec, msg.rung)


class WorkerPool:
    """The origin's fan-out workers."""

    def __init__(self, settings: Settings, count: int) -> None:
        self.settings = settings
        self.count = count
        self.links: list[WorkerLink] = []
        self._dir = Path(tempfile.mkdtemp(prefix="jangteo-workers-"))
        self._path = str(self._dir / "channel.sock")
        self._server: asyncio.AbstractServer | None = None
        self._tokens: dict[str, WorkerLink] = {}  # a spawned worker proves who it is with one
        self._ids = itertools.count(1)
        self.tasks = TaskSet()
        self._closing = False
        self.crashes = 0

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._accept, path=self._path)
        self.links = [WorkerLink(self, i) for i in range(self.count)]
        for link in self.links:
            await self._spawn(link)
        async with asyncio.timeout(START_TIMEOUT_S):
            await asyncio.gather(*(link.ready.wait() for link in self.links))
        log.info("%d fan-out workers ready", self.count)

    async def _spawn(self, link: WorkerLink) -> None:
        token = secrets.token_hex(8)
        self._tokens[token] = link
        env = os.environ | {"JANGTEO_WORKER_SETTINGS": json.dumps(worker_settings(self.settings))}
        link.ready.clear()
        proc = link.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "stream.deliver.worker",
            self._path,
            token,
            str(link.index),
            env=env,
        )
        self.tasks.spawn(self._watch(link, proc, token))

    async def _watch(self, link: WorkerLink, proc: asyncio.subprocess.Process, token: str) -> None:
        """A worker that dies before its hello never reaches :meth:`lost`: start another."""
        code = await proc.wait()
        self._tokens.pop(token, None)
        if self._closing or link.greeted is proc:  # after hello, lost() takes care of it
            return
        self.crashes += 1
        log.warning("fan-out worker %d exited (%s) before it was ready", link.index, code)
        await asyncio.sleep(RESPAWN_DELAY_S * min(30, 2 ** min(self.crashes, 5)))
        if not self._closing:
            await self._spawn(link)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            msg = await asyncio.wait_for(read(reader), 10)
        except (TimeoutError, asyncio.IncompleteReadError, BadMessage):
            writer.close()
            return
        link = self._tokens.pop(msg.token, None) if isinstance(msg, Hello) else None
        if link is None:
            writer.close()
            return
        link._handle(msg)
        await link.serve(reader, writer)

    async def add_viewer(
        self,
        media: BroadcastMedia,
        claims: Claims,
        offer: str,
        address: str = "",
        rendition: str = "",
    ) -> tuple[RemoteViewer, str]:
        live = [link for link in self.links if link.alive]
        if not live:
            raise _busy("no fan-out worker is running")
        link = min(live, key=lambda w: len(w.viewers) + len(w.pending))
        rid = next(self._ids)
        fut: asyncio.Future[Answer | Refused] = asyncio.get_running_loop().create_future()
        link.pending[rid] = (fut, media)
        abr = self.settings.abr and not rendition
        link.send(Offer(rid, media.bid, offer, media.source.ladder, rendition, abr))
        try:
            reply = await asyncio.wait_for(fut, ANSWER_TIMEOUT_S)
        except TimeoutError:
            raise _busy("the fan-out worker did not answer in time") from None
        finally:
            link.pending.pop(rid, None)
        if isinstance(reply, Refused):
            if reply.lost:
                raise _busy(reply.detail)
            raise BadSdp(reply.detail or "the worker refused the offer")
        viewer = RemoteViewer(reply.sid, claims, link, media, reply.video, address)
        link.viewers[viewer.id] = viewer  # the worker asks for the rungs it needs (Want)
        return viewer, reply.sdp

    async def lost(self, link: WorkerLink) -> None:
        """A worker's channel closed: its viewers are gone; start another worker."""
        link.ready.clear()
        for rid, (fut, _) in link.pending.items():
            if not fut.done():  # never sent: the origin's own refusal
                fut.set_result(Refused(rid, "the fan-out worker stopped", lost=True))
        for viewer in list(link.viewers.values()):
            viewer.closed = True
            viewer.media.forget_viewer(viewer.id)
        link.viewers.clear()
        for feed in link.feeds.values():
            feed.detach()
        link.feeds.clear()
        if self._closing:
            return
        self.crashes += 1
        link.restarts += 1
        log.warning("fan-out worker %d (pid %d) stopped; starting another", link.index, link.pid)
        if link.proc is not None:
            await link.proc.wait()
        await asyncio.sleep(RESPAWN_DELAY_S)
        if not self._closing:
            await self._spawn(link)

    async def aclose(self) -> None:
        self._closing = True
        for link in self.links:
            if link.writer is not None:
                link.writer.close()
        for link in self.links:
            if link.proc is not None and link.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    link.proc.terminate()
                try:
                    await asyncio.wait_for(link.proc.wait(), 10)
                except TimeoutError:
                    link.proc.kill()
                    await link.proc.wait()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        await self.tasks.aclose()
        with contextlib.suppress(OSError):
            os.unlink(self._path)
            self._dir.rmdir()


def _busy(detail: str) -> Unavailable:
    return Unavailable(f"{detail}; try again in a moment", headers={"Retry-After": "2"})


def worker_settings(settings: Settings) -> dict[str, Any]:
    """What a worker needs to make peer connections like the origin's."""
    return {
        "ice_servers": [
            {"urls": s.urls, "username": s.username, "credential": s.credential}
            for s in settings.ice_servers
        ],
        "ice_host_addresses": list(settings.ice_host_addresses),
        "announced_address": settings.announced_address,
        "connect_timeout_s": settings.connect_timeout_s,
    }
