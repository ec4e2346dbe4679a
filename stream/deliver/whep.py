"""WHEP negotiation for one viewer: which media it wants, its send-only answer, its tracks.

Shared by the origin (stream/hub.py) and the fan-out workers (stream/deliver/worker.py): a viewer's
offer is checked, answered ``sendonly`` (no receiver is ever started for a viewer), given one
track per kind over the broadcast's shared encoded frames, and aiortc's receive-side state is
dropped. On the fast path the senders hand RTP to the codec's fan-out
(stream/deliver/fastfanout.py), on a rung of the ladder: the one the viewer asked for
(``?rendition=``), or the top one, and from there wherever its link's feedback takes it.

Video is H.264 (constrained baseline) whenever the offer can take it, VP8 otherwise: every rung
is encoded once per codec in use, so one codec for nearly everyone keeps the encoders few.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from aiortc import RTCPeerConnection, RTCRtpCodecCapability, RTCRtpSender

from core.tokens import Claims
from stream.encode.bus import BusSource
from stream.encode.encoders import Codec
from stream.errors import BadSdp

from . import fastfanout
from .abr import RateController
from .fanout import ViewerTrack, route_keyframe_requests
from .fastfanout import FastFanout
from .rtc import answer_offer, check_offer, close_peer, negotiated_codec

# the video codecs we answer with, in our order of preference (RTX entries follow their codec)
VIDEO_PREFERENCE = ("video/h264", "video/vp8")


@dataclasses.dataclass(eq=False)
class Viewer:
    id: str
    claims: Claims
    pc: RTCPeerConnection
    tracks: list[ViewerTrack]
    video_codec: Codec | None
    address: str = ""
    rendition: str = ""  # the rung it pinned (?rendition=), if any
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
    source: BusSource,
    video_codec: Callable[[], Codec],
    *,
    fast: bool,
    rung: str = "",
    abr: bool = False,
) -> list[ViewerTrack]:
    """A viewer's outgoing tracks (Opus audio; video in the codec negotiation picks, on
    ``rung`` -- the top one when empty): on the fast path their senders hand RTP over to the
    codec's fan-out, which moves the viewer between rungs when ``abr`` (and the viewer did not
    pin one); a PLI/FIR goes to its rung's keyframe request (the shared, rate-limited encoder)."""
    rung = rung or source.ladder[0].name

    def fanout(codec: Codec) -> FastFanout:
        return fastfanout.fast_fanout(source, codec)

    def controller(f: FastFanout) -> RateController | None:
        if not abr or not f.video or len(f.rungs) < 2:
            return None
        return RateController(f.bitrates, f.rungs.index(rung), time.monotonic())

    tracks: list[ViewerTrack] = []
    if "audio" in kinds:
        audio = ViewerTrack("audio", lambda: source.bus(Codec.OPUS))
        sender = pc.addTrack(audio)
        if fast:
            fastfanout.install(sender, fanout)
        tracks.append(audio)
        for t in pc.getTransceivers():
            if t.kind == "audio":
                caps = RTCRtpSender.getCapabilities("audio").codecs
                t.setCodecPreferences([c for c in caps if c.mimeType.lower() == "audio/opus"])
    if "video" in kinds:
        video = ViewerTrack("video", lambda: source.bus(video_codec(), rung))
        sender = pc.addTrack(video)
        route_keyframe_requests(sender, lambda: source.bus(video_codec(), rung).request_keyframe())
        if fast:
            fastfanout.install(sender, fanout, rung, controller)
        tracks.append(video)
        for t in pc.getTransceivers():
            if t.kind == "video":
                t.setCodecPreferences(video_preferences())
    drop_receive_state(pc)
    return tracks


def video_preferences() -> list[RTCRtpCodecCapability]:
    """H.264 first, then VP8, each followed by its RTX (aiortc answers in this order)."""
    caps = RTCRtpSender.getCapabilities("video").codecs
    ordered = [c for mime in VIDEO_PREFERENCE for c in caps if c.mimeType.lower() == mime]
    return ordered + [c for c in caps if c.mimeType.lower() == "video/rtx"]


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
