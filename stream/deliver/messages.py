"""The messages of the origin ⇄ worker channel, typed: one frozen dataclass each, pure to and from
bytes (:func:`encode`, :func:`decode`), read off any stream by :func:`read`.

Origin → worker:

- :class:`Offer` ``offer`` — a viewer's WHEP offer for broadcast ``bid``, answered by ``id``.
- :class:`Delete` ``delete`` — the viewer's DELETE reached the origin: close its peer.
- :class:`Frame` ``frame`` — one encoded frame of ``bid`` at a rung (its data is the payload).
- :class:`End` ``end`` — the broadcast ended, or the worker has no viewer of it left.

Worker → origin:

- :class:`Hello` ``hello`` — the first message: the token the worker was started with.
- :class:`Answer` ``answer`` — the SDP answer to offer ``id`` and the new viewer's session id.
- :class:`Refused` ``error`` — offer ``id`` was refused (unusable SDP, negotiation failed). The
  origin also makes one itself, ``lost=True``, for the offers of a worker that stopped: that one
  never crosses the channel (:func:`encode` refuses it, :func:`decode` never makes it).
- :class:`Keyframe` ``keyframe`` — a viewer of ``bid`` needs a keyframe of a rung (it joined or
  moves there, a PLI).
- :class:`Want` ``want`` — start (or, ``want: false``, stop) sending a rung of ``bid``.
- :class:`Gone` ``gone`` — the viewer's peer failed, closed or never connected.

Between nodes (stream/deliver/relay.py) the same channel carries :class:`Want`, :class:`Keyframe`
(edge → origin), :class:`Frame`, :class:`End` (origin → edge), after :class:`Auth` both ways:
``auth`` — a node's id, a fresh nonce and its proof of the shared secret over both nonces.

Wire format (:mod:`stream.deliver.channel`): ``!II`` (header length, payload length), the header,
the payload. The header is compact ASCII JSON (``separators=(",", ":")``), keys in this order::

    {"t":"hello","token":str,"index":int,"pid":int}
    {"t":"offer","id":int,"bid":str,"sdp":str,"ladder":[[name,w,h,bitrate],…],"rung":str,
     "abr":bool}
    {"t":"answer","id":int,"sid":str,"audio":bool,"video":codec|null,"sdp":str}
    {"t":"error","id":int,"detail":str}
    {"t":"keyframe","bid":str,"codec":codec,"rung":str}
    {"t":"want","bid":str,"codec":codec,"rung":str,"want":bool}
    {"t":"gone","sid":str}   {"t":"delete","sid":str}
    {"t":"frame","bid":str,"codec":codec,"rung":str,"pts":int,"tb":[num,den],"key":bool,
     "at":float} + data
    {"t":"end","bid":str}
    {"t":"auth","node":str,"nonce":str,"proof":str}

``codec`` is a :class:`~stream.encode.encoders.Codec` value (``vp8``, ``h264``, ``opus``). Only a
frame has a payload. Reading is strict (integers are not booleans, ``tb`` is two positive
integers, sizes within the channel's limits) and every fault is a :class:`BadMessage`; keys a
message does not know are ignored.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fractions
import json
from typing import ClassVar, Self, TypeAlias

from stream.encode.encoders import Codec, EncodedFrame
from stream.encode.ladder import Rung

from . import channel
from .channel import BadMessage
from .fields import (
    JSON_TYPES,
    Header,
    bool_,
    codec,
    codec_or_null,
    int_,
    ladder,
    number,
    str_,
    time_base,
)

__all__ = [
    "Answer",
    "Auth",
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
    "Want",
    "decode",
    "decode_framed",
    "encode",
    "read",
]

# the bytes json.dumps(header, separators=(",", ":")) makes, without a new encoder per message
_JSON = json.JSONEncoder(separators=(",", ":"), check_circular=False)


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
        return cls(str_(h, k, "token"), int_(h, k, "index"), int_(h, k, "pid"))


@dataclasses.dataclass(frozen=True, slots=True)
class Offer:
    """Origin → worker: a viewer's SDP offer for broadcast ``bid``; ``id`` names the reply. The
    broadcast's ``ladder``, the rung the viewer pinned (``rung``, "" for none) and whether its
    rung follows its link (``abr``)."""

    kind: ClassVar[str] = "offer"
    id: int
    bid: str
    sdp: str
    ladder: tuple[Rung, ...]
    rung: str = ""
    abr: bool = False

    def header(self) -> Header:
        return {"t": self.kind, "id": self.id, "bid": self.bid, "sdp": self.sdp,
                "ladder": [[r.name, r.width, r.height, r.bitrate] for r in self.ladder],
                "rung": self.rung, "abr": self.abr}  # fmt: skip

    @classmethod
    def parse(cls, h: Header, payload: bytes) -> Self:
        k = cls.kind
        return cls(int_(h, k, "id"), str_(h, k, "bid"), str_(h, k, "sdp"), ladder(h, k, "ladder"),
                   str_(h, k, "rung"), bool_(h, k, "abr"))  # fmt: skip


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
            int_(h, k, "id"),
            str_(h, k, "sid"),
            bool_(h, k, "audio"),
            codec_or_null(h, k, "video"),
            str_(h, k, "sdp"),
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
        return cls(int_(h, cls.kind, "id"), str_(h, cls.kind, "detail"))


@dataclasses.dataclass(frozen=True, slots=True)
class Keyframe:
    """Worker → origin: a viewer of broadcast ``bid`` needs a keyframe of ``codec`` at ``rung``."""

    kind: ClassVar[str] = "keyframe"
    bid: str
    codec: Codec
    rung: str

    def header(self) -> Header:
        return {"t": self.kind, "bid": self.bid, "codec": self.codec.value, "rung": self.rung}

    @classmethod
    def parse(cls, h: Header, payload: bytes) -> Self:
        k = cls.kind
        return cls(str_(h, k, "bid"), codec(h, k, "codec"), str_(h, k, "rung"))


@dataclasses.dataclass(frozen=True, slots=True)
class Want:
    """Worker → origin: send this worker the frames of ``bid``'s ``codec`` at ``rung``
    (``want: false``: stop; a worker takes only the rungs its viewers are on or moving to)."""

    kind: ClassVar[str] = "want"
    bid: str
    codec: Codec
    rung: str
    want: bool = True

    def header(self) -> Header:
        return {"t": self.kind, "bid": self.bid, "codec": self.codec.value, "rung": self.rung,
                "want": self.want}  # fmt: skip

    @classmethod
    def parse(cls, h: Header, payload: bytes) -> Self:
        k = cls.kind
        return cls(str_(h, k, "bid"), codec(h, k, "codec"), str_(h, k, "rung"),
                   bool_(h, k, "want"))  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class Gone:
    """Worker → origin: viewer ``sid``'s peer is gone (failed, closed, never connected)."""

    kind: ClassVar[str] = "gone"
    sid: str

    def header(self) -> Header:
        return {"t": self.kind, "sid": self.sid}

    @classmethod
    def parse(cls, h: Header, payload: bytes) -> Self:
        return cls(str_(h, cls.kind, "sid"))


@dataclasses.dataclass(frozen=True, slots=True)
class Delete:
    """Origin → worker: close viewer ``sid`` (its DELETE reached the origin)."""

    kind: ClassVar[str] = "delete"
    sid: str

    def header(self) -> Header:
        return {"t": self.kind, "sid": self.sid}

    @classmethod
    def parse(cls, h: Header, payload: bytes) -> Self:
        return cls(str_(h, cls.kind, "sid"))


@dataclasses.dataclass(frozen=True, slots=True)
class Frame:
    """Origin → worker: one encoded frame of broadcast ``bid`` at ``rung`` ("" for audio);
    ``data`` is the payload."""

    kind: ClassVar[str] = "frame"
    bid: str
    codec: Codec
    rung: str
    pts: int
    time_base: fractions.Fraction
    keyframe: bool
    composed_at: float
    data: bytes = dataclasses.field(repr=False)

    @classmethod
    def of(cls, bid: str, codec: Codec, rung: str, frame: EncodedFrame) -> Self:
        return cls(bid, codec, rung, frame.pts, frame.time_base, frame.keyframe,
                   frame.composed_at, frame.data)  # fmt: skip

    def encoded(self) -> EncodedFrame:
        return EncodedFrame(self.data, self.pts, self.time_base, self.keyframe, self.composed_at)

    def header(self) -> Header:
        tb = self.time_base
        return {
            "t": self.kind,
            "bid": self.bid,
            "codec": self.codec.value,
            "rung": self.rung,
            "pts": self.pts,
            "tb": [tb.numerator, tb.denominator],
            "key": self.keyframe,
            "at": self.composed_at,
        }

    @classmethod
    def parse(cls, h: Header, payload: bytes) -> Self:
        k = cls.kind
        return cls(
            str_(h, k, "bid"),
            codec(h, k, "codec"),
            str_(h, k, "rung"),
            int_(h, k, "pts"),
            time_base(h, k, "tb"),
            bool_(h, k, "key"),
            number(h, k, "at"),
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
        return cls(str_(h, cls.kind, "bid"))


@dataclasses.dataclass(frozen=True, slots=True)
class Auth:
    """Node ⇄ node, first on a relay: who it is, its nonce, its proof ("" before it has the
    other side's nonce)."""

    kind: ClassVar[str] = "auth"
    node: str
    nonce: str
    proof: str = ""

    def header(self) -> Header:
        return {"t": self.kind, "node": self.node, "nonce": self.nonce, "proof": self.proof}

    @classmethod
    def parse(cls, h: Header, payload: bytes) -> Self:
        k = cls.kind
        return cls(str_(h, k, "node"), str_(h, k, "nonce"), str_(h, k, "proof"))


ToWorker: TypeAlias = Offer | Delete | Frame | End
ToOrigin: TypeAlias = Hello | Answer | Refused | Keyframe | Want | Gone
Message: TypeAlias = ToWorker | ToOrigin | Auth

_TYPES: dict[str, type[Message]] = {
    m.kind: m
    for m in (Hello, Offer, Answer, Refused, Keyframe, Want, Gone, Delete, Frame, End, Auth)
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
        raise BadMessage(f"the header must be a JSON object, not {JSON_TYPES.get(type(h))}")
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
