"""A finished recording: marked complete and remuxed into one MP4 (``moov`` first), no re-encode.

The segments of each encoder run (an init section and the segments after it) are read by PyAV
as one fragmented MP4 and their packets muxed into ``replay.mp4`` with ``+faststart``; a run
after a restart mid-show follows the one before it, on the same timeline as the VOD playlist
(what the chapters count in). Runs in a thread: a two-hour show takes seconds, not the loop.
"""

from __future__ import annotations

import fractions
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import av

from .recorder import read_meta

MP4 = "replay.mp4"


def duration_s(meta: dict[str, Any]) -> float:
    """The replay's length: its segments back to back (a restart's gap is not in it)."""
    return float(sum(float(s["duration"]) for s in meta.get("segments") or []))


def finish(root: Path) -> dict[str, Any] | None:
    """Mark the recording in ``root`` complete and build its MP4; its meta (None: nothing was
    recorded)."""
    meta = read_meta(root)
    if meta is None:
        return None
    if meta.get("segments"):
        build_mp4(root, meta)
        meta["mp4"] = MP4
    meta["complete"] = True
    meta["duration_s"] = round(duration_s(meta), 3)
    meta["ready_at"] = time.time()
    tmp = root / "meta.json.tmp"
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, root / "meta.json")
    return meta


def _runs(meta: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    runs: list[tuple[str, list[dict[str, Any]]]] = []
    for seg in meta["segments"]:
        if not runs or runs[-1][0] != seg["init"]:
            runs.append((seg["init"], []))
        runs[-1][1].append(seg)
    return runs


def build_mp4(root: Path, meta: dict[str, Any]) -> Path:
    target = root / MP4
    tmp = root / (MP4 + ".tmp")
    with av.open(str(tmp), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        streams: dict[str, Any] = {}
        last_dts: dict[str, int] = {}
        offset_s = 0.0
        for init, segments in _runs(meta):
            with tempfile.NamedTemporaryFile(suffix=".mp4", dir=root) as run:
                run.write((root / init).read_bytes())
                for seg in segments:
                    run.write((root / seg["uri"]).read_bytes())
                run.flush()
                _copy(run.name, out, streams, last_dts, offset_s)
            offset_s += sum(float(s["duration"]) for s in segments)
    os.replace(tmp, target)
    return target


def _copy(path: str, out: Any, streams: dict[str, Any], last_dts: dict[str, int],
          offset_s: float) -> None:  # fmt: skip
    with av.open(path) as src:
        for s in src.streams:
            if s.type not in streams:
                streams[s.type] = out.add_stream_from_template(s)
        first: dict[str, int] = {}
        for packet in src.demux():
            if packet.dts is None or packet.size == 0:
                continue
            kind = packet.stream.type
            tb: fractions.Fraction = packet.stream.time_base or fractions.Fraction(1, 90000)
            first.setdefault(kind, packet.dts)
            shift = round(offset_s / tb) - first[kind]  # this run starts at its wall time
            dts = packet.dts + shift
            if kind in last_dts and dts <= last_dts[kind]:  # never backwards across a restart
                dts = last_dts[kind] + 1
            pts = (packet.pts if packet.pts is not None else packet.dts) + (dts - packet.dts)
            last_dts[kind] = dts
            packet.dts, packet.pts = dts, pts
            packet.stream = streams[kind]
            out.mux(packet)
