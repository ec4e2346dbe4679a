"""WHEP negotiation for one viewer: which media it wants, its send-only answer, its tracks.

Shared by the origin (stream/hub.py) and the fan-out workers (stream/deliver/worker.py): a viewer's
offer is checked, answered ``sendonly`` (no receiver is ever started for a viewer), given one
track per kind over the broadcast's shared encoded frames, and aiortc's receive-side state is
dropped. On the fast path the senders hand RTP to the bus's fan-out (stream/deliver/rtpsend.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from aiortc import RTCPeerConnection, RTCRtpSender

from core.tokens import Claims
from stream.encode.bus import FrameBus
from stream.encode.encoders import Codec
from stream.errors import BadSdp

from . import rtpsend
from .fanout import ViewerTrack, route_keyframe_requests
from .rtc import answer_offer, check_offer, close_peer, negotiated_codec
from .rtpsend import FastFanout


@dataclasses.dataclass(eq=False)
class Viewer:
    id: str
    claims: Claims
    pc: RTCPeerConnection
    tracks: list[ViewerTrack]
    video_codec: Codec | None
    address: str = ""
    closed: bool = False

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        for track in self.tracks:
            track.stop()
        await close_peer(self.pc)

    def senders(self) -> list[RTCRtpSender]:
        return [t.sender for t in self.pc.getTransceivers() if t.sender.track is not None]


def answer_send_only(pc: RTCPeerConnection) -> None:
    """A viewer receives; it never sends to us. Our tracks' sections are answered ``sendonly``
    and every other section ``inactive``, so aiortc never starts a receiver (which would decode
    whatever a viewer's ``sendrecv`` offer sends, into a queue nothing reads)."""
    for t in pc.getTransceivers():
        t.direction = "sendonly" if t.sender.track is not None else "inactive"


def viewer_kinds(offer: str) -> set[str]:
    """The kinds of media a viewer's offer wants to receive (BadSdp if it is unusable)."""
    desc = check_offer(offer, need_send=False)
    return {m.kind for m in desc.media if m.direction in ("recvonly", "sendrecv")}


def viewer_tracks(
    pc: RTCPeerConnection,
    kinds: set[str],
    bus: Callable[[Codec], FrameBus],
    video_codec: Callable[[], Codec],
    *,
    fast: bool,
) -> list[ViewerTrack]:
    """A viewer's outgoing tracks (Opus audio; video in the codec negotiation picks): on the
    fast path their senders hand RTP over to the bus's fan-out (stream/deliver/rtpsend.py); a
    PLI/FIR goes to the video bus's keyframe request (the shared, rate-limited encoder)."""

    def fanout(codec: Codec) -> FastFanout:
        return rtpsend.fast_fanout(bus(codec), codec)

    tracks: list[ViewerTrack] = []
    if "audio" in kinds:
        audio = ViewerTrack("audio", lambda: bus(Codec.OPUS))
        sender = pc.addTrack(audio)
        if fast:
            rtpsend.install(sender, fanout)
        tracks.append(audio)
        for t in pc.getTransceivers():
            if t.kind == "audio":
                caps = RTCRtpSender.getCapabilities("audio").codecs
                t.setCodecPreferences([c for c in caps if c.mimeType.lower() == "audio/opus"])
    if "video" in kinds:
        video = ViewerTrack("video", lambda: bus(video_codec()))
        sender = pc.addTrack(video)
        route_keyframe_requests(sender, lambda: bus(video_codec()).request_keyframe())
        if fast:
            rtpsend.install(sender, fanout)
        tracks.append(video)
    drop_receive_state(pc)
    return tracks


# aiortc 1.16's per-receiver state a send-only viewer never uses (name-mangled; aiortc checks
# both for None, as for audio). The bitrate estimator alone is ~95 KB per video transceiver.
# Guarded by tests/test_aiortc_hooks.py.
RECEIVER_FIELDS = (
    "_RTCRtpReceiver__remote_bitrate_estimator",
    "_RTCRtpReceiver__nack_generator",
)


def drop_receive_state(pc: RTCPeerConnection) -> None:
    """Free what aiortc allocates for receiving on a viewer's connection (WHEP viewers send
    nothing; with a sendrecv offer we just do not send REMB or NACK for what they send)."""
    for t in pc.getTransceivers():
        for name in RECEIVER_FIELDS:
            setattr(t.receiver, name, None)


async def negotiate_viewer(
    pc: RTCPeerConnection, offer: str, kinds: set[str]
) -> tuple[str, Codec | None]:
    """The answer to a viewer's offer and the video codec it settled on."""
    answer = await answer_offer(pc, offer, answer_send_only)
    if "video" not in kinds:
        return answer, None
    name = negotiated_codec(answer, "video")
    if name not in ("vp8", "h264"):
        raise BadSdp("the offer has no video codec we send (VP8 or H.264)")
    return answer, Codec(name)
