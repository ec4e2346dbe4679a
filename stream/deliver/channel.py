"""The local channel between the origin and its fan-out workers: framed messages on a Unix socket.

A message is a JSON header and an optional binary payload (an encoded frame):
``!II`` (header length, payload length), the header, the payload.
"""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

HEAD = struct.Struct("!II")
MAX_HEADER = 1 << 20
MAX_PAYLOAD = 16 << 20


def pack(header: dict[str, Any], payload: bytes = b"") -> bytes:
    raw = json.dumps(header, separators=(",", ":")).encode()
    return HEAD.pack(len(raw), len(payload)) + raw + payload


async def read(reader: asyncio.StreamReader) -> tuple[dict[str, Any], bytes]:
    """The next message; ``asyncio.IncompleteReadError`` at the end of the stream."""
    n, m = HEAD.unpack(await reader.readexactly(HEAD.size))
    if n > MAX_HEADER or m > MAX_PAYLOAD:
        raise ValueError(f"channel message too large ({n} + {m} bytes)")
    header: dict[str, Any] = json.loads(await reader.readexactly(n))
    payload = await reader.readexactly(m) if m else b""
    return header, payload
