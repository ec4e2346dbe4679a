"""The viewers of a node that was a broadcast's origin follow the show to its new origin.

The publisher left this node and came back through another, which composes the broadcast now
(its lease names it: core/origin.py). This node's media stops composing, and its outputs (HLS,
restreams, recording) are the new origin's; its viewers stay where they are, on their peer
connections and fan-out workers, on the same buses. :class:`Handover` feeds those buses from
this node's edge of the broadcast (stream/edge.py), which pulls it once from the new origin:
each bus with subscribers takes the same codec and rung from the edge, beginning at a keyframe,
its frame times moved on to follow the last ones this media sent (the viewers' timestamps run
on), and its keyframe requests go to the edge's bus. The viewers arriving now are the edge's own.
"""

from __future__ import annotations

import functools

from stream.encode.bus import FrameBus, Streams
from stream.encode.encoders import Codec, EncodedFrame

GAP_S = 0.05  # between the last frame composed here and the first one handed over

BusKey = tuple[Codec, str]


class _Forward:
    """Hands the frames of one of the edge's buses on to the matching bus here."""

    def __init__(self, handover: Handover, target: FrameBus, video: bool) -> None:
        self.handover = handover
        self.target = target
        self.waiting_keyframe = video

    def offer(self, frame: EncodedFrame) -> None:
        if self.waiting_keyframe:
            if not frame.keyframe:
                return
            self.waiting_keyframe = False
        self.handover.hand(self.target, frame)

    def close(self) -> None:  # the edge's bus closed (the broadcast ended): the hub ends ours
        pass


class Handover:
    """Feeds ``buses`` (a former origin's, by codec and rung) from ``upstream`` (the edge's
    streams) while they have subscribers; ``last_s``: the time of the last frame sent on them."""

    def __init__(self, buses: dict[BusKey, FrameBus], upstream: Streams, last_s: float) -> None:
        self.buses = buses
        self.upstream = upstream
        self.last_s = last_s
        self.forwards: dict[BusKey, tuple[FrameBus, _Forward]] = {}
        self.frames = 0  # handed on so far
        self._offset_s: float | None = None  # added to the upstream's frame times

    def start(self) -> None:
        for key, bus in self.buses.items():
            bus.on_demand = functools.partial(self._demand, key)
            if key[0] is not Codec.OPUS:
                bus.request_keyframe = functools.partial(self._keyframe, key)
            if bus.subscribers:
                self._demand(key, True)

    def _source(self, key: BusKey) -> FrameBus:
        codec, rung = key
        return self.upstream.bus(codec, rung or None)

    def _demand(self, key: BusKey, wanted: bool) -> None:
        if wanted and key not in self.forwards:
            video = key[0] is not Codec.OPUS
            source, forward = self._source(key), _Forward(self, self.buses[key], video)
            self.forwards[key] = (source, forward)
            source.add(forward)
            if video:
                source.request_keyframe()
        elif not wanted and key in self.forwards:
            source, forward = self.forwards.pop(key)
            source.discard(forward)

    def _keyframe(self, key: BusKey) -> None:
        self._source(key).request_keyframe()

    def hand(self, target: FrameBus, frame: EncodedFrame) -> None:
        t = float(frame.pts * frame.time_base)
        if self._offset_s is None:  # one offset for every bus: sound and picture stay in step
            self._offset_s = self.last_s + GAP_S - t
        t += self._offset_s
        pts = round(t / frame.time_base)
        self.frames += 1
        target.publish([EncodedFrame(frame.data, pts, frame.time_base, frame.keyframe,
                                     frame.composed_at)])  # fmt: skip

    def close(self) -> None:
        for key in list(self.forwards):
            self._demand(key, False)
        for bus in self.buses.values():
            bus.on_demand = None
