"""One destination's push: the broadcast's H.264 (one rung) and AAC as FLV over RTMP(S).

The packets are the ones already encoded (no decode, no encode): the pusher subscribes to the
rung's bus and the AAC bus like any viewer, and sends each frame as an FLV tag on its own
:class:`~.session.RtmpSession`. Between the buses and the socket sits a bounded queue: when the far
end is slow the socket's backlog grows, the pusher waits for it (never the buses), and when
the queue fills it is emptied and the push resumes at the next keyframe (asked for), so a slow
destination costs nothing to the others or to the viewers; one that takes nothing for
``STALL_S`` is dropped and retried. Platforms want a keyframe at least every few seconds: the
pusher asks the rung's encoder for one when ``KEYFRAME_S`` pass without. A push that fails is
retried with backoff (1 s, doubling, up to 30 s); each connection first resolves and checks the
destination's host and connects to an address that passed (TLS verified against the name).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import ssl
import time
from collections.abc import Callable
from typing import Any

from core.problems import Problem
from core.tasks import cancel_and_wait
from stream.encode.bus import FrameBus
from stream.encode.encoders import AAC_CONFIG, EncodedFrame

from ..hls import fmp4
from .destinations import Destination, PrivateDestination, Target, parse, resolve, scrub
from .session import (
    RtmpError,
    RtmpSession,
    aac_frame,
    aac_sequence_header,
    avc_frame,
    avc_sequence_header,
)

log = logging.getLogger(__name__)

QUEUE_FRAMES = 240  # about three seconds of video and audio
BACKLOG_BYTES = 512 * 1024  # more than this unsent on the socket: wait for the far end
STALL_S = 10.0  # the far end took nothing for this long: drop the connection, try again
KEYFRAME_S = 2.0
BACKOFF_S, MAX_BACKOFF_S = 1.0, 30.0
FAILED_AFTER = 12  # consecutive failed connections (about five minutes) before "failed"
CONNECT_TIMEOUT_S = 10.0
REPORT_S = 2.0
LIVE_OK_S = 10.0  # a connection that published this long was a success (backoff starts over)

Report = Callable[[dict[str, Any]], None]


@functools.cache
def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """The system's CAs, plus ``ca_file``'s (a private platform's) when given; made once per
    file and shared (loading CAs takes a while: call it off the event loop)."""
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


class Pusher:
    def __init__(
        self,
        destination: Destination,
        video: FrameBus,
        audio: FrameBus,
        report: Report,
        allow_private: bool,
        tls: Callable[[], ssl.SSLContext],
    ) -> None:
        self.destination = destination
        self.target: Target = parse(destination.url)
        self.video_bus, self.audio_bus = video, audio
        self.report = report
        self.allow_private = allow_private
        self.tls = tls  # made when an rtmps:// connection first needs it (loading CAs)
        self.status = "idle"
        self.since = time.time()
        self.last_error: str | None = None
        self.connections = 0
        self._sent_before = 0  # bytes sent by the connections before this one
        self._session: RtmpSession | None = None
        self.dropped = 0  # frames dropped because the far end was behind
        self.cpu_s = 0.0  # this push's own CPU on the event loop (the benchmark reads it)
        self.skipped = 0  # video frames that could not be carried (not H.264 access units)
        self._live = False  # a session is publishing: frames are queued and keyframes asked
        self._lasted = 0.0  # how long the last session published
        self._queue: collections.deque[tuple[bool, EncodedFrame]] = collections.deque()
        self._wake = asyncio.Event()
        self._waiting_keyframe = True
        self._last_keyframe = 0.0
        self._asked_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._audio = _AudioTap(self)

    # -- the buses' side -------------------------------------------------------------------------
    def start(self) -> None:
        self.video_bus.add(self)
        self.audio_bus.add(self._audio)
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"restream-{self.destination.id}"
        )

    def offer(self, frame: EncodedFrame) -> None:  # a video frame
        if not self._live:  # between connections nothing is kept, nothing asked of the encoder
            return
        now = time.monotonic()
        if frame.keyframe:
            self._last_keyframe = now
        elif now - self._last_keyframe > KEYFRAME_S and now - self._asked_at > 0.5:
            self._asked_at = now
            self.video_bus.request_keyframe()
        self._put(True, frame)

    def _put(self, video: bool, frame: EncodedFrame) -> None:
        if not self._live:
            return
        t0 = time.thread_time()
        self._enqueue(video, frame)
        self.cpu_s += time.thread_time() - t0

    def _enqueue(self, video: bool, frame: EncodedFrame) -> None:
        if len(self._queue) >= QUEUE_FRAMES:  # the far end is behind: drop, resume at a key
            self.dropped += len(self._queue)
            self._restart_at_keyframe()
        if self._waiting_keyframe:
            if not (video and frame.keyframe):
                return
            self._waiting_keyframe = False
        self._queue.append((video, frame))
        self._wake.set()

    def _restart_at_keyframe(self) -> None:
        self._queue.clear()
        self._waiting_keyframe = True
        self.video_bus.request_keyframe()

    def close(self) -> None:  # a bus closed: the media is closing (aclose follows)
        self._detach()

    def _detach(self) -> None:
        self.video_bus.discard(self)
        self.audio_bus.discard(self._audio)

    async def aclose(self) -> None:
        self._detach()
        await cancel_and_wait(self._task)
        if self.status != "failed":
            self._set("idle")

    @property
    def bytes_sent(self) -> int:
        return self._sent_before + (self._session.bytes_sent if self._session else 0)

    def snapshot(self) -> dict[str, Any]:
        return {"status": self.status, "since": int(self.since * 1000),
                "bytes_sent": self.bytes_sent, "last_error": self.last_error}  # fmt: skip

    # -- pushing ---------------------------------------------------------------------------------
    def _set(self, status: str, error: str | None = None) -> None:
        if status != self.status:
            self.status, self.since = status, time.time()
        if error is not None:
            self.last_error = scrub(error, self.destination.url)[:300]
        self.report(self.snapshot())

    async def _run(self) -> None:
        failures, backoff = 0, BACKOFF_S
        while True:
            self._set("connecting" if failures == 0 else self._troubled(failures))
            connections = self.connections
            try:
                await self._push()
            except PrivateDestination as exc:  # it resolves elsewhere now: never connect
                self._set("failed", str(exc))
                log.warning("restream %s: %s", self.destination.id, self.last_error)
                self._detach()
                return
            except Exception as exc:  # the far end, the network, the resolver: try again
                if self.connections > connections and self._lasted >= LIVE_OK_S:
                    failures, backoff = 0, BACKOFF_S  # it was live a while, then dropped
                failures += 1
                if failures > 1:
                    backoff = min(MAX_BACKOFF_S, backoff * 2)
                known = isinstance(exc, OSError | RtmpError | ValueError | EOFError | Problem)
                why = str(exc) or type(exc).__name__
                self._set(self._troubled(failures), why)
                log.warning("restream %s: %s", self.destination.id, self.last_error,
                            exc_info=None if known else exc)  # fmt: skip
            await asyncio.sleep(backoff)

    @staticmethod
    def _troubled(failures: int) -> str:
        """``failed`` once it has not worked for minutes (it keeps trying), else ``retrying``."""
        return "failed" if failures >= FAILED_AFTER else "retrying"

    async def _connect(self) -> RtmpSession:
        t = self.target
        addresses = await resolve(t, self.allow_private)
        tls = await asyncio.to_thread(self.tls) if t.scheme == "rtmps" else None
        last: BaseException | None = None
        for address in addresses:  # the addresses checked, in the resolver's order
            try:
                return await asyncio.wait_for(
                    RtmpSession.open(address, t.port, tls, t.host, t.tc_url, t.app, t.key),
                    CONNECT_TIMEOUT_S,
                )
            except (OSError, RtmpError, TimeoutError, EOFError) as exc:
                last = exc
        assert last is not None
        raise last

    async def _push(self) -> None:
        session = self._session = await self._connect()
        session.on_failed = self._wake.set
        self.connections += 1
        started, polite = time.monotonic(), False
        try:
            self._live = True
            self._restart_at_keyframe()
            self._set("live")
            try:
                await self._send(session)
            except asyncio.CancelledError:  # stopped (deleted, the show ended): say goodbye
                polite = True
                raise
        finally:
            self._live = False
            self._queue.clear()
            self._lasted = time.monotonic() - started
            self._sent_before += session.bytes_sent
            self._session = None
            await session.aclose(polite=polite)

    async def _next(self, session: RtmpSession) -> tuple[bool, EncodedFrame]:
        while not self._queue:
            if session.failed is not None:
                raise session.failed
            self._wake.clear()
            await self._wake.wait()
        return self._queue.popleft()

    async def _send(self, session: RtmpSession) -> None:
        config: fmp4.H264Config | None = None
        base_ms = 0
        reported = time.monotonic()
        while True:
            video, frame = await self._next(session)
            t0 = time.thread_time()
            ms = round(frame.pts * frame.time_base * 1000)
            if video:
                try:
                    sample, new = fmp4.h264_sample(frame.data)
                except ValueError:  # not one we can carry: skip it, not the connection
                    self.skipped += 1
                    continue
                if new is not None and new != config:
                    if config is None:  # the first keyframe: time starts here
                        base_ms = ms
                        session.metadata(_metadata(new))
                        session.audio(0, aac_sequence_header(AAC_CONFIG))
                    session.video(ms - base_ms, avc_sequence_header(new.record))
                    config = new
                if config is None:
                    continue
                session.video(ms - base_ms, avc_frame(sample, frame.keyframe))
            elif config is not None and ms >= base_ms:
                session.audio(ms - base_ms, aac_frame(frame.data))
            self.cpu_s += time.thread_time() - t0
            if session.failed is not None:
                raise session.failed
            if session.backlog > BACKLOG_BYTES:
                try:
                    await asyncio.wait_for(session.drain(), STALL_S)
                except TimeoutError:
                    stalled = f"the destination took nothing for {STALL_S:.0f} s"
                    raise TimeoutError(stalled) from None
            now = time.monotonic()
            if now - reported >= REPORT_S:
                reported = now
                self._set("live")


def _metadata(config: fmp4.H264Config) -> dict[str, Any]:
    return {
        "width": config.width, "height": config.height, "videocodecid": 7, "audiocodecid": 10,
        "audiosamplerate": 48000, "audiosamplesize": 16, "stereo": True, "encoder": "Jangteo",
    }  # fmt: skip


class _AudioTap:
    def __init__(self, pusher: Pusher) -> None:
        self.pusher = pusher

    def offer(self, frame: EncodedFrame) -> None:
        self.pusher._put(False, frame)

    def close(self) -> None:
        pass
