"""AMF0, the encoding of RTMP's commands and metadata: numbers, booleans, strings, objects,
ECMA arrays, null (what publishing needs, and what servers answer with)."""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

NUMBER, BOOLEAN, STRING, OBJECT, NULL, UNDEFINED, ECMA_ARRAY, OBJECT_END = 0, 1, 2, 3, 5, 6, 8, 9
STRICT_ARRAY, DATE, LONG_STRING = 10, 11, 12


class EcmaArray(dict[str, Any]):
    """A mapping written as an ECMA array (``onMetaData`` is one), not an object."""


def _key(name: str) -> bytes:
    raw = name.encode()
    return struct.pack(">H", len(raw)) + raw


def _value(v: Any) -> bytes:
    if v is None:
        return bytes([NULL])
    if isinstance(v, bool):
        return bytes([BOOLEAN, int(v)])
    if isinstance(v, int | float):
        return bytes([NUMBER]) + struct.pack(">d", float(v))
    if isinstance(v, str):
        raw = v.encode()
        if len(raw) > 0xFFFF:
            return bytes([LONG_STRING]) + struct.pack(">I", len(raw)) + raw
        return bytes([STRING]) + struct.pack(">H", len(raw)) + raw
    if isinstance(v, Mapping):
        head = bytes([ECMA_ARRAY]) + struct.pack(">I", len(v)) if isinstance(v, EcmaArray) else (
            bytes([OBJECT]))  # fmt: skip
        body = b"".join(_key(str(k)) + _value(x) for k, x in v.items())
        return head + body + b"\x00\x00" + bytes([OBJECT_END])
    if isinstance(v, Sequence):
        return bytes([STRICT_ARRAY]) + struct.pack(">I", len(v)) + b"".join(map(_value, v))
    raise TypeError(f"AMF0 cannot carry {type(v).__name__}")


def encode(*values: Any) -> bytes:
    return b"".join(_value(v) for v in values)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise ValueError("AMF0 value cut short")
        out = self.data[self.at : self.at + n]
        self.at += n
        return out

    def string(self, wide: bool = False) -> str:
        (n,) = struct.unpack(">I" if wide else ">H", self.take(4 if wide else 2))
        return self.take(n).decode("utf-8", "replace")

    def properties(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        while True:
            name = self.string()
            if not name and self.data[self.at : self.at + 1] == bytes([OBJECT_END]):
                self.at += 1
                return out
            out[name] = self.value()

    def value(self) -> Any:
        marker = self.take(1)[0]
        if marker == NUMBER:
            return struct.unpack(">d", self.take(8))[0]
        if marker == BOOLEAN:
            return bool(self.take(1)[0])
        if marker in (STRING, LONG_STRING):
            return self.string(wide=marker == LONG_STRING)
        if marker == OBJECT:
            return self.properties()
        if marker in (NULL, UNDEFINED):
            return None
        if marker == ECMA_ARRAY:
            self.take(4)
            return EcmaArray(self.properties())
        if marker == STRICT_ARRAY:
            (n,) = struct.unpack(">I", self.take(4))
            return [self.value() for _ in range(n)]
        if marker == DATE:
            (ms,) = struct.unpack(">d", self.take(8))
            self.take(2)  # time zone, unused
            return ms
        raise ValueError(f"unsupported AMF0 marker {marker}")


def decode(data: bytes) -> list[Any]:
    """Every value in ``data``, in order."""
    reader = _Reader(data)
    out = []
    while reader.at < len(data):
        out.append(reader.value())
    return out
