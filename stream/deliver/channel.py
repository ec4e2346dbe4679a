"""The framing of the origin ⇄ worker channel, independent of transport and of message types.

A message is a JSON header and an optional binary payload (an encoded frame):
``!II`` (header length, payload length, big-endian), the header, the payload. The channel is a
Unix socket today; nothing here depends on it, so a TCP stream (a relay between nodes) carries
the same bytes. The typed messages are in :mod:`stream.deliver.messages`.
"""

from __future__ import annotations

import asyncio
import struct

HEAD = struct.Struct("!II")
MAX_HEADER = 1 << 20
MAX_PAYLOAD = 16 << 20


class BadMessage(ValueError):
    """A message that breaks the channel's format: too large, not JSON, unknown or mistyped."""


def pack(header: bytes, payload: bytes = b"") -> bytes:
    """One framed message: its lengths, the (JSON) header, the payload."""
    return HEAD.pack(len(header), len(payload)) + header + payload


def lengths(head: bytes) -> tuple[int, int]:
    """The header and payload lengths a message's first ``HEAD.size`` bytes declare."""
    if len(head) != HEAD.size:
        raise BadMessage(f"truncated message: {len(head)} of the {HEAD.size} length bytes")
    n, m = HEAD.unpack(head)
    if n > MAX_HEADER or m > MAX_PAYLOAD:
        raise BadMessage(f"channel message too large ({n} + {m} bytes)")
    return n, m


def unpack(data: bytes) -> tuple[bytes, bytes]:
    """The header and payload of exactly one framed message held whole in ``data``."""
    n, m = lengths(data[: HEAD.size])
    if len(data) != HEAD.size + n + m:
        raise BadMessage(f"a message of {HEAD.size + n + m} bytes framed in {len(data)}")
    return data[HEAD.size : HEAD.size + n], data[HEAD.size + n :]


async def read_parts(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """The header and payload of the next message; ``asyncio.IncompleteReadError`` at the end of
    the stream (also in the middle of a message), :class:`BadMessage` if it declares too much."""
    n, m = lengths(await reader.readexactly(HEAD.size))
    header = await reader.readexactly(n)
    payload = await reader.readexactly(m) if m else b""
    return header, payload
