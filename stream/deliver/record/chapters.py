"""A replay's chapters from the show's pins (pure): each pin at its moment on the replay's
timeline -- the segments back to back, so a restart's gap does not shift what follows -- as
JSON and as WebVTT chapters (the playlists carry them as EXT-X-DATERANGE: hls/playlist.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.pins import Pin


def moment(meta: dict[str, Any], epoch: float) -> float | None:
    """Seconds into the replay of the wall-clock moment ``epoch`` (None: after it ended)."""
    t0 = 0.0
    for seg in meta.get("segments") or []:
        start, length = float(seg["started_at"]), float(seg["duration"])
        if epoch < start:  # before the recording, or in a gap: where the next picture is
            return t0
        if epoch < start + length:
            return t0 + epoch - start
        t0 += length
    return None


def chapters(meta: dict[str, Any], pins: Sequence[Pin]) -> list[dict[str, Any]]:
    out = []
    for pin in pins:
        t = moment(meta, pin.at_ms / 1000)
        if t is not None:
            out.append({"t_s": round(t, 3), "product_id": pin.product_id, "name": pin.name,
                        "price": pin.price, "image": pin.image, "at": pin.at_ms})  # fmt: skip
    return out


def _stamp(t: float) -> str:
    ms = round(t * 1000)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def webvtt(chapters_: Sequence[dict[str, Any]], duration: float) -> str:
    lines = ["WEBVTT", ""]
    for i, c in enumerate(chapters_):
        end = chapters_[i + 1]["t_s"] if i + 1 < len(chapters_) else duration
        if end <= c["t_s"]:
            continue
        title = f"{c['name']} · {c['price']:,}원".replace("\n", " ").replace("-->", "→")
        lines += [str(i + 1), f"{_stamp(c['t_s'])} --> {_stamp(end)}", title, ""]
    return "\n".join(lines)
