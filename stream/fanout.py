"""Fan the encoded frames of one broadcast out to its viewers.

:class:`FrameBus` holds the subscribers of one encoded stream (one per video codec, one for Opus).
Each :class:`Subscription` has a bounded backlog: a viewer that falls behind drops what it has,
waits for the next keyframe and asks for one (rate-limited by the broadcast), so it never grows
memory or latency and never slows anyone else. :class:`ViewerTrack` is the aiortc track a viewer's
RTCRtpSender reads; it yields the shared frames as ``av.Packet`` so the sender only packetizes.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpsender import RTCRtpSender

from .encode import Codec, EncodedFrame

if TYPE_CHECKING:
    from .rtpsend import FastFanout

VIDEO_BACKLOG = 45  # frames (1.5 s at 30 fps)
AUDIO_BACKLOG = 25  # 20 ms packets (0.5 s)


class Subscription:
    def __init__(self, bus: FrameBus, maxlen: int, wait_keyframe: bool) -> None:
        self.bus = bus
        self.maxlen = maxlen
        self.queue: collections.deque[EncodedFrame] = collections.deque()
        self.waiting_keyframe = wait_keyframe
        self.skips = 0
        self.delivered = 0
        self._wakeup = asyncio.Event()
        self._closed = False

    def offer(self, frame: EncodedFrame) -> None:
        if self.waiting_keyframe:
            if not frame.keyframe:
                return
            self.waiting_keyframe = False
        elif len(self.queue) >= self.maxlen:
            # Behind: drop the backlog; resume at the next keyframe (this one, if it is one).
            self.queue.clear()
            self.skips += 1
            self.bus.skips += 1
            if not frame.keyframe:
                self.waiting_keyframe = True
                self.bus.request_keyframe()
                return
        self.queue.append(frame)
        self._wakeup.set()

    async def get(self) -> EncodedFrame:
        while not self.queue:
            if self._closed:
                raise MediaStreamError("subscription closed")
            self._wakeup.clear()
            await self._wakeup.wait()
        self.delivered += 1
        return self.queue.popleft()

    def close(self) -> None:
        self._closed = True
        self.queue.clear()
        self._wakeup.set()
        self.bus.subscribers.discard(self)


class Subscriber(Protocol):
    def offer(self, frame: EncodedFrame) -> None: ...

    def close(self) -> None: ...


class FrameBus:
    """The viewers of one encoded stream of one broadcast."""

    def __init__(
        self, kind: str, request_keyframe: Callable[[], None], maxlen: int | None = None
    ) -> None:
        self.kind = kind
        self.request_keyframe = request_keyframe
        self.maxlen = maxlen or (VIDEO_BACKLOG if kind == "video" else AUDIO_BACKLOG)
        self.subscribers: set[Subscriber] = set()
        self.fanout: FastFanout | None = None  # the fast path's viewers (stream/rtpsend.py)
        self.skips = 0
        self.frames = 0

    def subscribe(self) -> Subscription:
        video = self.kind == "video"
        sub = Subscription(self, self.maxlen, wait_keyframe=video)
        self.subscribers.add(sub)
        if video:
            self.request_keyframe()
        return sub

    def fast(self, codec: Codec) -> FastFanout:
        """The fast fan-out of this bus (created on first use; it subscribes while it has
        viewers)."""
        from .rtpsend import FastFanout  # it subscribes to buses: imported when first needed

        if self.fanout is None:
            self.fanout = FastFanout(self, codec)
        return self.fanout

    def publish(self, frames: list[EncodedFrame]) -> None:
        for frame in frames:
            self.frames += 1
            for sub in tuple(self.subscribers):
                sub.offer(frame)

    def close(self) -> None:
        for sub in tuple(self.subscribers):
            sub.close()
        if self.fanout is not None:
            self.fanout.close()

    async def aclose(self) -> None:
        """:meth:`close`, and wait until the fast fan-out's sending task has stopped."""
        self.close()
        if self.fanout is not None:
            await self.fanout.aclose()


class ViewerTrack(MediaStreamTrack):
    """One viewer's track: the shared encoded frames of its codec as ``av.Packet``."""

    def __init__(self, kind: str, bus_for: Callable[[], FrameBus]) -> None:
        super().__init__()
        self.kind = kind
        self._bus_for = bus_for
        self.subscription: Subscription | None = None

    async def recv(self) -> av.Packet:  # type: ignore[type-arg]
        if self.readyState != "live":
            raise MediaStreamError
        if self.subscription is None:
            # Subscribe on the first read: the sender reads only once DTLS is up, so the
            # keyframe requested here is the first thing this viewer decodes.
            self.subscription = self._bus_for().subscribe()
        frame = await self.subscription.get()
        packet = av.Packet(frame.data)
        packet.pts = frame.pts
        packet.time_base = frame.time_base
        return packet

    def stop(self) -> None:
        if self.subscription is not None:
            self.subscription.close()
        super().stop()


def route_keyframe_requests(sender: RTCRtpSender, request: Callable[[], None]) -> None:
    """Send a viewer's PLI/FIR to the shared encoder.

    On the packet path aiortc's ``RTCRtpSender._send_keyframe`` only sets a private flag nobody
    reads (aiortc 1.16, pinned). Guarded by tests/test_aiortc_hooks.py.
    """
    if not callable(getattr(RTCRtpSender, "_send_keyframe", None)):
        raise RuntimeError("aiortc changed: RTCRtpSender._send_keyframe is gone")
    sender._send_keyframe = request  # type: ignore[method-assign]
