"""The chat socket's client frames, typed: parsed whole before anything touches Redis.

Client → server frames are JSON objects with a ``type``: ``{"type":"chat","text":…}`` or
``{"type":"heart","count":n}`` (count 1..MAX_HEART_TAPS, default 1). :func:`parse` turns the
frame's text into a :class:`ChatLine` or :class:`Hearts`, or raises :class:`BadFrame` with the
error code the client gets back (``bad_json``, ``bad_type``, ``bad_text``, ``bad_count``).
:func:`error_event` is the ``error`` event the socket answers with.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

MAX_HEART_TAPS = 50


class BadFrame(ValueError):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class ChatLine:
    text: str

    def serialize(self) -> str:
        return json.dumps({"type": "chat", "text": self.text}, ensure_ascii=False)


@dataclasses.dataclass(frozen=True)
class Hearts:
    count: int = 1

    def serialize(self) -> str:
        return json.dumps({"type": "heart", "count": self.count})


Frame = ChatLine | Hearts


def parse(text: str) -> Frame:
    try:
        msg = json.loads(text)
    except (ValueError, RecursionError):  # nesting a few thousand deep fits in one frame
        raise BadFrame("bad_json", "send a JSON object") from None
    if not isinstance(msg, dict):
        raise BadFrame("bad_json", "send a JSON object")
    kind = msg.get("type")
    if kind == "heart":
        count = msg.get("count", 1)
        if (
            not isinstance(count, int)
            or isinstance(count, bool)
            or not 1 <= count <= MAX_HEART_TAPS
        ):
            raise BadFrame("bad_count", f"count must be 1..{MAX_HEART_TAPS}")
        return Hearts(count)
    if kind != "chat":
        raise BadFrame("bad_type", "type must be chat or heart")
    raw = msg.get("text")
    if not isinstance(raw, str):
        raise BadFrame("bad_text", "text must be a string")
    return ChatLine(raw)


def error_event(code: str, detail: str, **extra: Any) -> str:
    return json.dumps(
        {"type": "error", "code": code, "detail": detail, **extra}, ensure_ascii=False
    )
