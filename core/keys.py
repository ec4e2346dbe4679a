"""Redis key names and reply decoding shared by every package.

Every key of one broadcast shares the hash tag ``{<bid>}`` so that each Lua script touches one
Cluster slot: ``jt:{<bid>}:<thing>``.
"""

from __future__ import annotations

from typing import Any


def key(bid: str, thing: str) -> str:
    return f"jt:{{{bid}}}:{thing}"


def text(value: Any) -> str:
    """A Redis reply (bytes with our default clients) as str."""
    return value.decode() if isinstance(value, bytes) else str(value)
