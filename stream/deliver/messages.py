"""The messages of the origin ⇄ worker channel, typed: one frozen dataclass each, pure to and from
bytes (:func:`encode`, :func:`decode`), read off any stream by :func:`read`.

Origin → worker:

- :class:`Offer` ``offer`` — a viewer's WHEP offer for broadcast ``bid``, answered by ``id``.
- :class:`Delete` ``delete`` — the viewer's DELETE reached the origin: close its peer.
- :class:`Frame` ``frame`` — one encoded frame of ``bid`` (its data is the payload), ~60 a second.
- :class:`End` ``end`` — the broadcast ended, or the worker has no viewer of it left.

Worker → origin:

- :class:`Hello` ``hello`` — the first message: the token the worker was started with.
- :class:`Answer` ``answer`` — the SDP answer to offer ``id`` and the new viewer's session id.
- :class:`Refused` ``error`` — offer ``id`` was refused (unusable SDP, negotiation failed). The
  origin also makes one itself, ``lost=True``, for the offers of a worker that stopped: that one
  never crosses the channel (:func:`encode` refuses it, :func:`decode` never makes it).
- :class:`Keyframe` ``keyframe`` — a viewer of ``bid`` needs a keyframe (it joined, a PLI).
- :class:`Gone` ``gone`` — the viewer's peer failed, closed or never connected.

Wire format (:mod:`stream.deliver.channel`): ``!II`` (header length, payload length), the header,
the payload. The header is compact ASCII JSON (``separators=(",", ":")``), keys in this order::

    {"t":"hello","token":str,"index":int,"pid":int}
    {"t":"offer","id":int,"bid":str,"sdp":str}
    {"t":"answer","id":int,"sid":str,"audio":bool,"video":codec|null,"sdp":str}
    {"t":"error","id":int,"detail":str}
    {"t":"keyframe","bid":str}   {"t":"gone","sid":str}   {"t":"delete","sid":str}
    {"t":"frame","bid":str,"codec":codec,"pts":int,"tb":[num,den],"key":bool,"at":float} + data
    {"t":"end","bid":str}

``codec`` is a :class:`~stream.encode.encoders.Codec` value (``vp8``, ``h264``, ``opus``). Only a
frame has a payload. Reading is strict (integers are not booleans, ``tb`` is two positive
integers, sizes within the channel's limits) and every fault is a :class:`BadMessage`; keys a
message does not know are ignored.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fractions
import functools
import json
from typing import Any, ClassVar, Self, TypeAlias

from stream.encode.encoders import Codec, EncodedFrame

from . import channel
from .channel import BadMessage

__all__ = [
    "Answer",
    "BadMessage",
    "Delete",
    "End",
    "Frame",
    "Gone",
    "Hello",
    "Keyframe",
    "Message",
    "Offer",
    "Refused",
    "ToOrigin",
    "ToWorker",
    "decode",
    "decode_framed",
    "encode",
    "read",
]

Header: TypeAlias = dict[str, Any]

# the bytes json.dumps(header, separators=(",", ":")) makes, without a new encoder per message
_JSON = json.JSONEncoder(separators=(",", ":"), check_circular=False)
_CODECS = {c.value: c for c in Codec}
_JSON_TYPES = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "an array",
    dict: "an object",
    type(None): "null",
}


def _wrong(kind: str, key: str, want: str, value: Any) -> BadMessage:
    got = _JSON_TYPES.get(type(value), type(value).__name__)
    return BadMessage(f"{kind}: {key!r} must be {want}, not {got}")


def _get(h: Header, kind: str, key: str) -> Any:
    try:
        return h[key]
    except KeyError:
        raise BadMessage(f"{kind}: {key!r} is missing") from None


def _int(h: Header, kind: str, key: str) -> int:
    value = _get(h, kind, key)
    if type(value) is not int:  # not a bool either
        raise _wrong(kind, key, "an integer", value)
    return value


def _str(h: Header, kind: str, key: str) -> str:
    value = _get(h, kind, key)
    if type(value) is not str:
        raise _wrong(kind, key, "a string", value)
    return value


def _bool(h: Header, kind: str, key: str) -> bool:
    value = _get(h, kind, key)
    if type(value) is not bool:
        raise _wrong(kind, key, "a boolean", value)
    return value


def _number(h: Header, kind: str, key: str) -> float:
    value = _get(h, kind, key)
    if type(value) is not float and type(value) is not int:
        raise _wrong(kind, key, "a number", value)
    return float(value)


def _as_codec(kind: str, key: str, value: Any) -> Codec:
    if type(value) is not str or value not in _CODECS:
        raise BadMessage(f"{kind}: {key!r} must be one of {', '.join(_CODECS)}, not {value!r:.40}")
    return _CODECS[value]


def _codec(h: Header, kind: str, key: str) -> Codec:
    return _as_codec(kind, key, _get(h, kind, key))


def _codec_or_null(h: Header, kind: str, key: str) -> Codec | None:
    value = _get(h, kind, key)
    return None if value is None else _as_codec(kind, key, value)


@functools.lru_cache(maxsize=64)  # a handful of time bases, one Fraction each (no gcd per frame)
def _fraction(num: int, den: int) -> fractions.Fraction:
    return fractions.Fraction(num, den)


def _time_base(h: Header, kind: str, key: str) -> fractions.Fraction:
    value = _get(h, kind, key)
    if (
        type(value) is not list
        or len(value) != 2
        or type(value[0]) is not int
        or type(value[1]) is not int
        or value[0] <= 0
        or value[1] <= 0
    ):
        raise BadMessage(f"{kind}: {key!r} must be two positive integers, not {value!r:.40}")
    return _fraction(value[0], value[1])


@dataclasses.dataclass(frozen=True, slots=True)
class Hello:
    """Worker → origin, first: the worker's token (proof the origin started it), index, pid."""

    kind: ClassVar[str] = "hello"
    token: str
    index: int
    pid: int

    def header(self) -> Header:
        return {"t": self.kind, "token": self.token, "index": self.index, "pid": self.pid}

    @classmethod
    def parse(cls, h: Header, payload: bytes) -> Self:
        k = cls.kind
        return cls(_str(h, k, "token"), _int(h, k, "index"), _int(h, k, "pid"))


@dataclasses.dataclass(frozen=True, slots=True)
class Offer:
    """Origin → worker: a viewer's SDP offer for broadcast ``bid``; ``id`` names the reply."""

    kind: ClassVar[str] = "offer"
    id: int
    bid: str
    sdp: str

    def header(self) -> Header:
        return {"t": self.kind, "id": self.id, "bid": self.bid, "sdp": self.sdp}

    @classmethod
    def parse(cls, h: Header, payload: bytes) -> Self:
        k = cls.kind
        return cls(_int(h, k, "id"), _str(h, k, "bid"), _str(h, k, "sdp"))


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """Worker → origin: the answer to offer ``id``; the viewer's session ``sid``, whether it
    takes audio, the video codec it settled on (None: no video)."""

    kind: ClassVar[str] = "answer"
    id: int
    sid: str
    audio: bool
    video: Codec | None
    sdp: str

    def header(self) -> Header:
        video = self.video.value if self.video is not None else None
        return {
            "t": self.kind,
            "id": self.id,
            "sid": self.sid,
            "audio": self.audio,
            "video": video,
            "sdp": self.sdp,
        }

    @classmethod
    def parse(cls, h: Header, payload: bytes) -> Self:
        k = cls.kind
        return cls(
            _int(h, k, "id"),
            _str(h, k, "sid"),
            _bool(h, k, "audio"),
            _codec_or_null(h, k, "video"),
            _str(h, k, "sdp"),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Refused:
    """Worker → origin (``error``): offer ``id`` was refused, why. ``lost``: made by the origin
    itself when the worker stopped before answering; never sent."""

    kind: ClassVar[str] = "error"
    id: int
    detail: str
    lost: bool = False

    def header(self) -> Header:
        if self.lost:
            raise ValueError("a refusal for a lost worker is the origin's own; it is never sent")
        return {"t": self.kind, "id": self.id, "detail": self.detail}

    @classmethod
    def parse(cls, h: Header, payload: bytes) -> Self:
        return cls(_int(h, cls.kind, "id"), _str(h, cls.kind, "detail"))


@dataclasses.dataclass(frozen=True, slots=True)
class Keyframe:
    """Worker → origin: a viewer of broadcast ``bid`` needs a keyframe."""

    kind: ClassVar[str] = "keyframe"
    bid: str

    def header(self) -> Header:
        return {"t": self.kind, "bid": self.bid}

    @classmethod
    def parse(cls, h: Header, payload: bytes) -> Self:
        return cls(_str(h, cls.kind, "bid"))


@dataclasses.dataclass(frozen=True, slots=True)
class Gone:
    """Worker → origin: viewer ``sid``'s peer is gone (failed, closed, never connected)."""

    kind: ClassVar[str] = "gone"
    sid: str

    def header(self) -> Header:
        return {"t": self.kind, "sid": self.sid}

    @classmethod
    def parse(cls, h: Header, payload: bytes) -> Self:
        return cls(_str(h, cls.kind, "sid"))


@dataclasses.dataclass(frozen=True, slots=True)
class Delete:
    """Origin → worker: close viewer ``sid`` (its DELETE reached the origin)."""

    kind: ClassVar[str] = "delete"
    sid: str

    def header(self) -> Header:
        return {"t": self.kind, "sid": self.sid}

    @classmethod
    def parse(cls, h: Header, payload: bytes) -> Self:
        return cls(_str(h, cls.kind, "sid"))


@dataclasses.dataclass(frozen=True, slots=True)
class Frame:
    """Origin → worker: one encoded frame of broadcast ``bid``; ``data`` is the payload."""

    kind: ClassVar[str] = "frame"
    bid: str
    codec: Codec
    pts: int
    time_base: fractions.Fraction
    keyframe: bool
    composed_at: float
    data: bytes = dataclasses.field(repr=False)

    @classmethod
    def of(cls, bid: str, codec: Codec, frame: EncodedFrame) -> Self:
        return cls(
            bid, codec, frame.pts, frame.time_base, frame.keyframe, frame.composed_at, frame.data
        )

    def encoded(self) -> EncodedFrame:
        return EncodedFrame(self.data, self.pts, self.time_base, self.keyframe, self.composed_at)

    def header(self) -> Header:
        tb = self.time_base
        return {
            "t": self.kind,
            "bid": self.bid,
            "codec": self.codec.value,
            "pts": self.pts,
            "tb": [tb.numerator, tb.denominator],
            "key": self.keyframe,
            "at": self.composed_at,
        }

    @classmethod
    def parse(cls, h: Header, payload: bytes) -> Self:
        k = cls.kind
        return cls(
            _str(h, k, "bid"),
            _codec(h, k, "codec"),
            _int(h, k, "pts"),
            _time_base(h, k, "tb"),
            _bool(h, k, "key"),
            _number(h, k, "at"),
            payload,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class End:
    """Origin → worker: broadcast ``bid`` ended, or the worker has no viewer of it left."""

    kind: ClassVar[str] = "end"
    bid: str

    def header(self) -> Header:
        return {"t": self.kind, "bid": self.bid}

    @classmethod
    def parse(cls, h: Header, payload: bytes) -> Self:
        return cls(_str(h, cls.kind, "bid"))


ToWorker: TypeAlias = Offer | Delete | Frame | End
ToOrigin: TypeAlias = Hello | Answer | Refused | Keyframe | Gone
Message: TypeAlias = ToWorker | ToOrigin

_TYPES: dict[str, type[Message]] = {
    m.kind: m for m in (Hello, Offer, Answer, Refused, Keyframe, Gone, Delete, Frame, End)
}


def encode(msg: Message) -> bytes:
    """The framed bytes of ``msg``, as they go on the channel."""
    header = _JSON.encode(msg.header()).encode()
    return channel.pack(header, msg.data if isinstance(msg, Frame) else b"")


def decode(header: bytes, payload: bytes = b"") -> Message:
    """The message of a header and payload (the framing taken off); :class:`BadMessage` if they
    are not one."""
    if len(header) > channel.MAX_HEADER or len(payload) > channel.MAX_PAYLOAD:
        raise BadMessage(f"channel message too large ({len(header)} + {len(payload)} bytes)")
    try:
        h = json.loads(header.decode())
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError too
        raise BadMessage(f"the header is not JSON: {exc}") from None
    if type(h) is not dict:
        raise BadMessage(f"the header must be a JSON object, not {_JSON_TYPES.get(type(h))}")
    kind = h.get("t")
    cls = _TYPES.get(kind) if type(kind) is str else None
    if cls is None:
        raise BadMessage(f"unknown message type {kind!r:.40}")
    if payload and cls is not Frame:
        raise BadMessage(f"a {kind} message takes no payload ({len(payload)} bytes)")
    return cls.parse(h, payload)


def decode_framed(data: bytes) -> Message:
    """The message held whole in ``data``, framing and all (what :func:`encode` makes)."""
    return decode(*channel.unpack(data))


async def read(reader: asyncio.StreamReader) -> Message:
    """The next message on a stream: ``asyncio.IncompleteReadError`` at its end (also in the
    middle of a message), :class:`BadMessage` if it is not one."""
    return decode(*await channel.read_parts(reader))
