"""Where the merchant's numbers live, beside the broadcast (one Cluster slot, like its other keys).

Counted where things happen, in the scripts that already run there: orders, units and GMV (in
total and per product) by the order scripts, chat messages by the chat's send script, the hearts
by their own counter (``jt:{bid}:hearts``), unique viewers in a HyperLogLog when a viewer joins the
chat. The viewers present are the chat's presence hash (``jt:{bid}:presence``: process →
"count|ms"), summed over fresh entries; commerce/stats.py samples it every 10 s into the timeline.

- ``jt:{bid}:stats`` hash: per product ``o:<pid>``, ``u:<pid>``, ``g:<pid>`` (orders, units and
  GMV that are reserved or paid: not cancelled, not expired) and ``po:``, ``pu:``, ``pg:`` (paid);
  the totals are their sums (three writes per order, not six); ``cancelled``, ``expired``,
  ``chat_messages``, ``viewers_peak``.
- ``jt:{bid}:timeline`` hash: 10-second slot → ``{"t", "viewers", "orders", "gmv"}`` (JSON).
- ``jt:{bid}:seen`` HyperLogLog of the user ids that joined.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .keys import key, text


def stats_key(bid: str) -> str:
    return key(bid, "stats")


def timeline_key(bid: str) -> str:
    return key(bid, "timeline")


def seen_key(bid: str) -> str:
    return key(bid, "seen")


def presence_key(bid: str) -> str:
    return key(bid, "presence")


def fresh_presence(raw: Mapping[Any, Any], now_ms: int, fresh_ms: float) -> tuple[int, list[str]]:
    """The viewers reported by processes heard from within ``fresh_ms``, and the stale ones."""
    total = 0
    stale = []
    for proc, value in raw.items():
        n, _, at = text(value).partition("|")
        if now_ms - int(at) <= fresh_ms:
            total += int(n)
        else:
            stale.append(text(proc))
    return total, stale
