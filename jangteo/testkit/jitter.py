"""A test viewer's jitter buffer that recovers from loss as browsers do.

aiortc's video jitter buffer waits for every packet: a hole that no retransmission fills (it
NACKs a hole once; the retransmission can be lost too, on a link full enough to lose the
original) holds back every frame behind it until 512 more packets have arrived -- seventeen
seconds on a 300 kbit/s rung. A browser gives up on a frame it cannot complete once a later
keyframe is whole, decodes from there (asking for a keyframe if none comes). This buffer does the
same, so tests of loss and rung switching measure the server, not that one client's patience.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket


def h264_keyframe_start(payload: bytes) -> bool:
    """Whether an H.264 RTP payload (RFC 6184) starts an IDR access unit (SPS or IDR slice)."""
    if not payload:
        return False
    kind = payload[0] & 0x1F
    if kind in (5, 7):
        return True
    if kind == 24 and len(payload) > 3:  # STAP-A: the first aggregated NAL
        return payload[3] & 0x1F in (5, 7)
    if kind == 28 and len(payload) > 1:  # FU-A: the start of a fragmented IDR slice
        return bool(payload[1] & 0x80) and payload[1] & 0x1F == 5
    return False


def vp8_keyframe_start(payload: bytes) -> bool:
    """Whether a VP8 RTP payload (RFC 7741) starts a key frame."""
    if len(payload) < 2:
        return False
    first, i = payload[0], 1
    if first & 0x80:  # extended control bits
        flags, i = payload[1], 2
        if flags & 0x80 and i < len(payload):  # PictureID, 7 or 15 bits
            i += 2 if payload[i] & 0x80 else 1
        i += bool(flags & 0x40) + bool(flags & 0x30)  # TL0PICIDX; TID/KEYIDX
    starts_partition_0 = bool(first & 0x10) and first & 0x07 == 0
    return starts_partition_0 and i < len(payload) and payload[i] & 0x01 == 0


class SkippingJitterBuffer(JitterBuffer):
    """aiortc's buffer, but a frame it cannot complete is dropped once a later keyframe is."""

    def __init__(self, capacity: int, keyframe_start: Callable[[bytes], bool]) -> None:
        super().__init__(capacity, is_video=True)
        self.keyframe_start = keyframe_start
        self.skipped = 0  # packets given up on

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        pli, frame = super().add(packet)
        if frame is None:
            skip = self._whole_keyframe_after_a_hole()
            if skip:
                self.skipped += skip
                self.remove(skip)
                frame = self._remove_frame(packet.sequence_number)
        return pli, frame

    def _whole_keyframe_after_a_hole(self) -> int:
        """How many slots to drop to reach a complete keyframe past a hole (0: none yet)."""
        packets: list[Any] = self._packets
        origin: Any = self._origin
        if origin is None:
            return 0
        hole = False
        start = None
        for count in range(self.capacity):
            p = packets[(origin + count) % self.capacity]
            if p is None:
                hole = True
                start = None
                continue
            prev = packets[(origin + count - 1) % self.capacity] if count else None
            first_of_frame = prev is None or prev.timestamp != p.timestamp
            if (
                start is not None
                and p.timestamp != packets[(origin + start) % self.capacity].timestamp
            ):
                return start  # the keyframe that began at ``start`` is whole
            if hole and first_of_frame and start is None and self.keyframe_start(p.payload):
                start = count
        return 0


def install(receiver: Any, codec_mime: str) -> SkippingJitterBuffer | None:
    """Give an aiortc video receiver the skipping buffer (after setRemoteDescription)."""
    keyframe = {"video/h264": h264_keyframe_start, "video/vp8": vp8_keyframe_start}.get(
        codec_mime.lower()
    )
    current = getattr(receiver, "_RTCRtpReceiver__jitter_buffer", None)
    if keyframe is None or current is None:
        return None
    buffer = SkippingJitterBuffer(current.capacity, keyframe)
    receiver._RTCRtpReceiver__jitter_buffer = buffer
    return buffer
