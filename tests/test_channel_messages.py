"""The origin ⇄ worker channel's messages (stream/deliver/messages.py): wire bytes, strict reads."""

from __future__ import annotations

import asyncio
import fractions
import json
from typing import Any

import pytest

from stream.deliver import channel
from stream.deliver.messages import (
    Answer,
    Auth,
    BadMessage,
    Delete,
    End,
    Frame,
    Gone,
    Hello,
    Keyframe,
    Message,
    Offer,
    Refused,
    Want,
    decode,
    decode_framed,
    encode,
    read,
)
from stream.encode.encoders import Codec, EncodedFrame
from stream.encode.ladder import Rung

TB = fractions.Fraction(1, 90000)
LADDER = (Rung("360p", 640, 360, 1_000_000), Rung("180p", 320, 180, 320_000))
NAL = b"\x00\x00\x00\x01\x65"

# The bytes on the wire, written out: changing any of them changes the protocol between the
# origin and its workers (the ladder added rungs to offers, keyframes and frames, and Want).
FIXTURES: list[tuple[Message, bytes]] = [
    (
        Hello("5eed0fc0ffee0001", 1, 4242),
        b"\x00\x00\x00\x3d\x00\x00\x00\x00"
        b'{"t":"hello","token":"5eed0fc0ffee0001","index":1,"pid":4242}',
    ),
    (
        Offer(7, "b1", "v=0\r\n", LADDER, "", True),
        b"\x00\x00\x00\x80\x00\x00\x00\x00"
        b'{"t":"offer","id":7,"bid":"b1","sdp":"v=0\\r\\n",'
        b'"ladder":[["360p",640,360,1000000],["180p",320,180,320000]],"rung":"","abr":true}',
    ),
    (
        Offer(9, "b1", "v=0", LADDER[:1], "360p", False),
        b"\x00\x00\x00\x69\x00\x00\x00\x00"
        b'{"t":"offer","id":9,"bid":"b1","sdp":"v=0","ladder":[["360p",640,360,1000000]],'
        b'"rung":"360p","abr":false}',
    ),
    (
        Answer(7, "a1b2", True, Codec.VP8, "v=0\r\n"),
        b"\x00\x00\x00\x4d\x00\x00\x00\x00"
        b'{"t":"answer","id":7,"sid":"a1b2","audio":true,"video":"vp8","sdp":"v=0\\r\\n"}',
    ),
    (
        Answer(8, "c3", True, None, "v=0"),
        b"\x00\x00\x00\x46\x00\x00\x00\x00"
        b'{"t":"answer","id":8,"sid":"c3","audio":true,"video":null,"sdp":"v=0"}',
    ),
    (
        Refused(7, "no usable media"),
        b'\x00\x00\x00\x2f\x00\x00\x00\x00{"t":"error","id":7,"detail":"no usable media"}',
    ),
    (
        Refused(1, "잘못된 SDP"),
        b"\x00\x00\x00\x36\x00\x00\x00\x00"
        b'{"t":"error","id":1,"detail":"\\uc798\\ubabb\\ub41c SDP"}',
    ),
    (
        Keyframe("b1", Codec.H264, "180p"),
        b'\x00\x00\x00\x38\x00\x00\x00\x00{"t":"keyframe","bid":"b1","codec":"h264","rung":"180p"}',
    ),
    (
        Want("b1", Codec.VP8, "360p"),
        b"\x00\x00\x00\x3f\x00\x00\x00\x00"
        b'{"t":"want","bid":"b1","codec":"vp8","rung":"360p","want":true}',
    ),
    (
        Want("b1", Codec.OPUS, "", False),
        b"\x00\x00\x00\x3d\x00\x00\x00\x00"
        b'{"t":"want","bid":"b1","codec":"opus","rung":"","want":false}',
    ),
    (Gone("a1b2"), b'\x00\x00\x00\x19\x00\x00\x00\x00{"t":"gone","sid":"a1b2"}'),
    (Delete("a1b2"), b'\x00\x00\x00\x1b\x00\x00\x00\x00{"t":"delete","sid":"a1b2"}'),
    (
        Frame("b1", Codec.H264, "360p", 3000, TB, True, 12.5, NAL),
        b"\x00\x00\x00\x64\x00\x00\x00\x05"
        b'{"t":"frame","bid":"b1","codec":"h264","rung":"360p","pts":3000,"tb":[1,90000],'
        b'"key":true,"at":12.5}'
        b"\x00\x00\x00\x01\x65",
    ),
    (End("b1"), b'\x00\x00\x00\x16\x00\x00\x00\x00{"t":"end","bid":"b1"}'),
    (
        Auth("node-a", "00ff"),
        b'\x00\x00\x00\x36\x00\x00\x00\x00{"t":"auth","node":"node-a","nonce":"00ff","proof":""}',
    ),
]
IDS = [f"{m.kind}-{i}" for i, (m, _) in enumerate(FIXTURES)]


def _parts(raw: bytes) -> tuple[bytes, bytes]:
    return channel.unpack(raw)


def _header(**fields: Any) -> bytes:
    return json.dumps(fields, separators=(",", ":")).encode()


def _frame(**over: Any) -> bytes:
    fields = {
        "t": "frame",
        "bid": "b1",
        "codec": "vp8",
        "rung": "360p",
        "pts": 0,
        "tb": [1, 90000],
        "key": False,
        "at": 1.0,
    } | over
    return _header(**{k: v for k, v in fields.items() if v is not ...})


@pytest.mark.parametrize(("msg", "raw"), FIXTURES, ids=IDS)
def test_encode_is_the_wire_bytes(msg: Message, raw: bytes) -> None:
    assert encode(msg) == raw


@pytest.mark.parametrize(("msg", "raw"), FIXTURES, ids=IDS)
def test_decode_of_the_wire_bytes(msg: Message, raw: bytes) -> None:
    assert decode(*_parts(raw)) == msg
    assert decode_framed(raw) == msg
    assert type(decode_framed(raw)) is type(msg)


@pytest.mark.parametrize(("msg", "raw"), FIXTURES, ids=IDS)
def test_round_trip(msg: Message, raw: bytes) -> None:
    assert decode_framed(encode(msg)) == msg
    assert encode(decode_framed(encode(msg))) == encode(msg)


@pytest.mark.parametrize("codec", list(Codec))
def test_every_codec_frame_round_trips(codec: Codec) -> None:
    frame = EncodedFrame(b"x" * 1000, 960, fractions.Fraction(1, 48000), False, 3.25)
    msg = Frame.of("b9", codec, "" if codec is Codec.OPUS else "180p", frame)
    back = decode_framed(encode(msg))
    assert back == msg
    assert isinstance(back, Frame) and back.codec is codec
    assert back.encoded() == frame


def test_a_frame_may_be_empty() -> None:
    msg = decode(_frame(), b"")
    assert isinstance(msg, Frame) and msg.data == b""


def test_integer_composed_at_is_a_float() -> None:
    msg = decode(_frame(at=5), b"d")
    assert isinstance(msg, Frame) and msg.composed_at == 5.0
    assert isinstance(msg.composed_at, float)


def test_unknown_keys_are_ignored() -> None:
    assert decode(_header(t="end", bid="b1", extra=[1, 2])) == End("b1")


def test_a_lost_refusal_never_crosses_the_wire() -> None:
    with pytest.raises(ValueError, match="never sent"):
        encode(Refused(3, "the fan-out worker stopped", lost=True))
    # a worker cannot claim one either: the key is not read
    msg = decode(_header(t="error", id=3, detail="x", lost=True))
    assert msg == Refused(3, "x") and isinstance(msg, Refused) and not msg.lost


def test_bad_message_is_a_value_error() -> None:
    assert issubclass(BadMessage, ValueError)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b'{"t":"end",', "not JSON"),
        (b"", "not JSON"),
        (b"\xff\xfe{}", "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
        (b'["end","b1"]', "JSON object, not an array"),
        (b'"end"', "JSON object, not a string"),
        (b"null", "JSON object, not null"),
        (b'{"t":"nope","bid":"b1"}', "unknown message type 'nope'"),
        (b'{"bid":"b1"}', "unknown message type None"),
        (b'{"t":["end"],"bid":"b1"}', "unknown message type"),
        (b'{"t":"END","bid":"b1"}', "unknown message type"),
    ],
    ids=[
        "invalid",
        "empty",
        "not-utf8",
        "deep",
        "array",
        "string",
        "null",
        "unknown",
        "no-type",
        "list-type",
        "case",
    ],
)
def test_bad_headers(header: bytes, reason: str) -> None:
    with pytest.raises(BadMessage, match=reason):
        decode(header)


MISSING = [
    (kind, key)
    for kind, fields in {
        json.loads(_parts(raw)[0])["t"]: json.loads(_parts(raw)[0]) for _, raw in FIXTURES
    }.items()
    for key in fields
    if key != "t"
]


@pytest.mark.parametrize(("kind", "key"), MISSING, ids=[f"{k}-{f}" for k, f in MISSING])
def test_each_missing_field(kind: str, key: str) -> None:
    raw = next(raw for m, raw in FIXTURES if m.kind == kind)
    head, payload = _parts(raw)
    fields = json.loads(head)
    del fields[key]
    with pytest.raises(BadMessage, match=f"{kind}: '{key}' is missing"):
        decode(_header(**fields), payload)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (
            _header(t="offer", id=True, bid="b1", sdp="v=0"),
            "'id' must be an integer, not a boolean",
        ),
        (_header(t="offer", id=1.0, bid="b1", sdp="v=0"), "'id' must be an integer, not a number"),
        (_header(t="offer", id="1", bid="b1", sdp="v=0"), "'id' must be an integer, not a string"),
        (_header(t="offer", id=1, bid=None, sdp="v=0"), "'bid' must be a string, not null"),
        (_header(t="offer", id=1, bid="b1", sdp=["v=0"]), "'sdp' must be a string, not an array"),
        (_header(t="hello", token="x", index=0, pid=False), "'pid' must be an integer"),
        (_header(t="hello", token=1, index=0, pid=7), "'token' must be a string"),
        (_header(t="answer", id=1, sid="s", audio=1, video=None, sdp=""), "'audio' must be a b"),
        (_header(t="answer", id=1, sid="s", audio=True, video="av1", sdp=""), "'video' must be"),
        (_header(t="answer", id=1, sid="s", audio=True, video=8, sdp=""), "'video' must be"),
        (_header(t="error", id=1, detail=None), "'detail' must be a string"),
        (_header(t="gone", sid={"a": 1}), "'sid' must be a string, not an object"),
        (_frame(pts="3000"), "'pts' must be an integer, not a string"),
        (_frame(pts=True), "'pts' must be an integer, not a boolean"),
        (_frame(pts=1.5), "'pts' must be an integer"),
        (_frame(tb=[1, 0]), "'tb' must be two positive integers"),
        (_frame(tb=[0, 90000]), "'tb' must be two positive integers"),
        (_frame(tb=[-1, 90000]), "'tb' must be two positive integers"),
        (_frame(tb=[1]), "'tb' must be two positive integers"),
        (_frame(tb=[1, 2, 3]), "'tb' must be two positive integers"),
        (_frame(tb=[True, 90000]), "'tb' must be two positive integers"),
        (_frame(tb=[1.0, 90000]), "'tb' must be two positive integers"),
        (_frame(tb="1/90000"), "'tb' must be two positive integers"),
        (_frame(codec="av1"), "'codec' must be one of vp8, h264, opus"),
        (_frame(codec="VP8"), "'codec' must be one of"),
        (_frame(codec=None), "'codec' must be one of"),
        (_frame(codec=["vp8"]), "'codec' must be one of"),
        (_frame(key=1), "'key' must be a boolean, not an integer"),
        (_frame(key="true"), "'key' must be a boolean"),
        (_frame(at="12.5"), "'at' must be a number, not a string"),
        (_frame(at=True), "'at' must be a number, not a boolean"),
        (_frame(bid=5), "'bid' must be a string"),
    ],
)
def test_wrong_types(header: bytes, reason: str) -> None:
    with pytest.raises(BadMessage, match=reason):
        decode(header, b"data" if b'"frame"' in header else b"")


NO_PAYLOAD = [(f, i) for f, i in zip(FIXTURES, IDS, strict=True) if f[0].kind != "frame"]


@pytest.mark.parametrize(("msg", "raw"), [f for f, _ in NO_PAYLOAD], ids=[i for _, i in NO_PAYLOAD])
def test_a_payload_on_a_message_that_takes_none(msg: Message, raw: bytes) -> None:
    head, _ = _parts(raw)
    with pytest.raises(BadMessage, match="takes no payload"):
        decode(head, b"\x00")
    spliced = channel.pack(head, b"\x00\x01")  # the same, framed with a payload
    with pytest.raises(BadMessage, match="takes no payload"):
        decode_framed(spliced)


def test_oversize_declared_lengths() -> None:
    for n, m in [
        (channel.MAX_HEADER + 1, 0),
        (10, channel.MAX_PAYLOAD + 1),
        (2**32 - 1, 2**32 - 1),
    ]:
        with pytest.raises(BadMessage, match="too large"):
            channel.lengths(channel.HEAD.pack(n, m))
        with pytest.raises(BadMessage, match="too large"):
            decode_framed(channel.HEAD.pack(n, m) + b'{"t":"end","bid":"b1"}')
    channel.lengths(channel.HEAD.pack(channel.MAX_HEADER, channel.MAX_PAYLOAD))  # the limits fit


def test_oversize_parts() -> None:
    with pytest.raises(BadMessage, match="too large"):
        decode(b" " * (channel.MAX_HEADER + 1))
    with pytest.raises(BadMessage, match="too large"):
        decode(_frame(), bytes(channel.MAX_PAYLOAD + 1))


@pytest.mark.parametrize(("msg", "raw"), FIXTURES, ids=IDS)
def test_a_truncated_header(msg: Message, raw: bytes) -> None:
    head, payload = _parts(raw)
    for cut in (1, len(head) // 2, len(head) - 1):
        with pytest.raises(BadMessage, match="not JSON"):
            decode(head[:cut], payload)


@pytest.mark.parametrize(("msg", "raw"), FIXTURES, ids=IDS)
def test_truncated_or_padded_framing(msg: Message, raw: bytes) -> None:
    for data in (b"", raw[:3], raw[: channel.HEAD.size], raw[:-1], raw + b"\x00"):
        with pytest.raises(BadMessage):
            decode_framed(data)


def _reader(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def test_read_two_messages_back_to_back() -> None:
    frame, end = FIXTURES[-2], FIXTURES[-1]
    reader = _reader(frame[1] + end[1])
    assert await read(reader) == frame[0]
    assert await read(reader) == end[0]
    with pytest.raises(asyncio.IncompleteReadError) as info:  # the end of the stream
        await read(reader)
    assert info.value.partial == b""


async def test_read_every_message_in_a_stream() -> None:
    reader = _reader(b"".join(raw for _, raw in FIXTURES))
    assert [await read(reader) for _ in FIXTURES] == [m for m, _ in FIXTURES]


@pytest.mark.parametrize("cut", [1, 7, 8, 20, -1], ids=lambda c: f"cut{c}")
async def test_read_truncated_then_eof(cut: int) -> None:
    raw = FIXTURES[-2][1]  # a frame: the cut also falls in its payload
    with pytest.raises(asyncio.IncompleteReadError):
        await read(_reader(raw[:cut]))


async def test_read_oversize_declared_lengths() -> None:
    reader = _reader(channel.HEAD.pack(channel.MAX_HEADER + 1, 0) + b"{}")
    with pytest.raises(BadMessage, match="too large"):
        await read(reader)


async def test_read_a_bad_header() -> None:
    with pytest.raises(BadMessage, match="unknown message type"):
        await read(_reader(channel.pack(b'{"t":"bye"}')))
