"""The fragmented-MP4 writer (stream/deliver/hls/fmp4.py): bytes, boxes, and FFmpeg reading it."""

from __future__ import annotations

import fractions
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from av.audio.frame import AudioFrame

from stream.deliver.hls.fmp4 import (
    AacConfig,
    H264Config,
    Run,
    Sample,
    annexb_nals,
    fragment,
    h264_sample,
    init_segment,
    sps_size,
    styp,
)
from stream.encode.encoders import Codec, EncodedFrame, VideoEncoder
from stream.ingest.pattern import read_counter
from stream.ingest.synthetic import pattern_frame

FPS = 30
STEP = 90000 // FPS
WIDTH, HEIGHT = 640, 360
FRAMES = 95  # keyframes at 0, 30, 60, 90
GOP = 30
PER_FRAGMENT = 10
AAC_FRAME = 1024

# -- helpers -------------------------------------------------------------------------------------

Box = tuple[bytes, bytes]  # (type, payload)


def boxes(data: bytes) -> list[Box]:
    """The boxes laid end to end in ``data`` (32-bit sizes only, which is all the writer makes)."""
    out, pos = [], 0
    while pos < len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        assert size >= 8 and pos + size <= len(data), (kind, size, pos, len(data))
        out.append((kind, data[pos + 8 : pos + size]))
        pos += size
    return out


def child(payload: bytes, kind: bytes, skip: int = 0) -> bytes:
    """The one ``kind`` box among the boxes in ``payload[skip:]``."""
    found = [p for k, p in boxes(payload[skip:]) if k == kind]
    assert len(found) == 1, (kind, [k for k, _ in boxes(payload[skip:])])
    return found[0]


def path(payload: bytes, *kinds: bytes) -> bytes:
    for kind in kinds:
        payload = child(payload, kind)
    return payload


def trun_counts(data: bytes) -> list[int]:
    """Sample counts of a fragment's track runs, in order."""
    moof = child(data, b"moof")
    return [
        struct.unpack_from(">I", child(p, b"trun"), 4)[0] for k, p in boxes(moof) if k == b"traf"
    ]


def encode_video(width: int, height: int, frames: int, gop: int = GOP) -> list[EncodedFrame]:
    enc = VideoEncoder(Codec.H264, width, height, FPS, 800_000)
    out = []
    for i in range(frames):
        packets = enc.encode(pattern_frame(i, width, height), i, keyframe=i % gop == 0)
        assert len(packets) == 1  # zerolatency: one access unit per picture, no delay
        out.append(packets[0])
    return out


def encode_aac(frames: int) -> tuple[list[bytes], bytes]:
    """``frames`` 1024-sample frames of a 440 Hz tone as raw AAC-LC packets, and the extradata."""
    ctx: Any = av.CodecContext.create("aac", "w")
    ctx.sample_rate = 48000
    ctx.layout = "stereo"
    ctx.format = "fltp"
    ctx.bit_rate = 128000
    ctx.time_base = fractions.Fraction(1, 48000)
    packets = []
    for i in range(frames):
        t = (np.arange(AAC_FRAME) + i * AAC_FRAME) / 48000
        tone = (0.25 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        frame = AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
        frame.sample_rate = 48000
        frame.pts = i * AAC_FRAME
        packets += [bytes(p) for p in ctx.encode(frame) if p.size]
    packets += [bytes(p) for p in ctx.encode(None) if p.size]
    assert ctx.extradata  # set once the encoder opened (PyAV 18: bytes, None before)
    return packets, bytes(ctx.extradata)


@pytest.fixture(scope="module")
def video() -> list[EncodedFrame]:
    return encode_video(WIDTH, HEIGHT, FRAMES)


@pytest.fixture(scope="module")
def audio() -> tuple[list[bytes], bytes]:
    return encode_aac(150)  # 3.2 s: as long as the video, give or take a frame


def mux(
    video: Sequence[EncodedFrame], audio: Sequence[bytes] | None, asc: bytes = b""
) -> tuple[bytes, list[bytes]]:
    """The init segment and one fragment per PER_FRAGMENT pictures (audio up to the same time)."""
    samples, configs = [], []
    for i, frame in enumerate(video):
        data, config = h264_sample(frame.data)
        assert (config is not None) == frame.keyframe == (i % GOP == 0)
        configs += [config] if config else []
        samples.append(Sample(data, STEP, frame.keyframe))
    assert len(set(configs)) == 1  # every keyframe repeats the same SPS and PPS
    tracks: list[H264Config | AacConfig] = [configs[0]]
    if audio is not None:
        tracks.append(AacConfig.from_asc(asc))
    fragments, sent_audio = [], 0
    for seq, first in enumerate(range(0, len(samples), PER_FRAGMENT), 1):
        last = first + PER_FRAGMENT >= len(samples)
        runs = [Run(1, first * STEP, samples[first : first + PER_FRAGMENT])]
        if audio is not None:
            end = len(audio) if last else (first + PER_FRAGMENT) * STEP * 48000 // 90000
            upto = len(audio) if last else min(len(audio), -(-end // AAC_FRAME))
            chunk = [Sample(p, AAC_FRAME, True) for p in audio[sent_audio:upto]]
            runs.append(Run(2, sent_audio * AAC_FRAME, chunk))
            sent_audio = upto
        fragments.append(fragment(seq, runs))
    return init_segment(tracks), fragments


def decode(file: Path) -> dict[str, Any]:
    """Decode every packet of ``file``; what a player would see."""
    got: dict[str, Any] = {"pts": [], "counters": [], "samples": 0}
    with av.open(str(file)) as container:
        vs = container.streams.video[0]
        video = vs.codec_context
        got.update(codec=video.name, size=(video.width, video.height), time_base=vs.time_base)
        streams: list[av.stream.Stream] = [vs]
        if container.streams.audio:
            aus = container.streams.audio[0]
            audio = aus.codec_context
            got.update(audio=(audio.name, audio.sample_rate, audio.channels))
            streams.append(aus)
        for packet in container.demux(*streams):
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    got["pts"].append(frame.pts)
                    got["counters"].append(read_counter(frame.to_ndarray(format="bgr24")))
                else:
                    assert isinstance(frame, AudioFrame)
                    got["samples"] += frame.samples
    return got


# -- Annex-B and AVCC ----------------------------------------------------------------------------


def test_annexb_nals_splits_on_three_and_four_byte_start_codes() -> None:
    stream = b"\x00\x00\x00\x01\x67\xaa\x00\x00\x01\x68\xbb\x00\x00\x00\x01\x65\x00\x03\x01"
    assert annexb_nals(stream) == [b"\x67\xaa", b"\x68\xbb", b"\x65\x00\x03\x01"]
    # leading and trailing zero bytes are the stream's, adjacent start codes hold no NAL unit
    assert annexb_nals(b"\x00\x00\x00\x00\x01\x09\xf0\x00\x00\x01\x00\x00\x01\x41\x9a\x00\x00") == [
        b"\x09\xf0", b"\x41\x9a"]  # fmt: skip


def test_annexb_nals_of_nothing_is_empty_and_of_anything_else_an_error() -> None:
    assert annexb_nals(b"") == []
    assert annexb_nals(b"\x00\x00\x00") == []
    with pytest.raises(ValueError, match="Annex-B"):
        annexb_nals(b"\x65\x88\x84\x00")  # no start code at all
    with pytest.raises(ValueError, match="Annex-B"):
        annexb_nals(b"\x00\x00\x00\x05\x65\x88\x00\x00\x01\x41")  # AVCC length, then a code


def test_an_access_unit_becomes_length_prefixed_without_parameter_sets_and_delimiters() -> None:
    key = encode_video(320, 180, 1)[0].data
    sps, pps = annexb_nals(key)[:2]
    sei, idr = b"\x06\x05\x01\x80", b"\x65\x88\x80\x40"
    unit = b"\x00\x00\x00\x01\x09\xf0" + b"".join(b"\x00\x00\x01" + n for n in (sps, pps, sei, idr))
    sample, config = h264_sample(unit)
    assert sample == b"\x00\x00\x00\x04" + sei + b"\x00\x00\x00\x04" + idr
    assert config == H264Config(sps, pps, 320, 180)
    assert h264_sample(b"\x00\x00\x01\x41\x9a\x02") == (b"\x00\x00\x00\x03\x41\x9a\x02", None)
    # an SPS without its PPS is no configuration; a unit without a slice is no sample
    assert h264_sample(b"\x00\x00\x01" + sps + b"\x00\x00\x01" + idr)[1] is None
    with pytest.raises(ValueError, match="slice"):
        h264_sample(b"\x00\x00\x01" + sps + b"\x00\x00\x01" + pps)


@pytest.mark.parametrize("size", [(1280, 720), (640, 360), (320, 180)], ids=str)
def test_the_sps_of_our_encoder_gives_its_size_profile_and_level(size: tuple[int, int]) -> None:
    key = encode_video(*size, 1)[0]
    _, config = h264_sample(key.data)
    assert config is not None
    assert (config.width, config.height) == size
    assert config.profile_idc == 66 and config.sps[2] & 0x40  # constrained baseline
    assert config.level_idc == 31  # the encoder asks for 3.1 up to 720p
    assert config.codec == "avc1." + config.sps[1:4].hex() == "avc1.42c01f"
    assert config.timescale == 90000


@pytest.mark.parametrize(
    ("profile", "pix_fmt", "size", "idc"),
    [("high", "yuv420p", (1920, 1080), 100), ("high444", "yuv444p", (321, 179), 244)],
)
def test_high_profile_sps_with_chroma_format_and_odd_crops(
    profile: str, pix_fmt: str, size: tuple[int, int], idc: int
) -> None:
    ctx: Any = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height = size
    ctx.pix_fmt, ctx.profile = pix_fmt, profile
    ctx.time_base = fractions.Fraction(1, FPS)
    ctx.options = {"preset": "veryfast", "tune": "zerolatency"}  # 8x8dct: High
    frame = av.VideoFrame(*size, pix_fmt)
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    data = b"".join(bytes(p) for p in [*ctx.encode(frame), *ctx.encode(None)])
    sps = next(n for n in annexb_nals(data) if n[0] & 0x1F == 7)
    assert sps[1] == idc
    assert sps_size(sps) == size
    with pytest.raises(ValueError, match="truncated"):
        sps_size(sps[:8])


def test_aac_config_from_the_encoders_extradata(audio: tuple[list[bytes], bytes]) -> None:
    config = AacConfig.from_asc(audio[1])
    assert (config.sample_rate, config.channels, config.codec) == (48000, 2, "mp4a.40.2")
    assert config.timescale == 48000 and config.asc == audio[1]
    assert AacConfig.from_asc(b"\x11\x90") == AacConfig(48000, 2, b"\x11\x90")  # no SBR signal
    assert AacConfig.from_asc(b"\x12\x08").sample_rate == 44100
    with pytest.raises(ValueError):
        AacConfig.from_asc(b"\x17\x80\x00\x00\x00")  # explicit sample rate: not supported


# -- box structure -------------------------------------------------------------------------------


def test_init_segment_boxes(video: list[EncodedFrame], audio: tuple[list[bytes], bytes]) -> None:
    _, config = h264_sample(video[0].data)
    assert config is not None
    aac = AacConfig.from_asc(audio[1])
    init = init_segment([config, aac])
    (k1, ftyp), (k2, moov) = boxes(init)
    assert (k1, k2) == (b"ftyp", b"moov")
    assert ftyp[:4] == b"iso6" and b"cmfc" not in ftyp[8:]  # CMAF is one track per file
    assert b"cmfc" in boxes(init_segment([config]))[0][1][8:]
    assert [k for k, _ in boxes(moov)] == [b"mvhd", b"trak", b"trak", b"mvex"]
    assert struct.unpack(">I", child(moov, b"mvhd")[-4:]) == (3,)  # next_track_ID
    traks = [p for k, p in boxes(moov) if k == b"trak"]
    assert [struct.unpack_from(">I", child(t, b"tkhd"), 12)[0] for t in traks] == [1, 2]
    assert struct.unpack(">II", child(traks[0], b"tkhd")[-8:]) == (WIDTH << 16, HEIGHT << 16)
    mdhd = [path(t, b"mdia", b"mdhd") for t in traks]
    assert [struct.unpack_from(">I", m, 12)[0] for m in mdhd] == [90000, 48000]
    assert [path(t, b"mdia", b"hdlr")[8:12] for t in traks] == [b"vide", b"soun"]
    stbls = [path(t, b"mdia", b"minf", b"stbl") for t in traks]
    assert [k for k, _ in boxes(stbls[0])] == [b"stsd", b"stts", b"stsc", b"stsz", b"stco"]
    entries = [boxes(child(s, b"stsd")[8:]) for s in stbls]
    assert [[k for k, _ in e] for e in entries] == [[b"avc1"], [b"mp4a"]]
    avc1, mp4a = entries[0][0][1], entries[1][0][1]
    assert struct.unpack_from(">HH", avc1, 24) == (WIDTH, HEIGHT)
    avcc = child(avc1, b"avcC", skip=78)
    assert avcc[:4] == bytes([1]) + config.sps[1:4] and avcc[4] & 3 == 3  # 4-byte lengths
    assert avcc[6:8] == struct.pack(">H", len(config.sps)) and config.sps in avcc
    assert config.pps in avcc
    assert struct.unpack_from(">HH", mp4a, 16) == (2, 16)
    assert struct.unpack_from(">I", mp4a, 24)[0] >> 16 == 48000
    assert aac.asc in child(mp4a, b"esds", skip=28)
    trex = [p for _, p in boxes(child(moov, b"mvex"))]
    assert [struct.unpack_from(">II", t, 4) for t in trex] == [(1, 1), (2, 1)]


def test_fragment_boxes_point_at_their_samples() -> None:
    video = [Sample(b"V" * n, STEP, i == 0) for i, n in enumerate((50, 7, 9))]
    sound = [Sample(b"A" * n, AAC_FRAME, True) for n in (11, 13)]
    data = fragment(7, [(1, 9000, video), (3, 0, []), (2, 4096, sound)])
    (k1, moof), (k2, mdat) = boxes(data)
    assert (k1, k2) == (b"moof", b"mdat")
    assert [k for k, _ in boxes(moof)] == [b"mfhd", b"traf", b"traf"]  # the empty run left out
    assert struct.unpack(">II", child(moof, b"mfhd")) == (0, 7)
    runs = [(1, 9000, video), (2, 4096, sound)]
    trafs = [p for k, p in boxes(moof) if k == b"traf"]
    for traf, (track_id, base, samples) in zip(trafs, runs, strict=True):
        assert struct.unpack(">II", child(traf, b"tfhd")) == (0x020000, track_id)
        assert struct.unpack(">IQ", child(traf, b"tfdt")) == (1 << 24, base)
        trun = child(traf, b"trun")
        flags, count, offset = struct.unpack_from(">IIi", trun)
        assert flags == 0x701 and count == len(samples)
        entries = [struct.unpack_from(">III", trun, 12 + 12 * i) for i in range(count)]
        assert [(d, n) for d, n, _ in entries] == [(s.duration, len(s.data)) for s in samples]
        assert [f for _, _, f in entries] == [
            0x02000000 if s.keyframe else 0x01010000 for s in samples]  # fmt: skip
        assert data[offset : offset + sum(n for _, n, _ in entries)] == b"".join(
            s.data for s in samples)  # fmt: skip
    assert mdat == b"V" * 66 + b"A" * 24


def test_composition_offsets_use_a_version_1_trun_and_nothing_is_no_fragment() -> None:
    data = fragment(
        1, [(1, 0, [Sample(b"x", STEP, True, 2 * STEP), Sample(b"y", STEP, False, -1)])]
    )
    trun = path(boxes(data)[0][1], b"traf", b"trun")
    assert struct.unpack_from(">I", trun)[0] == 1 << 24 | 0xF01
    assert struct.unpack_from(">IIIi", trun, 28) == (STEP, 1, 0x01010000, -1)
    with pytest.raises(ValueError):
        fragment(1, [(1, 0, [])])


# -- through FFmpeg ------------------------------------------------------------------------------


def test_video_fragments_decode_frame_by_frame(video: list[EncodedFrame], tmp_path: Path) -> None:
    init, fragments = mux(video, None)
    assert len(fragments) == 10
    file = tmp_path / "video.mp4"
    file.write_bytes(init + b"".join(fragments))
    got = decode(file)
    assert (got["codec"], got["size"]) == ("h264", (WIDTH, HEIGHT))
    assert got["time_base"] == fractions.Fraction(1, 90000)
    assert got["pts"] == [i * STEP for i in range(FRAMES)]
    assert got["counters"] == list(range(FRAMES))


def test_muxed_audio_and_video_decode_and_join_mid_stream(
    video: list[EncodedFrame], audio: tuple[list[bytes], bytes], tmp_path: Path
) -> None:
    packets, asc = audio
    init, fragments = mux(video, packets, asc)
    # every fragment carries both tracks
    assert all(len(trun_counts(f)) == 2 for f in fragments)
    whole = tmp_path / "show.mp4"
    whole.write_bytes(init + b"".join(styp() + f for f in fragments))
    got = decode(whole)
    assert (got["codec"], got["size"], got["audio"]) == ("h264", (WIDTH, HEIGHT), ("aac", 48000, 2))
    assert got["pts"] == [i * STEP for i in range(FRAMES)]
    assert got["counters"] == list(range(FRAMES))
    assert abs(got["samples"] - len(packets) * AAC_FRAME) / 48000 < 0.05

    # a player joining at the second segment (fragment 3 starts with keyframe 30)
    late = tmp_path / "late.mp4"
    late.write_bytes(init + styp() + b"".join(fragments[3:]))
    got = decode(late)
    assert got["pts"] == [i * STEP for i in range(GOP, FRAMES)]
    assert got["counters"] == list(range(GOP, FRAMES))
    audio_sent = sum(trun_counts(f)[1] for f in fragments[3:]) * AAC_FRAME
    assert abs(got["samples"] - audio_sent) / 48000 < 0.05
