"""Publish an event into a broadcast's stream (``jt:{bid}:chat``).

Every entry has one field ``e``: the event as compact JSON with a ``type``. The stream id is the
event's id for resume.
"""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis

from .keys import key

STREAM_MAXLEN = 5000


def stream_key(bid: str) -> str:
    return key(bid, "chat")


def encode_event(event: dict[str, Any]) -> str:
    if "type" not in event:
        raise ValueError("an event needs a type")
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


async def publish(redis: Redis, bid: str, event: dict[str, Any]) -> str:
    """Append ``event`` to the broadcast's stream; returns its stream id."""
    entry_id = await redis.xadd(
        stream_key(bid), {"e": encode_event(event)}, maxlen=STREAM_MAXLEN, approximate=True
    )
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
