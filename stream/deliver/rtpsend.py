"""One viewer's RTP on the fast path: its header template, history, retransmissions and rung.

Per viewer (:class:`FastViewer`), per frame, one RTP header is built with aiortc's serializer (its
SSRC, timestamp offset, negotiated extension ids: mid, abs-send-time); per packet the fan-out
(stream/deliver/fastfanout.py) patches only the sequence number and marker bit, SRTP-protects the
packet with the viewer's keys and hands it straight to the UDP socket of the ICE pair aiortc
selected. The payloads are the shared ones, packetized once (:class:`Packetizer`).

The viewer's sequence numbers and timestamps are its own and continue across rung switches (the
rungs of one tick share a timestamp), so a switch is invisible to its decoder but for the size.

Retransmission: the viewer's history maps its sequence numbers to the shared payloads already
built (no copy per viewer); a NACKed packet is rebuilt from it and sent straight to the socket
-- as RTX (RFC 4588) on the viewer's RTX SSRC when it negotiated RTX, else as the packet again --
within a budget (a viewer earns RETRANSMIT_SHARE of the bytes it is sent, RETRANSMIT_BURST
banked, each packet at most once per REPEAT_S). aiortc's own per-viewer retransmission path is
not used. The hooks are on private aiortc names (aiortc pinned in pyproject.toml, every name
guarded by tests/test_aiortc_hooks.py).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import struct
from typing import Any

import av
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import RtpPacket

from stream.encode.encoders import Codec, EncodedFrame

from .abr import RateController

log = logging.getLogger(__name__)

HISTORY_FRAMES = 90  # frames whose packets a viewer can ask for again (3 s at 30 fps)
# NACKs are answered within a budget: a viewer earns RETRANSMIT_SHARE of the bytes it is sent,
# up to RETRANSMIT_BURST banked, and each packet goes again at most once per REPEAT_S
RETRANSMIT_SHARE = 0.5
RETRANSMIT_BURST = 128 * 1024
REPEAT_S = 0.1

_MIME = {Codec.VP8: ("video/VP8", 90000), Codec.H264: ("video/H264", 90000),
         Codec.OPUS: ("audio/opus", 48000)}  # fmt: skip
SEQ = struct.Struct("!H")
_TS = struct.Struct("!I")
_AST = struct.Struct("!I")  # the byte before abs-send-time's 3 bytes, and them

# aiortc 1.16's private RTCRtpSender state (name-mangled), see tests/test_aiortc_hooks.py
SENDER_FIELDS = (
    "_RTCRtpSender__rtp_started",
    "_RTCRtpSender__rtp_exited",
    "_RTCRtpSender__rtp_history",
    "_RTCRtpSender__rtp_header_extensions_map",
    "_RTCRtpSender__mid",
    "_RTCRtpSender__ntp_timestamp",
    "_RTCRtpSender__rtp_timestamp",
    "_RTCRtpSender__octet_count",
    "_RTCRtpSender__packet_count",
    "_RTCRtpSender__rtx_payload_type",
)
NACK_MEMORY_S = 2.0  # a sequence number NACKed again within this is not counted lost again


class Packetized:
    """One encoded frame as RTP payloads, shared by every viewer."""

    __slots__ = ("keyframe", "payloads", "size", "timestamp")

    def __init__(self, payloads: list[bytes], timestamp: int, keyframe: bool) -> None:
        self.payloads = payloads
        self.timestamp = timestamp
        self.keyframe = keyframe
        self.size = sum(len(p) for p in payloads)


class Packetizer:
    def __init__(self, codec: Codec) -> None:
        mime, rate = _MIME[codec]
        self._encoder: Any = get_encoder(RTCRtpCodecParameters(mimeType=mime, clockRate=rate))

    def pack(self, frame: EncodedFrame) -> Packetized:
        packet = av.Packet(frame.data)
        packet.pts = frame.pts
        packet.time_base = frame.time_base
        payloads, timestamp = self._encoder.pack(packet)
        return Packetized(payloads, timestamp, frame.keyframe)


class FastViewer:
    """One viewer's RTP stream on the fast path (its sender's SSRC, keys and socket)."""

    def __init__(
        self,
        sender: RTCRtpSender,
        codec: RTCRtpCodecParameters,
        video: bool,
        rung: str = "",
        abr: RateController | None = None,
    ) -> None:
        self.sender = sender
        self.pt = codec.payloadType or 0
        self.ssrc = sender._ssrc
        self.rung = self.target = rung  # the rung it is sent, the one it is to move to
        self.asked_at = -1e9  # when a keyframe of the target rung was last asked for
        self.abr = abr  # None: pinned (?rendition=) or audio
        self.switches = 0
        # the lower half, as aiortc does: a first keyframe that wraps past 65535 could leave the
        # receiver's SRTP with the wrong rollover counter
        self.seq = random.randint(0, 0x7FFF)
        self.ts_origin = random.getrandbits(32)
        self.waiting_keyframe = video
        # the frames sent lately: (first sequence number, RTP timestamp, shared payloads)
        self.history: collections.deque[tuple[int, int, Packetized]] = collections.deque(
            maxlen=HISTORY_FRAMES
        )
        self.packets = 0
        self.octets = 0
        self.skips = 0
        self.retransmits = 0
        self.retransmitted_bytes = 0
        self.nacks_refused = 0  # over the budget, or asked again too soon
        self.retransmit_budget = 0.0
        self._resent_at: dict[int, float] = {}  # sequence number → when it last went again
        self._nacked: dict[int, float] = {}  # sequence number → when it was first NACKed
        self.lost = 0  # packets the viewer reported missing (each counted once)
        self.closed = asyncio.Event()
        s: Any = sender
        self.rtx_pt: int | None = s._RTCRtpSender__rtx_payload_type
        self.rtx_ssrc: int = sender._rtx_ssrc
        self.rtx_seq = random.randint(0, 0x7FFF)
        self._extmap = s._RTCRtpSender__rtp_header_extensions_map
        self._mid = s._RTCRtpSender__mid
        dtls: Any = sender.transport
        self.protect = dtls._tx_srtp.protect
        self._ice: Any = dtls.transport._connection
        self.header = bytearray()
        self._ast_at: int | None = None  # offset of abs-send-time in our header, -1: none
        self.ts = 0

    def socket(self) -> tuple[Any, Any] | None:
        """The UDP transport and remote address of the ICE pair aiortc selected."""
        pair = self._ice._nominated.get(1)
        if pair is None or pair.protocol is None or pair.protocol.transport is None:
            return None
        return pair.protocol.transport, pair.remote_addr

    def _serialize(self, abs_send_time: int) -> bytes:
        packet = RtpPacket(payload_type=self.pt, sequence_number=self.seq, timestamp=self.ts,
                           ssrc=self.ssrc)  # fmt: skip
        packet.extensions.abs_send_time = abs_send_time
        packet.extensions.mid = self._mid
        return bytes(packet.serialize(self._extmap))

    def begin(self, frame: Packetized, abs_send_time: int) -> None:
        """The RTP header of this frame's packets. aiortc serializes it once per viewer (our
        negotiated extension ids); after that only the timestamp and abs-send-time are patched,
        at the offsets found by serializing two different values."""
        self.ts = (self.ts_origin + frame.timestamp) & 0xFFFFFFFF
        if self._ast_at is None:
            one, two = self._serialize(0x010203), self._serialize(0x0A0B0C)
            diff = [i for i in range(12, len(one)) if one[i] != two[i]]
            self._ast_at = diff[0] if len(diff) == 3 and diff[2] - diff[0] == 2 else -1
            self.header = bytearray(one)
        h = self.header
        if self._ast_at < 0:  # no abs-send-time extension negotiated: nothing to find
            self.header = h = bytearray(self._serialize(abs_send_time))
        else:
            _AST.pack_into(h, self._ast_at - 1, (h[self._ast_at - 1] << 24) | abs_send_time)
        _TS.pack_into(h, 4, self.ts)
        self.history.append((self.seq, self.ts, frame))

    def end(self, frame: Packetized, ntp: int) -> None:
        """Account the frame (the sender's RTCP sender reports read these)."""
        self.seq = (self.seq + len(frame.payloads)) & 0xFFFF
        self.packets += len(frame.payloads)
        self.octets += frame.size
        self.retransmit_budget = min(
            RETRANSMIT_BURST, self.retransmit_budget + frame.size * RETRANSMIT_SHARE
        )
        s: Any = self.sender
        s._RTCRtpSender__ntp_timestamp = ntp
        s._RTCRtpSender__rtp_timestamp = self.ts
        s._RTCRtpSender__packet_count = self.packets
        s._RTCRtpSender__octet_count = self.octets

    def may_retransmit(self, seq: int, size: int, now: float) -> bool:
        """Whether a NACK for ``seq`` (``size`` payload bytes) is answered: what a viewer can
        make us resend is bounded by what it is sent (a NACK flood costs the server at most
        half again its own stream), and a packet asked for again within REPEAT_S is not resent."""
        last = self._resent_at.get(seq)
        if (last is not None and now - last < REPEAT_S) or size > self.retransmit_budget:
            self.nacks_refused += 1
            return False
        self.retransmit_budget -= size
        if len(self._resent_at) >= 4096:  # keep it small: drop what is too old to matter
            self._resent_at = {k: t for k, t in self._resent_at.items() if now - t < REPEAT_S}
        self._resent_at[seq] = now
        self.retransmits += 1
        self.retransmitted_bytes += size
        return True

    def packet(self, seq: int) -> RtpPacket | None:
        """The packet ``seq`` as it was sent (for a retransmission), if still in the history."""
        for first, ts, frame in reversed(self.history):
            offset = (seq - first) & 0xFFFF
            if offset < len(frame.payloads):
                packet = RtpPacket(payload_type=self.pt, sequence_number=seq, timestamp=ts,
                                   ssrc=self.ssrc, payload=frame.payloads[offset],
                                   marker=int(offset == len(frame.payloads) - 1))  # fmt: skip
                packet.extensions.mid = self._mid
                return packet
        return None

    def newly_lost(self, lost: list[int], now: float) -> int:
        """How many of the NACKed ``lost`` are reported for the first time (loss, not repeats)."""
        if len(self._nacked) >= 4096:
            self._nacked = {k: t for k, t in self._nacked.items() if now - t < NACK_MEMORY_S}
        fresh = 0
        for seq in lost:
            seen = self._nacked.get(seq)
            if seen is None or now - seen >= NACK_MEMORY_S:
                self._nacked[seq] = now
                fresh += 1
        self.lost += fresh
        return fresh

    def retransmission(self, seq: int, now: float) -> bytes | None:
        """The SRTP packet that answers a NACK for ``seq`` (RTX when negotiated), or None when
        it is no longer in the history or over the viewer's budget."""
        packet = self.packet(seq)
        if packet is None or not self.may_retransmit(seq, len(packet.payload), now):
            return None
        if self.rtx_pt is not None:
            packet = RtpPacket(payload_type=self.rtx_pt, marker=packet.marker,
                               sequence_number=self.rtx_seq, timestamp=packet.timestamp,
                               ssrc=self.rtx_ssrc,
                               payload=SEQ.pack(seq) + packet.payload)  # fmt: skip
            packet.extensions.mid = self._mid
            self.rtx_seq = (self.rtx_seq + 1) & 0xFFFF
        return bytes(self.protect(packet.serialize(self._extmap)))


def codec_of(params: RTCRtpCodecParameters) -> Codec:
    mime = params.mimeType.lower()
    for codec, (name, _) in _MIME.items():
        if name.lower() == mime:
            return codec
    raise ValueError(f"no fast path for {params.mimeType}")
