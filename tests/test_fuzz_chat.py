"""Fuzzing what a chat client sends (chat/frames.py, chat/normalize.py, chat/ws.py).

Any text is a :class:`~chat.frames.ChatLine`, :class:`~chat.frames.Hearts` or a
:class:`~chat.frames.BadFrame` with one of its codes; a chat line's text is the normalised text
or :class:`~chat.normalize.TextRejected`; and over a real socket, whatever a client sends gets an
answer (an event, an ``error`` event, or 1009 for a frame over 4 KiB), never a closed socket.
Profiles: tests/fuzz_profiles.py.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from chat.frames import MAX_HEART_TAPS, BadFrame, ChatLine, Frame, Hearts, error_event, parse
from chat.normalize import DEFAULT_MAX_CHARS, TextRejected, banned_hit, check_text, fold
from jangteo.testkit.server import RunningServer

from .chat_client import ChatClient
from .fuzz_profiles import LONG, fuzz

FRAME_CODES = {"bad_json", "bad_type", "bad_text", "bad_count"}
TEXT_CODES = {"empty", "control_characters", "too_long"}
WS_MAX = 4096  # jangteo/app.py WS_MAX_SIZE: bigger frames close the socket with 1009

# JSON scalars as a client may send them: huge and negative numbers, floats, unicode
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**300), max_value=10**300)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.text(st.characters(codec="utf-8", categories=["Cc", "Cf", "Zs", "Zl", "Zp", "Mn"]))
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
)
kinds = st.sampled_from(["chat", "heart", "Chat", "HEART", "", "chat ", "order", "ping"])


@st.composite
def frame_docs(draw: st.DrawFn) -> dict[str, Any]:
    """Objects close to real frames: a type, then text/count of any JSON type, extra keys."""
    doc: dict[str, Any] = {"type": draw(kinds | values)}
    if draw(st.booleans()):
        doc["text"] = draw(st.text() | values)
    if draw(st.booleans()):
        doc["count"] = draw(st.integers(-5, MAX_HEART_TAPS + 5) | values)
    doc.update(draw(st.dictionaries(st.text(max_size=5), values, max_size=2)))
    return doc


def _nested(depth: int, kind: str) -> str:
    if kind == "list":
        return "[" * depth + "]" * depth
    if kind == "object":
        return '{"a":' * depth + "1" + "}" * depth
    return '{"type":"chat","text":' + "[" * depth + "]" * depth + "}"  # nested inside a frame


deep = st.builds(_nested, st.integers(1, 2040), st.sampled_from(["list", "object", "frame"]))
huge_numbers = st.builds(
    lambda digits, where: (
        f'{{"type":"heart","count":{digits}}}' if where else f'{{"type":"chat","text":{digits}}}'
    ),
    st.from_regex(r"-?[0-9]{1,4000}(\.[0-9]{1,40})?([eE][-+]?[0-9]{1,5})?", fullmatch=True),
    st.booleans(),
)
odd_json = st.sampled_from(
    [
        '{"type":"heart","count":NaN}',
        '{"type":"heart","count":Infinity}',
        '{"type":"heart","count":-Infinity}',
        '{"type":"heart","count":1e400}',
        '{"type":"heart","count":5.0}',
        '{"type":"heart","count":true}',
        '{"type":"chat","type":"heart"}',
        '{"type":"chat","text":"\\ud800"}',
        '{"type":"chat","text":"a\\u0000b"}',
        "\ufeff{}",
        "",
        " ",
        "null",
        "[]",
        '"chat"',
    ]
)
texts = (
    st.text()
    | st.builds(json.dumps, frame_docs())
    | st.builds(lambda d: json.dumps(d, ensure_ascii=False), frame_docs())
    | st.builds(json.dumps, values)
    | deep
    | huge_numbers
    | odd_json
)


def _expected(text: str) -> Frame | str:
    """The oracle: the frame ``text`` is, or the code it is refused with."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return "bad_json"
    if not isinstance(doc, dict):
        return "bad_json"
    if doc.get("type") == "heart":
        count = doc.get("count", 1)
        ok = type(count) is int and 1 <= count <= MAX_HEART_TAPS
        return Hearts(count) if ok else "bad_count"
    if doc.get("type") != "chat":
        return "bad_type"
    return ChatLine(doc["text"]) if isinstance(doc.get("text"), str) else "bad_text"


@fuzz()
@given(texts)
@example("[" * 1500 + "]" * 1500)  # was a RecursionError (the socket closed with 1011)
@example('{"type":"chat","text":' + "[" * 1500 + "]" * 1500 + "}")
def test_any_text_is_a_frame_or_a_bad_frame(text: str) -> None:
    try:
        frame = parse(text)
    except BadFrame as exc:
        assert exc.code in FRAME_CODES
        assert exc.code == _expected(text)
        event = json.loads(error_event(exc.code, exc.detail))
        assert event == {"type": "error", "code": exc.code, "detail": exc.detail}
        return
    assert frame == _expected(text)


frames = st.builds(ChatLine, st.text()) | st.builds(Hearts, st.integers(1, MAX_HEART_TAPS))


@fuzz()
@given(frames)
def test_frames_round_trip(frame: Frame) -> None:
    assert parse(frame.serialize()) == frame


@fuzz()
@given(st.text() | st.text(st.characters(categories=["Cc", "Cf", "Cs", "Co", "Zs", "Mn", "So"])))
@example("\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f")  # a flag
@example("\ufdfa" * 12)  # one character, eighteen after NFKC
def test_chat_text_is_normalised_or_rejected(text: str) -> None:
    try:
        body = check_text(text)
    except TextRejected as exc:
        assert exc.code in TEXT_CODES
        return
    assert body == unicodedata.normalize("NFKC", body) == body.strip()
    assert 1 <= len(body) <= DEFAULT_MAX_CHARS
    assert check_text(body) == body  # what is stored reads back the same


@fuzz()
@given(st.text(), st.text(min_size=1), st.text())
def test_a_banned_word_is_found_between_spaces(before: str, word: str, after: str) -> None:
    key = fold(word)
    hit = banned_hit(f"{before} {word} {after}", [word])
    if key:
        assert hit == word
    else:  # a word that folds to nothing (spaces only) bans nothing
        assert hit is None
    assert banned_hit(before, []) is None


# -- over a real socket --------------------------------------------------------------------------

wire_frames = texts.filter(lambda t: len(t.encode("utf-8", "surrogatepass")) <= WS_MAX) | st.binary(
    max_size=64
)


class Sockets:
    """One host socket for many examples, reopened before its frame budget (4029) runs out."""

    PER_SOCKET = 40  # examples per socket: 2 frames each, well within a host's burst

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.client: ChatClient | None = None
        self.bid = self.token = ""
        self.used = self.sent = 0

    async def get(self) -> ChatClient:
        if not self.bid:
            b = await self.server.create_broadcast()
            self.bid, self.token = b["id"], b["host_token"]
        if self.client is not None and (self.used >= self.PER_SOCKET or self.client.closed):
            await self.aclose()
        if self.client is None:
            self.client = await ChatClient.open(self.server.base_url, self.bid, self.token)
            self.used = 0
        self.used += 1
        return self.client

    async def aclose(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None


@pytest.fixture
async def sockets(server: RunningServer) -> AsyncIterator[Sockets]:
    s = Sockets(server)
    try:
        yield s
    finally:
        await s.aclose()


ANSWER_CODES = FRAME_CODES | TEXT_CODES | {"bad_utf8", "banned_word"}


@pytest.mark.timeout(1800 if LONG else 60)
@fuzz(0.02, ci_max=40, shared_fixture=True)
@given(frame=wire_frames)
@example(frame="[" * 2000 + "]" * 2000)  # was: the handler raised, the socket closed with 1011
@example(frame=b"\xff\xfe")
@example(frame='{"type":"chat","text":"\\u0000"}')
async def test_socket_answers_every_frame_and_stays_open(
    sockets: Sockets, frame: str | bytes
) -> None:
    c = await sockets.get()
    before = len(c.events)
    await c.conn.send(frame)
    sockets.sent += 1
    marker = f"fuzz-marker-{sockets.sent}"
    await c.send(type="chat", text=marker)  # answered after whatever the frame caused
    await c.wait_for("chat", lambda e: e["text"] == marker)
    assert c.closed is None
    errors = [e for e in c.events[before:] if e["type"] == "error"]
    assert {e["code"] for e in errors} <= ANSWER_CODES
