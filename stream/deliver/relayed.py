"""A broadcast's encoded streams as a node or process that does not encode them has them: a bus
per codec and rung its viewers take, fed with the frames an upstream sends (:meth:`frame`), the
first subscriber of a bus asking the upstream for it (:class:`Want`), keyframe requests going back
(:class:`Keyframe`). A fan-out worker's copy of the origin's streams (stream/deliver/worker.py) and
an edge's copy of another node's (stream/edge.py); the edge changes upstream when the origin
moves (:meth:`attach`), its viewers' timestamps running on."""

from __future__ import annotations

import functools
from collections.abc import Callable

from stream.encode.bus import FrameBus, Sink
from stream.encode.encoders import Codec, EncodedFrame
from stream.encode.ladder import Rung

from .messages import Keyframe, Want

GAP_S = 0.05  # between the last frame of one upstream and the first of the next


class RelayedStreams:
    """A broadcast's encoded streams as an edge has them: a bus per codec and rung its viewers
    take, fed from whichever upstream is current (:meth:`frame`)."""

    def __init__(self, bid: str, ladder: tuple[Rung, ...]) -> None:
        self.bid = bid
        self.ladder = ladder
        self.rungs = {r.name: r for r in ladder}
        self.sinks: dict[Codec, Sink] = {}
        self.buses: dict[tuple[Codec, str], FrameBus] = {}
        self.upstream: Callable[[Want | Keyframe], None] | None = None
        self._offset_s = 0.0  # added to the current upstream's frame times
        self._last_s = 0.0  # the latest frame time handed on
        self._rebase = False

    def bus(self, codec: Codec, rung: str | None = None) -> FrameBus:
        rung = "" if codec is Codec.OPUS else (rung or self.ladder[0].name)
        key = (codec, rung)
        if key not in self.buses:
            if codec is Codec.OPUS:
                bus = FrameBus("audio", lambda: None)
            else:  # the origin's encoder of this rung, rate-limited there
                ask = functools.partial(self._send, Keyframe(self.bid, codec, rung))
                bus = FrameBus("video", ask, rung=rung)
            bus.on_demand = functools.partial(self._demand, codec, rung)
            self.buses[key] = bus
        return self.buses[key]

    def _send(self, msg: Want | Keyframe) -> None:
        if self.upstream is not None:
            self.upstream(msg)

    def _demand(self, codec: Codec, rung: str, wanted: bool) -> None:
        self._send(Want(self.bid, codec, rung, wanted))

    def attach(self, upstream: Callable[[Want | Keyframe], None] | None) -> None:
        """A new upstream: ask it for everything the viewers here take (and a keyframe of each
        video stream); its frame times are moved on to follow the last ones handed on."""
        self.upstream = upstream
        if upstream is None:
            return
        self._rebase = True
        for (codec, rung), bus in self.buses.items():
            if bus.subscribers:
                upstream(Want(self.bid, codec, rung))
                if codec is not Codec.OPUS:
                    upstream(Keyframe(self.bid, codec, rung))

    def frame(self, codec: Codec, rung: str, frame: EncodedFrame) -> None:
        bus = self.buses.get((codec, rung))
        if bus is None:
            return
        t = float(frame.pts * frame.time_base)
        if self._rebase:
            self._rebase = False
            self._offset_s = self._last_s + GAP_S - t
        if self._offset_s:
            t += self._offset_s
            pts = round(t / frame.time_base)
            frame = EncodedFrame(frame.data, pts, frame.time_base, frame.keyframe,
                                 frame.composed_at)  # fmt: skip
        self._last_s = max(self._last_s, t)
        bus.publish([frame])

    async def aclose(self) -> None:
        self.upstream = None
        for bus in list(self.buses.values()):
            bus.on_demand = None
            bus.close()
        for sink in list(self.sinks.values()):
            await sink.aclose()
