"""WHIP and WHEP clients on aiortc, for tests, benchmarks and scripts.

They speak the same HTTP contract any studio or player does: POST an SDP offer with a Bearer
token, read the answer and ``Location``, DELETE the session to leave.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.audio.frame import AudioFrame
from av.video.frame import VideoFrame
from numpy.typing import NDArray

from core.tasks import cancel_all

from .jitter import SkippingJitterBuffer
from .jitter import install as install_jitter


class SignallingError(RuntimeError):
    def __init__(self, status: int, body: str, content_type: str) -> None:
        super().__init__(f"HTTP {status}: {body[:300]}")
        self.status = status
        self.body = body
        self.content_type = content_type


async def _post_offer(
    http: httpx.AsyncClient,
    url: str,
    token: str | None,
    pc: RTCPeerConnection,
    answer_hook: Callable[[str], Awaitable[str]] | None = None,
) -> str:
    await pc.setLocalDescription(await pc.createOffer())
    headers = {"Content-Type": "application/sdp"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    r = await http.post(url, content=pc.localDescription.sdp, headers=headers)
    if r.status_code != 201:
        raise SignallingError(r.status_code, r.text, r.headers.get("content-type", ""))
    answer = await answer_hook(r.text) if answer_hook is not None else r.text
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    location = r.headers["location"]
    return str(httpx.URL(url).join(location))


class WhipClient:
    """Publishes tracks to ``POST /whip/{bid}``."""

    def __init__(self, base_url: str, bid: str, token: str | None) -> None:
        self.url = f"{base_url}/whip/{bid}"
        self.token = token
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.session_url: str | None = None
        self._http = httpx.AsyncClient(timeout=20)

    async def publish(self, *tracks: MediaStreamTrack, video_codec: str | None = None) -> None:
        for track in tracks:
            transceiver = self.pc.addTransceiver(track, direction="sendonly")
            if track.kind == "video" and video_codec:
                caps = RTCRtpSender.getCapabilities("video").codecs
                prefs = [c for c in caps if c.mimeType.lower() == f"video/{video_codec}"]
                transceiver.setCodecPreferences(prefs)
        self.session_url = await _post_offer(self._http, self.url, self.token, self.pc)

    async def connected(self, timeout: float = 10) -> None:
        await _wait_connected(self.pc, timeout)

    async def aclose(self, *, delete: bool = True) -> None:
        """Leave; ``delete=False`` drops without telling the server (a crash or network loss).
        Again is harmless."""
        if self._http.is_closed:
            return
        if delete and self.session_url:
            with contextlib.suppress(httpx.HTTPError):
                await self._http.delete(
                    self.session_url, headers={"Authorization": f"Bearer {self.token}"}
                )
        await self.pc.close()
        await self._http.aclose()


async def _wait_connected(pc: RTCPeerConnection, timeout: float) -> None:
    done = asyncio.Event()

    def check() -> None:
        if pc.connectionState in ("connected", "failed", "closed"):
            done.set()

    pc.on("connectionstatechange", check)
    check()
    await asyncio.wait_for(done.wait(), timeout)
    if pc.connectionState != "connected":
        raise ConnectionError(f"peer connection {pc.connectionState}")


@dataclasses.dataclass
class Received:
    at: float  # time.time() when decoded
    image: NDArray[np.uint8] | None  # BGR (None unless keep_images)
    key: bool
    width: int
    height: int


class WhepClient:
    """Plays ``POST /whep/{bid}``: records every decoded video frame and the audio.

    ``keep_images=K`` keeps the pictures (BGR) of the first K frames and, after that, of every
    ``sample_every``-th frame among the latest ones (converting every picture costs CPU that a
    test's viewers share with the server in one process).
    """

    def __init__(
        self,
        base_url: str,
        bid: str,
        token: str | None,
        *,
        keep_images: int = 0,
        sample_every: int = 1,
        on_frame: Callable[[VideoFrame, float], None] | None = None,
        loss: float = 0.0,
        skip_holes: bool = False,
    ) -> None:
        self.url = f"{base_url}/whep/{bid}"
        self.loss = loss  # fraction of video RTP packets dropped on arrival (each at most once)
        # give up on a frame that cannot be completed once a later keyframe is whole, as browsers
        # do (aiortc's own buffer waits for every packet): jangteo/testkit/jitter.py
        self.skip_holes = skip_holes
        self.jitter: SkippingJitterBuffer | None = None
        self.dropped = 0
        self.token = token
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.session_url: str | None = None
        self.keep_images = keep_images
        self.sample_every = max(1, sample_every)  # after the first K, convert every Nth picture
        self.on_frame = on_frame
        self.frames: list[Received] = []
        self.audio: list[NDArray[np.int16]] = []
        self.audio_samples = 0
        self.first_frame = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._http = httpx.AsyncClient(timeout=20)
        self._frame_event = asyncio.Event()
        self.connected_at: float | None = None

        @self.pc.on("connectionstatechange")
        def on_state() -> None:
            if self.pc.connectionState == "connected" and self.connected_at is None:
                self.connected_at = time.time()

    async def play(
        self,
        *,
        video: bool = True,
        audio: bool = True,
        video_codec: str | None = None,
        rendition: str | None = None,
        answer_hook: Callable[[str], Awaitable[str]] | None = None,
    ) -> None:
        """Offer to receive; ``video_codec`` (vp8, h264) is the only video codec offered,
        ``rendition`` pins a rung (``?rendition=``), ``answer_hook`` may rewrite the answer
        (a test's relay puts itself in the path)."""
        if video:
            t = self.pc.addTransceiver("video", direction="recvonly")
            if video_codec:
                wanted = (f"video/{video_codec}", "video/rtx")
                caps = RTCRtpSender.getCapabilities("video").codecs
                t.setCodecPreferences([c for c in caps if c.mimeType.lower() in wanted])
        if audio:
            self.pc.addTransceiver("audio", direction="recvonly")

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            reader = self._video if track.kind == "video" else self._audio
            self._tasks.append(asyncio.get_running_loop().create_task(reader(track)))

        url = f"{self.url}?rendition={rendition}" if rendition else self.url
        self.session_url = await _post_offer(self._http, url, self.token, self.pc, answer_hook)
        if self.skip_holes and video:
            (t,) = [t for t in self.pc.getTransceivers() if t.kind == "video"]
            self.jitter = install_jitter(t.receiver, t._codecs[0].mimeType)
        if self.loss and video:
            self._inject_loss()

    def _inject_loss(self) -> None:
        """Drop ``loss`` of the incoming video packets (their first transmission only, seeded),
        after SRTP, before aiortc's receiver: it must ask for them again (NACK)."""
        (t,) = [t for t in self.pc.getTransceivers() if t.kind == "video"]
        media_pt = t._codecs[0].payloadType
        dtls: Any = t.receiver.transport
        deliver = dtls._handle_rtp_data
        rng = random.Random(7)
        seen: set[int] = set()

        async def lossy(data: bytes, arrival_time_ms: int) -> None:
            if len(data) >= 12 and data[1] & 0x7F == media_pt:
                seq = int.from_bytes(data[2:4], "big")
                first = seq not in seen
                seen.add(seq)
                if first and rng.random() < self.loss:
                    self.dropped += 1
                    return
            await deliver(data, arrival_time_ms)

        dtls._handle_rtp_data = lossy

    async def _video(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                assert isinstance(frame, VideoFrame)
                now = time.time()
                if self.on_frame is not None:
                    self.on_frame(frame, now)
                n = len(self.frames)
                wanted = self.keep_images and (n < self.keep_images or n % self.sample_every == 0)
                image = np.asarray(frame.to_ndarray(format="bgr24"), np.uint8) if wanted else None
                self.frames.append(
                    Received(now, image, bool(frame.key_frame), frame.width, frame.height)
                )
                # keep the first and the latest ``keep_images`` pictures; forget the middle
                old = len(self.frames) - 1 - self.keep_images * self.sample_every
                if old >= self.keep_images:
                    self.frames[old].image = None
                self.first_frame.set()
                self._frame_event.set()

    async def _audio(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                assert isinstance(frame, AudioFrame)
                data = np.asarray(frame.to_ndarray(), np.int16)
                self.audio_samples += frame.samples
                if sum(a.size for a in self.audio) < 48000 * 2 * 4:
                    self.audio.append(data.reshape(-1))

    async def wait_frames(self, count: int, timeout: float = 10) -> None:
        async def _wait() -> None:
            while len(self.frames) < count:
                self._frame_event.clear()
                await self._frame_event.wait()

        await asyncio.wait_for(_wait(), timeout)

    async def aclose(self, *, delete: bool = True) -> None:
        """Leave (once; again is harmless)."""
        if self._http.is_closed:
            return
        if delete and self.session_url:
            with contextlib.suppress(httpx.HTTPError):
                await self._http.delete(
                    self.session_url, headers={"Authorization": f"Bearer {self.token}"}
                )
        await cancel_all(self._tasks)
        await self.pc.close()
        await self._http.aclose()
