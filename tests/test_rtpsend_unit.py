"""The fast fan-out's RTP headers: patched templates equal aiortc's own serialization."""

from __future__ import annotations

import collections
import fractions

from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from stream.deliver.rtpsend import FastViewer, Packetized, Packetizer
from stream.encode.encoders import Codec, EncodedFrame


def _viewer(extensions: list[tuple[int, str]]) -> FastViewer:
    extmap = HeaderExtensionsMap()
    extmap.configure(
        RTCRtpParameters(
            headerExtensions=[RTCRtpHeaderExtensionParameters(id=i, uri=u) for i, u in extensions]
        )
    )
    v = object.__new__(FastViewer)
    v.pt, v.ssrc, v.seq, v.ts_origin = 96, 0x11223344, 65530, 0xFFFFFF00
    v.header, v._ast_at, v.ts = bytearray(), None, 0
    v._extmap, v._mid = extmap, "0"
    v.history = collections.deque(maxlen=90)
    return v


def _expected(v: FastViewer, seq: int, ts: int, marker: bool, ast: int) -> bytes:
    p = RtpPacket(payload_type=v.pt, marker=int(marker), sequence_number=seq, timestamp=ts,
                  ssrc=v.ssrc)  # fmt: skip
    p.extensions.abs_send_time = ast
    p.extensions.mid = v._mid
    return bytes(p.serialize(v._extmap))


def test_patched_headers_match_aiortc_across_frames_and_wraps() -> None:
    for exts in (
        [(1, "urn:ietf:params:rtp-hdrext:sdes:mid"),
         (3, "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time")],
        [(1, "urn:ietf:params:rtp-hdrext:sdes:mid")],  # no abs-send-time negotiated
    ):  # fmt: skip
        v = _viewer(exts)
        for n, (ts, ast) in enumerate([(0, 0x000001), (3000, 0xABCDEF), (6000, 0xFFFFFF)]):
            frame = Packetized([b"a", b"bb", b"ccc"], ts, keyframe=n == 0)
            v.begin(frame, ast)
            for i in range(3):  # what FastFanout.send does per packet
                h = v.header
                h[1] = v.pt | 0x80 if i == 2 else v.pt
                h[2:4] = ((v.seq + i) & 0xFFFF).to_bytes(2, "big")
                want = _expected(v, (v.seq + i) & 0xFFFF, v.ts, i == 2, ast)
                if len(exts) == 1:  # without the extension aiortc writes none either
                    want = _expected(v, (v.seq + i) & 0xFFFF, v.ts, i == 2, 0)
                assert bytes(h) == want, (exts, n, i)
            v.seq = (v.seq + 3) & 0xFFFF  # end() moves it on (wrapping past 65535)
        assert v.ts == (0xFFFFFF00 + 6000) & 0xFFFFFFFF


def test_retransmission_finds_packets_across_the_sequence_wrap() -> None:
    v = _viewer([(1, "urn:ietf:params:rtp-hdrext:sdes:mid")])
    frames = [Packetized([bytes([n, i]) for i in range(4)], 3000 * n, False) for n in range(3)]
    for f in frames:
        v.begin(f, 0)
        v.seq = (v.seq + len(f.payloads)) & 0xFFFF
    # 65530..65533, 65534..1, 2..5
    p = v.packet(0)
    assert p is not None and p.payload == bytes([1, 2]) and p.marker == 0
    p = v.packet(1)
    assert p is not None and p.payload == bytes([1, 3]) and p.marker == 1
    assert v.packet(6) is None and v.packet(65529) is None


def test_packetized_once_for_everyone() -> None:
    frame = EncodedFrame(b"\x10" * 3000, 90, fractions.Fraction(1, 90000), True, 0.0)
    out = Packetizer(Codec.VP8).pack(frame)
    assert len(out.payloads) >= 3 and out.keyframe and out.timestamp == 90
    assert out.size == sum(len(p) for p in out.payloads)
