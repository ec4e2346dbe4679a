"""The encoded frames of one broadcast, handed to everything that sends them.

:class:`FrameBus` holds the subscribers of one encoded stream (one per video codec, one for Opus).
Each :class:`Subscription` has a bounded backlog: a viewer that falls behind drops what it has,
waits for the next keyframe and asks for one (rate-limited by the broadcast), so it never grows
memory or latency and never slows anyone else. A :class:`Sink` (the fast fan-out,
stream/deliver/rtpsend.py) subscribes once and sends to many viewers.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Protocol

from aiortc.mediastreams import MediaStreamError

from .encoders import EncodedFrame

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


class Sink(Subscriber, Protocol):
    """One subscriber that sends to many viewers (the fast fan-out), with its counters."""

    packets_sent: int
    octets_sent: int

    async def aclose(self) -> None: ...


class FrameBus:
    """The viewers of one encoded stream of one broadcast."""

    def __init__(
        self, kind: str, request_keyframe: Callable[[], None], maxlen: int | None = None
    ) -> None:
        self.kind = kind
        self.request_keyframe = request_keyframe
        self.maxlen = maxlen or (VIDEO_BACKLOG if kind == "video" else AUDIO_BACKLOG)
        self.subscribers: set[Subscriber] = set()
        self.fanout: Sink | None = None  # the fast path's viewers (stream/deliver/rtpsend.py)
        self.skips = 0
        self.frames = 0

    def subscribe(self) -> Subscription:
        video = self.kind == "video"
        sub = Subscription(self, self.maxlen, wait_keyframe=video)
        self.subscribers.add(sub)
        if video:
            self.request_keyframe()
        return sub

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
