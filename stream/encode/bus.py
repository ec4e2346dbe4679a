"""The encoded frames of one broadcast, handed to everything that sends them.

:class:`FrameBus` holds the subscribers of one encoded stream (one per video codec and rung of the
ladder, one for Opus); each video bus has its own keyframe limiter, so requests from many viewers
of one rung within the limiter's window become one keyframe of that rung only.
Each :class:`Subscription` has a bounded backlog: a viewer that falls behind drops what it has,
waits for the next keyframe and asks for one (rate-limited by the broadcast), so it never grows
memory or latency and never slows anyone else. A :class:`Sink` (the fast fan-out,
stream/deliver/fastfanout.py) subscribes once per rung and sends to many viewers. A
:class:`BusSource` (the compositor; a worker's copy of a broadcast) hands out the buses.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Mapping
from typing import Protocol

from aiortc.mediastreams import MediaStreamError

from .encoders import Codec, EncodedFrame, KeyframeLimiter
from .ladder import Rung

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
        self.bus.discard(self)


class Subscriber(Protocol):
    def offer(self, frame: EncodedFrame) -> None: ...

    def close(self) -> None: ...


class Sink(Protocol):
    """What sends one codec's frames to many viewers (the fast fan-out), with its counters."""

    packets_sent: int
    octets_sent: int

    def close(self) -> None: ...

    async def aclose(self) -> None: ...


class BusSource(Protocol):
    """A broadcast's encoded streams as the senders see them: one bus per codec and rung."""

    ladder: tuple[Rung, ...]
    sinks: dict[Codec, Sink]  # the fast fan-out of each codec, once it exists

    def bus(self, codec: Codec, rung: str | None = None) -> FrameBus:
        """The bus of ``codec`` at ``rung`` (the top one when None; ignored for audio)."""
        ...


class Streams(BusSource, Protocol):
    """A broadcast's encoded streams as its viewers take them (a compositor's on the origin,
    the relayed copies on an edge), with its rungs by name."""

    @property
    def rungs(self) -> Mapping[str, Rung]: ...


class FrameBus:
    """The viewers of one encoded stream of one broadcast."""

    def __init__(
        self,
        kind: str,
        request_keyframe: Callable[[], None] | None = None,
        maxlen: int | None = None,
        rung: str = "",
    ) -> None:
        self.kind = kind
        self.rung = rung
        # with no other way to ask for keyframes (a worker asks its origin), the bus limits its
        # own: the encoder of this bus forces one when limiter.take() says so
        self.limiter: KeyframeLimiter | None = None
        if request_keyframe is None:
            self.limiter = KeyframeLimiter(0.5)
            request_keyframe = self.limiter.request
        self.request_keyframe = request_keyframe
        self.maxlen = maxlen or (VIDEO_BACKLOG if kind == "video" else AUDIO_BACKLOG)
        self.subscribers: set[Subscriber] = set()
        # told when the bus gains its first subscriber (True) or loses its last (False)
        self.on_demand: Callable[[bool], None] | None = None
        self.skips = 0
        self.frames = 0

    def add(self, sub: Subscriber) -> None:
        first = not self.subscribers
        self.subscribers.add(sub)
        if first and self.on_demand is not None:
            self.on_demand(True)

    def discard(self, sub: Subscriber) -> None:
        if sub in self.subscribers:
            self.subscribers.discard(sub)
            if not self.subscribers and self.on_demand is not None:
                self.on_demand(False)

    def subscribe(self) -> Subscription:
        video = self.kind == "video"
        sub = Subscription(self, self.maxlen, wait_keyframe=video)
        self.add(sub)
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
