"""The aiortc side of fan-out: a viewer's track over the shared encoded frames.

:class:`ViewerTrack` is the aiortc track a viewer's RTCRtpSender reads (the ``aiortc`` fan-out
mode, the anchor): it subscribes to the broadcast's :class:`~stream.encode.bus.FrameBus` and
yields the shared frames as ``av.Packet`` so the sender only packetizes. The fast mode sends
without it (stream/deliver/rtpsend.py).
"""

from __future__ import annotations

from collections.abc import Callable

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpsender import RTCRtpSender

from stream.encode.bus import FrameBus, Subscription


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
