"""Fuzzing the origin ⇄ worker ⇄ relay channel (stream/deliver/messages.py, channel.py, fields.py).

Every message :func:`encode` makes decodes back to itself, framed or read off a stream cut into
any chunks; any bytes decode to a message or :class:`BadMessage`, nothing else; what is accepted
encodes again to the same message; a stream read ends in a message, :class:`BadMessage` or
``asyncio.IncompleteReadError``, and never waits for (or holds) more than the channel's limits.
Profiles: tests/fuzz_profiles.py.
"""

from __future__ import annotations

import asyncio
import fractions
import itertools
import json
import struct
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

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
from stream.encode.encoders import Codec
from stream.encode.ladder import MAX_RUNGS, Rung

from .fuzz_profiles import fuzz

ints = st.integers(-(2**63), 2**64) | st.integers(-(10**50), 10**50)
positive = st.integers(1, 2**63)
# lone surrogates too: the header is ASCII JSON, they travel escaped. Not a high one right before
# a low one: JSON reads that back as the one character they encode, and no decoded text has it
strs = st.text() | st.text(st.characters(categories=["Cs", "Cc", "Co"]), max_size=8).filter(
    lambda s: json.loads(json.dumps(s)) == s
)
codecs = st.sampled_from(Codec)
rungs = st.builds(Rung, strs, positive, positive, positive)
ladders = st.lists(rungs, min_size=1, max_size=MAX_RUNGS).map(tuple)
time_bases = st.builds(fractions.Fraction, positive, positive)
finite = st.floats(allow_nan=False, allow_infinity=False)

messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(Hello, strs, ints, ints),
    st.builds(Offer, ints, strs, strs, ladders, strs, st.booleans()),
    st.builds(Answer, ints, strs, st.booleans(), st.none() | codecs, strs),
    st.builds(Refused, ints, strs),
    st.builds(Keyframe, strs, codecs, strs),
    st.builds(Want, strs, codecs, strs, st.booleans()),
    st.builds(Gone, strs),
    st.builds(Delete, strs),
    st.builds(
        Frame, strs, codecs, strs, ints, time_bases, st.booleans(), finite, st.binary(max_size=4096)
    ),
    st.builds(End, strs),
    st.builds(Auth, strs, strs, strs),
)


@fuzz()
@given(messages)
def test_every_message_round_trips(msg: Message) -> None:
    raw = encode(msg)
    assert decode_framed(raw) == msg
    assert decode(*channel.unpack(raw)) == msg
    assert encode(decode_framed(raw)) == raw  # one spelling per message
    n, m = channel.lengths(raw[: channel.HEAD.size])
    assert raw[channel.HEAD.size : channel.HEAD.size + n].isascii()  # compact ASCII JSON
    assert n + m + channel.HEAD.size == len(raw)


# -- headers a peer could send: real ones with fields dropped, retyped, added ---------------------

json_values = st.recursive(
    st.none() | st.booleans() | ints | st.floats() | st.text(max_size=10)
    | st.sampled_from(["vp8", "h264", "opus", "aac", "frame", "end"]),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=4),
    max_leaves=12,
)  # fmt: skip


@st.composite
def mutated_headers(draw: st.DrawFn) -> tuple[bytes, bytes]:
    msg = draw(messages)
    header: dict[str, Any] = msg.header()
    keys = list(header)
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["drop", "retype", "add", "kind"]))
        key = draw(st.sampled_from(keys))
        if action == "drop":
            header.pop(key, None)
        elif action == "retype":
            header[key] = draw(json_values)
        elif action == "add":
            header[draw(st.text(max_size=6))] = draw(json_values)
        else:
            header["t"] = draw(st.sampled_from(sorted(_KINDS)) | st.text(max_size=8))
    raw = json.dumps(header, separators=(",", ":")).encode()
    payload = msg.data if isinstance(msg, Frame) else b""
    return raw, draw(st.sampled_from([payload, b"", b"x"]))


_KINDS = {"hello", "offer", "answer", "error", "keyframe", "want", "gone", "delete", "frame",
          "end", "auth"}  # fmt: skip


def _frame_header(at: str) -> bytes:
    return ('{"t":"frame","bid":"b","codec":"vp8","rung":"","pts":1,"tb":[1,90000],"key":true,'
            f'"at":{at}}}').encode()  # fmt: skip


def _decodes_or_bad(header: bytes, payload: bytes) -> Message | None:
    try:
        msg = decode(header, payload)
    except BadMessage:
        return None
    assert type(msg).kind in _KINDS
    again = decode_framed(encode(msg))  # what we accept we can pass on, unchanged
    assert again == msg
    return msg


@fuzz()
@given(mutated_headers())
@example((_frame_header("1" + "0" * 400), b"x"))  # was OverflowError (int too large for float)
@example((_frame_header("1e400"), b"x"))  # was accepted as inf
@example((_frame_header("NaN"), b"x"))  # was accepted as nan (and nan != nan downstream)
@example((b"[" * 5000 + b"]" * 5000, b""))
@example((('{"t":"hello","token":"","index":' + "9" * 4301 + ',"pid":1}').encode(), b""))
def test_any_header_decodes_or_is_a_bad_message(parts: tuple[bytes, bytes]) -> None:
    _decodes_or_bad(*parts)


@fuzz()
@given(st.binary(max_size=512), st.binary(max_size=64))
def test_any_bytes_decode_or_are_a_bad_message(header: bytes, payload: bytes) -> None:
    _decodes_or_bad(header, payload)


@st.composite
def damaged_frames(draw: st.DrawFn) -> bytes:
    """Real framed messages, truncated, extended, bit-flipped, or with other lengths."""
    raw = bytearray(encode(draw(messages)))
    action = draw(st.sampled_from(["cut", "extend", "flip", "lengths", "none"]))
    if action == "cut":
        del raw[draw(st.integers(0, len(raw))) :]
    elif action == "extend":
        raw += draw(st.binary(min_size=1, max_size=16))
    elif action == "flip":
        i = draw(st.integers(0, len(raw) - 1))
        raw[i] ^= 1 << draw(st.integers(0, 7))
    elif action == "lengths":
        struct.pack_into("!II", raw, 0, draw(st.integers(0, 2**32 - 1)),
                         draw(st.integers(0, 2**32 - 1)))  # fmt: skip
    return bytes(raw)


@fuzz()
@given(damaged_frames() | st.binary(max_size=256))
@example(struct.pack("!II", 0xFFFFFFFF, 0xFFFFFFFF))
@example(struct.pack("!II", channel.MAX_HEADER + 1, 0) + b"{}")
def test_any_framed_bytes_decode_or_are_a_bad_message(data: bytes) -> None:
    try:
        parts = channel.unpack(data)
    except BadMessage:
        return
    msg = _decodes_or_bad(*parts)
    if msg is not None:
        assert decode_framed(data) == msg


@fuzz()
@given(st.binary(min_size=channel.HEAD.size, max_size=channel.HEAD.size))
def test_declared_lengths_are_within_the_limits_or_refused(head: bytes) -> None:
    try:
        n, m = channel.lengths(head)
    except BadMessage:
        n, m = struct.unpack("!II", head)
        assert n > channel.MAX_HEADER or m > channel.MAX_PAYLOAD
        return
    assert 0 <= n <= channel.MAX_HEADER and 0 <= m <= channel.MAX_PAYLOAD


# -- reading off a stream ----------------------------------------------------------------------


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


async def _read_all(data: bytes, cuts: list[int]) -> tuple[list[Message], BaseException | None]:
    """Every message on a stream fed ``data`` in chunks, and how the reading ended."""
    reader = asyncio.StreamReader()
    got: list[Message] = []

    async def feed() -> None:
        for chunk in _chunks(data, cuts):
            reader.feed_data(chunk)
            await asyncio.sleep(0)  # the reader may take a partial message in between
        reader.feed_eof()

    feeding = asyncio.get_running_loop().create_task(feed())
    try:
        while True:
            try:
                got.append(await asyncio.wait_for(read(reader), 10))
            except (BadMessage, asyncio.IncompleteReadError) as exc:
                return got, exc
    finally:
        await feeding


@fuzz(0.5)
@given(st.lists(messages, max_size=4), st.lists(st.integers(0, 2**16), max_size=8))
async def test_messages_read_back_in_order_across_any_chunks(
    sent: list[Message], cuts: list[int]
) -> None:
    data = b"".join(encode(m) for m in sent)
    got, end = await _read_all(data, cuts)
    assert got == sent
    assert isinstance(end, asyncio.IncompleteReadError) and end.partial == b""  # a clean end


@fuzz(0.5)
@given(damaged_frames() | st.binary(max_size=256), st.lists(st.integers(0, 2**16), max_size=8))
@example(struct.pack("!II", 0xFFFFFFFF, 0), [])  # refused at once, nothing allocated or awaited
async def test_a_damaged_stream_ends_in_bad_message_or_incomplete_read(
    data: bytes, cuts: list[int]
) -> None:
    got, end = await _read_all(data, cuts)
    assert isinstance(end, (BadMessage, asyncio.IncompleteReadError))
    if isinstance(end, asyncio.IncompleteReadError):
        limit = max(channel.HEAD.size, channel.MAX_HEADER, channel.MAX_PAYLOAD)
        assert end.expected is not None and end.expected <= limit  # never waits for more
    at = 0
    for msg in got:  # each message read is the one its frame holds, read whole
        n, m = channel.lengths(data[at : at + channel.HEAD.size])
        frame, at = data[at : at + channel.HEAD.size + n + m], at + channel.HEAD.size + n + m
        assert decode_framed(frame) == msg
