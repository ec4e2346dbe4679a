"""The broadcast's event stream as the chat sees it: stream ids, entries and outgoing frames.

Pure: an entry id ``<ms>-<seq>`` as numbers (:func:`id_key`), a stream entry as an event
(:func:`decode_entry`), a batch of events as the one frame every socket gets (:func:`frame_of`).
"""

from __future__ import annotations

import json
from typing import Any

from core.keys import text

_U64 = 1 << 64


def id_key(entry_id: str) -> tuple[int, int]:
    """A stream id ``<ms>-<seq>`` as numbers; ValueError unless Redis would take it (two
    unsigned 64-bit numbers: a bigger one reached Redis and came back as a 503)."""
    ms, _, seq = entry_id.partition("-")
    if not (ms.isascii() and ms.isdigit()) or not (seq == "" or (seq.isascii() and seq.isdigit())):
        raise ValueError(f"not a stream id: {entry_id!r}")
    key = int(ms), int(seq or 0)
    if key[0] >= _U64 or key[1] >= _U64:
        raise ValueError(f"stream id out of range: {entry_id!r}")
    return key


def decode_entry(entry_id: Any, fields: Any) -> dict[str, Any]:
    """The event with its stream id as ``sid`` (resume with the last ``sid`` seen). ``id`` is the
    stream id too, except for ``deleted``, whose ``id`` names the deleted message (API.md)."""
    event: dict[str, Any] = json.loads(fields[b"e"])
    event["sid"] = text(entry_id)
    event.setdefault("id", event["sid"])
    return event


def frame_of(events: list[dict[str, Any]]) -> str:
    public = [{k: v for k, v in e.items() if k != "to"} for e in events]
    doc: Any = public[0] if len(public) == 1 else public
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
