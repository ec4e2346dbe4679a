"""A small fragmented-MP4 (ISO BMFF / CMAF-style) writer for LL-HLS parts and recordings (pure).

It packages packets the server already encoded -- H.264 access units in Annex-B form and raw
AAC frames -- and never decodes anything. The caller decides every fragment boundary, so one
fragment can be exactly one LL-HLS part. The boxes written::

    init segment    ftyp
                    moov ─┬─ mvhd
                          ├─ trak (one per track, ids 1..n in the order given)
                          │   ├─ tkhd
                          │   └─ mdia ─┬─ mdhd (timescale: 90000 video, the sample rate audio)
                          │            ├─ hdlr (vide / soun)
                          │            └─ minf ─┬─ vmhd / smhd
                          │                     ├─ dinf ─ dref ─ url
                          │                     └─ stbl ─┬─ stsd ─ avc1+avcC / mp4a+esds
                          │                              └─ stts stsc stsz stco (all empty)
                          └─ mvex ─ trex (one per track)
    fragment        moof ─┬─ mfhd (sequence number)
                          └─ traf (one per non-empty run) ─┬─ tfhd (default-base-is-moof)
                                                           ├─ tfdt (v1: 64-bit decode time)
                                                           └─ trun (data offset; per sample:
                                                                    duration, size, flags)
                    mdat (the runs' samples, in run order)

A segment file is ``styp()`` (optional) followed by fragments; a part is one fragment. Each
track's decode times are in its own timescale; the caller keeps ``base_media_decode_time``
continuous (the sum of the durations written before).
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterable, Sequence
from typing import NamedTuple

VIDEO_TIMESCALE = 90000
_SYNC = 0x02000000  # sample_depends_on=2 (an I picture)
_NON_SYNC = 0x01010000  # sample_depends_on=1, sample_is_non_sync_sample=1
_MATRIX = struct.pack(">9i", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000,
              7350)  # fmt: skip


# -- H.264 -------------------------------------------------------------------------------------


def annexb_nals(data: bytes) -> list[bytes]:
    """The NAL units of an Annex-B byte stream (3- or 4-byte start codes), without start codes.

    Empty input gives ``[]``; zero bytes before the first start code are allowed (leading and
    trailing zero bytes belong to the stream, never to a NAL unit). Anything else before the first
    start code -- input that is not Annex-B, such as an AVCC sample -- raises ValueError.
    """
    first = data.find(b"\x00\x00\x01")
    if first < 0 or data[:first].strip(b"\x00"):
        if not data.strip(b"\x00"):
            return []
        raise ValueError("not an Annex-B stream: no start code before the data")
    nals = []
    start = first + 3
    while True:
        end = data.find(b"\x00\x00\x01", start)
        nal = (data[start:] if end < 0 else data[start:end]).rstrip(b"\x00")
        if nal:
            nals.append(nal)
        if end < 0:
            return nals
        start = end + 3


class _Bits:
    """An MSB-first reader over an RBSP (emulation prevention bytes already removed)."""

    def __init__(self, rbsp: bytes) -> None:
        self.value = int.from_bytes(rbsp, "big")
        self.left = len(rbsp) * 8

    def u(self, n: int) -> int:
        if n > self.left:
            raise ValueError("SPS is truncated")
        self.left -= n
        return (self.value >> self.left) & ((1 << n) - 1)

    def ue(self) -> int:
        zeros = 0
        while not self.u(1):
            zeros += 1
            if zeros > 31:
                raise ValueError("SPS has a bad exp-Golomb code")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def _rbsp(nal: bytes) -> bytes:
    out, zeros = bytearray(), 0
    for b in nal:
        if zeros >= 2 and b == 3:
            zeros = 0
            continue
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


def sps_size(sps: bytes) -> tuple[int, int]:
    """(width, height) of the cropped picture an SPS NAL unit (with its header byte) describes."""
    r = _Bits(_rbsp(sps[1:]))
    profile_idc = r.u(8)
    r.u(16)  # constraint flags, level_idc
    r.ue()  # seq_parameter_set_id
    chroma_format_idc, separate_planes = 1, 0
    if profile_idc in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
        chroma_format_idc = r.ue()
        if chroma_format_idc == 3:
            separate_planes = r.u(1)
        r.ue()  # bit_depth_luma_minus8
        r.ue()  # bit_depth_chroma_minus8
        r.u(1)  # qpprime_y_zero_transform_bypass_flag
        if r.u(1):  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if r.u(1):  # seq_scaling_list_present_flag[i]: skip the list
                    last = nxt = 8
                    for _ in range(16 if i < 6 else 64):
                        if nxt:
                            nxt = (last + r.se()) % 256
                        last = nxt or last
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        r.u(1)  # delta_pic_order_always_zero_flag
        r.se()  # offset_for_non_ref_pic
        r.se()  # offset_for_top_to_bottom_field
        for _ in range(r.ue()):
            r.se()
    r.ue()  # max_num_ref_frames
    r.u(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = r.ue() + 1
    height_map_units = r.ue() + 1
    frame_mbs_only = r.u(1)
    if not frame_mbs_only:
        r.u(1)  # mb_adaptive_frame_field_flag
    r.u(1)  # direct_8x8_inference_flag
    left = right = top = bottom = 0
    if r.u(1):  # frame_cropping_flag
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
    if chroma_format_idc == 0 or separate_planes:
        unit_x, unit_y = 1, 2 - frame_mbs_only
    else:
        unit_x = 1 if chroma_format_idc == 3 else 2
        unit_y = (2 if chroma_format_idc == 1 else 1) * (2 - frame_mbs_only)
    width = width_mbs * 16 - unit_x * (left + right)
    height = (2 - frame_mbs_only) * height_map_units * 16 - unit_y * (top + bottom)
    if width <= 0 or height <= 0:
        raise ValueError("SPS crops the whole picture away")
    return width, height


@dataclasses.dataclass(frozen=True, slots=True)
class H264Config:
    """One SPS and PPS (NAL units with their header byte, no start code) and the picture size."""

    sps: bytes
    pps: bytes
    width: int
    height: int

    @classmethod
    def from_sps_pps(cls, sps: bytes, pps: bytes) -> H264Config:
        if len(sps) < 4 or sps[0] & 0x1F != 7 or not pps or pps[0] & 0x1F != 8:
            raise ValueError("not an SPS and a PPS")
        return cls(sps, pps, *sps_size(sps))

    @property
    def profile_idc(self) -> int:
        return self.sps[1]

    @property
    def level_idc(self) -> int:
        return self.sps[3]

    @property
    def codec(self) -> str:
        """RFC 6381 ``avc1.PPCCLL``: profile_idc, constraint flags and level_idc from the SPS."""
        return "avc1." + self.sps[1:4].hex()

    @property
    def timescale(self) -> int:
        return VIDEO_TIMESCALE

    @property
    def record(self) -> bytes:
        """The AVCDecoderConfigurationRecord (MP4's avcC, FLV's sequence header)."""
        return b"".join((
            bytes([1, *self.sps[1:4], 0xFF, 0xE1]),  # 4-byte lengths, one SPS
            struct.pack(">H", len(self.sps)), self.sps,
            bytes([1]), struct.pack(">H", len(self.pps)), self.pps,
        ))  # fmt: skip


def h264_sample(data: bytes) -> tuple[bytes, H264Config | None]:
    """An Annex-B access unit as an MP4 sample: 4-byte length-prefixed NAL units without SPS,
    PPS and access unit delimiters; plus the configuration if the unit carried an SPS and a PPS.

    Raises ValueError if ``data`` is not Annex-B or holds no coded slice (NAL types 1-5).
    """
    sps = pps = None
    out = bytearray()
    slices = 0
    for nal in annexb_nals(data):
        kind = nal[0] & 0x1F
        if kind == 7:
            sps = sps or nal
        elif kind == 8:
            pps = pps or nal
        elif kind != 9:
            slices += 1 if 1 <= kind <= 5 else 0
            out += struct.pack(">I", len(nal)) + nal
    if not slices:
        raise ValueError("access unit without a coded slice")
    config = H264Config.from_sps_pps(sps, pps) if sps and pps else None
    return bytes(out), config


# -- AAC ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class AacConfig:
    """Raw AAC frames (no ADTS) and their AudioSpecificConfig (the encoder's extradata)."""

    sample_rate: int
    channels: int
    asc: bytes

    @classmethod
    def from_asc(cls, asc: bytes) -> AacConfig:
        """Sample rate and channels read from an AudioSpecificConfig (object types below 31)."""
        if len(asc) < 2:
            raise ValueError("AudioSpecificConfig is too short")
        bits = int.from_bytes(asc[:2], "big")
        index, channels = bits >> 7 & 0xF, bits >> 3 & 0xF
        if index >= len(_AAC_RATES) or not 1 <= channels <= 7:  # no explicit rates, no PCEs
            raise ValueError("unsupported AudioSpecificConfig")
        return cls(_AAC_RATES[index], channels, asc)

    @property
    def codec(self) -> str:
        """RFC 6381 ``mp4a.40.N``, N the audio object type (2: AAC-LC)."""
        return f"mp4a.40.{self.asc[0] >> 3}"

    @property
    def timescale(self) -> int:
        return self.sample_rate


Track = H264Config | AacConfig


# -- boxes -------------------------------------------------------------------------------------


def _box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I", 8 + len(body)) + kind + body


def _full(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return _box(kind, struct.pack(">I", version << 24 | flags), *payload)


def _descriptor(tag: int, *payload: bytes) -> bytes:
    body = b"".join(payload)
    size, n = bytearray(), len(body)
    while True:
        size.insert(0, (n & 0x7F) | (0x80 if size else 0))
        n >>= 7
        if not n:
            break
    return bytes([tag]) + size + body


def _sample_entry(track: Track) -> bytes:
    if isinstance(track, H264Config):
        avcc = _box(b"avcC", track.record)
        return _box(
            b"avc1",
            bytes(6), struct.pack(">H", 1),  # reserved, data_reference_index
            bytes(16), struct.pack(">HH", track.width, track.height),
            struct.pack(">IIIH", 0x480000, 0x480000, 0, 1),  # 72 dpi, reserved, frame_count
            bytes(32), struct.pack(">Hh", 0x18, -1),  # compressorname, depth, pre_defined
            avcc,
        )  # fmt: skip
    esds = _full(
        b"esds", 0, 0,
        _descriptor(
            0x03, struct.pack(">HB", 0, 0),  # ES_ID, flags
            _descriptor(
                0x04, bytes([0x40, 0x15]), bytes(11),  # MPEG-4 audio, audio stream; rates unknown
                _descriptor(0x05, track.asc),
            ),
            _descriptor(0x06, b"\x02"),  # SLConfig: predefined MP4
        ),
    )  # fmt: skip
    rate = track.sample_rate if track.sample_rate < 0x10000 else 0
    return _box(
        b"mp4a",
        bytes(6), struct.pack(">H", 1), bytes(8),
        struct.pack(">HHHHI", track.channels, 16, 0, 0, rate << 16),
        esds,
    )  # fmt: skip


def _trak(track_id: int, track: Track) -> bytes:
    video = isinstance(track, H264Config)
    width, height = (track.width, track.height) if isinstance(track, H264Config) else (0, 0)
    tkhd = _full(
        b"tkhd", 0, 3,  # enabled, in movie
        struct.pack(">IIIII", 0, 0, track_id, 0, 0), bytes(8),
        struct.pack(">hhhH", 0, 0, 0 if video else 0x100, 0), _MATRIX,
        struct.pack(">II", width << 16, height << 16),
    )  # fmt: skip
    mdhd = _full(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, track.timescale, 0, 0x55C4, 0))
    handler, name = (b"vide", b"VideoHandler\0") if video else (b"soun", b"SoundHandler\0")
    hdlr = _full(b"hdlr", 0, 0, bytes(4), handler, bytes(12), name)
    media_header = _full(b"vmhd", 0, 1, bytes(8)) if video else _full(b"smhd", 0, 0, bytes(4))
    dinf = _box(b"dinf", _full(b"dref", 0, 0, struct.pack(">I", 1), _full(b"url ", 0, 1)))
    stbl = _box(
        b"stbl",
        _full(b"stsd", 0, 0, struct.pack(">I", 1), _sample_entry(track)),
        _full(b"stts", 0, 0, bytes(4)),
        _full(b"stsc", 0, 0, bytes(4)),
        _full(b"stsz", 0, 0, bytes(8)),
        _full(b"stco", 0, 0, bytes(4)),
    )
    minf = _box(b"minf", media_header, dinf, stbl)
    return _box(b"trak", tkhd, _box(b"mdia", mdhd, hdlr, minf))


def init_segment(tracks: Sequence[Track]) -> bytes:
    """ftyp + moov for ``tracks``, which get track ids 1..n in this order. The CMAF brand is
    claimed only for a single track (CMAF allows one track per file)."""
    if not tracks:
        raise ValueError("an init segment needs a track")
    brands = [b"iso6", b"mp41"] + ([b"cmfc"] if len(tracks) == 1 else [])
    ftyp = _box(b"ftyp", b"iso6", struct.pack(">I", 0), *brands)
    mvhd = _full(
        b"mvhd", 0, 0,
        struct.pack(">IIIIIH", 0, 0, 1000, 0, 0x10000, 0x100), bytes(10), _MATRIX, bytes(24),
        struct.pack(">I", len(tracks) + 1),
    )  # fmt: skip
    ids = range(1, 1 + len(tracks))
    trex = [_full(b"trex", 0, 0, struct.pack(">IIIII", i, 1, 0, 0, 0)) for i in ids]
    traks = [_trak(i, t) for i, t in zip(ids, tracks, strict=True)]
    return ftyp + _box(b"moov", mvhd, *traks, _box(b"mvex", *trex))


def styp() -> bytes:
    """The segment type box that may start a segment file (before its first fragment)."""
    return _box(b"styp", b"msdh", struct.pack(">I", 0), b"msdh", b"iso6")


# -- fragments ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Sample:
    """One MP4 sample: an AVCC access unit or a raw AAC frame, duration in the track's timescale."""

    data: bytes
    duration: int
    keyframe: bool
    composition_offset: int = 0  # 0 without B-frames


class Run(NamedTuple):
    """A track's consecutive samples in one fragment, from ``base_media_decode_time`` on."""

    track_id: int
    base_media_decode_time: int
    samples: Sequence[Sample]


def _traf(run: Run, data_offset: int) -> bytes:
    cts = any(s.composition_offset for s in run.samples)
    flags = 0x001 | 0x100 | 0x200 | 0x400 | (0x800 if cts else 0)  # offset, duration/size/flags
    entries = bytearray()
    for s in run.samples:
        entries += struct.pack(">III", s.duration, len(s.data), _SYNC if s.keyframe else _NON_SYNC)
        if cts:
            entries += struct.pack(">i", s.composition_offset)
    return _box(
        b"traf",
        _full(b"tfhd", 0, 0x020000, struct.pack(">I", run.track_id)),  # default-base-is-moof
        _full(b"tfdt", 1, 0, struct.pack(">Q", run.base_media_decode_time)),
        _full(b"trun", 1 if cts else 0, flags, struct.pack(">Ii", len(run.samples), data_offset),
              bytes(entries)),
    )  # fmt: skip


def fragment(sequence_number: int, runs: Iterable[tuple[int, int, Sequence[Sample]]]) -> bytes:
    """moof + mdat holding ``runs``: (track_id, base_media_decode_time, samples) each, written
    in this order; empty runs are left out. ``sequence_number`` should count up from 1."""
    kept = [Run(*r) for r in runs if r[2]]
    if not kept:
        raise ValueError("a fragment needs at least one sample")
    mfhd = _full(b"mfhd", 0, 0, struct.pack(">I", sequence_number))

    def moof(offsets: Sequence[int]) -> bytes:
        return _box(b"moof", mfhd, *(_traf(r, o) for r, o in zip(kept, offsets, strict=True)))

    offsets, position = [], len(moof([0] * len(kept))) + 8  # trun sizes do not depend on offsets
    for run in kept:
        offsets.append(position)
        position += sum(len(s.data) for s in run.samples)
    mdat = _box(b"mdat", *(s.data for run in kept for s in run.samples))
    return moof(offsets) + mdat
