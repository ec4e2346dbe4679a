"""Every show kept as a replay, from the packets it already has (no decode, no re-encode).

:class:`Recorder` takes the top rung's H.264 and the AAC mix while the broadcast's media runs
and writes fMP4 segments of about ``SEGMENT_S`` into ``<data dir>/recordings/<bid>/`` (an init
section per encoder run, ``seg<N>.m4s``, and ``meta.json`` listing them with their wall-clock
start). A server restarted mid-show finds the meta and carries on after the last segment (a new
init section: a discontinuity, not a lost show). When the show ends, :func:`finish` marks it
complete and remuxes the segments into one MP4 (``moov`` first) beside them.

A recording never costs the live show: files are written off the event loop, and when the disk
is short (``min_free_mb``) or the recording is over ``max_mb`` it stops, says so in its meta
(``stopped``) and logs an error; the broadcast goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from core.tasks import TaskSet
from stream.encode.bus import BusSource, FrameBus
from stream.encode.encoders import Codec, EncodedFrame

from ..hls.segmenter import KeyframeCadence, Part, Segment, Segmenter

log = logging.getLogger(__name__)

SEGMENT_S = 4.0


@dataclasses.dataclass(frozen=True)
class Limits:
    min_free_mb: int = 500
    max_mb: int = 20_000


def recording_dir(data_dir: Path, bid: str) -> Path:
    return data_dir / "recordings" / bid


def read_meta(root: Path) -> dict[str, Any] | None:
    try:
        doc: dict[str, Any] = json.loads((root / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    return doc


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class Recorder:
    def __init__(self, source: BusSource, bid: str, data_dir: Path, limits: Limits) -> None:
        self.source = source
        self.bid = bid
        self.root = recording_dir(data_dir, bid)
        self.limits = limits
        self.segmenter = Segmenter(part_s=SEGMENT_S, segment_s=SEGMENT_S,
                                   on_part=self._on_part)  # fmt: skip
        self.cadence = KeyframeCadence(self.segmenter)
        self.meta: dict[str, Any] = {}
        self.stopped: str | None = None  # why the recording stopped early, if it did
        self._bus: FrameBus | None = None
        self._aac: FrameBus | None = None
        self._audio = _Audio(self.segmenter)
        self._tasks = TaskSet()
        self._write_lock = asyncio.Lock()
        self._init_base = 0  # init sections of earlier runs (a restart mid-show)
        self._bytes = 0

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        earlier = read_meta(self.root)
        if earlier and not earlier.get("complete"):  # the show goes on after a restart
            self.meta = earlier
            self.segmenter.next_msn = len(earlier["segments"])
            self._init_base = int(earlier.get("inits", 0))
            self._bytes = int(earlier.get("bytes", 0))
        else:
            self.meta = {"bid": self.bid, "started_at": time.time(), "segments": [], "inits": 0,
                         "bytes": 0, "complete": False}  # fmt: skip
        if earlier and earlier.get("complete"):  # the same id live again: a new recording
            for old in self.root.glob("*"):
                old.unlink(missing_ok=True)
        self._save_meta()  # "recording" from the first moment
        self._bus = self.source.bus(Codec.H264, self.source.ladder[0].name)
        self._bus.add(self)
        self._aac = self.source.bus(Codec.AAC)
        self._aac.add(self._audio)

    # the FrameBus subscriber interface (top rung, H.264)
    def offer(self, frame: EncodedFrame) -> None:
        if self.stopped:
            return
        self.segmenter.feed_video(frame)
        if self.cadence.due() and self._bus is not None:
            self._bus.request_keyframe()

    def close(self) -> None:
        pass  # the bus closed (the media is closing): :meth:`aclose` writes what is left

    def _on_part(self, segment: Segment, part: Part) -> None:
        # one part per segment here: the segment is whole once its part is
        inits = self.segmenter.inits
        init_name = f"init{self._init_base + segment.init}.mp4"
        entry = {"uri": f"seg{segment.msn}.m4s", "duration": round(part.duration, 3),
                 "init": init_name, "started_at": segment.started_at}  # fmt: skip
        self._tasks.spawn(self._write(entry, part.data, inits[segment.init]))

    async def _write(self, entry: dict[str, Any], data: bytes, init: bytes) -> None:
        async with self._write_lock:  # in order: the meta lists what is on disk
            if self.stopped:
                return
            why = await asyncio.to_thread(self._short_of_room, len(data) + len(init))
            if why:
                self._stop(why)
                return
            try:
                await asyncio.to_thread(self._write_files, entry, data, init)
            except OSError as exc:
                self._stop(f"cannot write the recording: {exc}")

    def _short_of_room(self, size: int) -> str | None:
        free_mb = shutil.disk_usage(self.root).free / 1e6
        if free_mb - size / 1e6 < self.limits.min_free_mb:
            keep = self.limits.min_free_mb
            return f"the disk has {free_mb:.0f} MB free (the recording leaves {keep} MB)"
        if (self._bytes + size) / 1e6 > self.limits.max_mb:
            return f"the recording reached its limit of {self.limits.max_mb} MB"
        return None

    def _write_files(self, entry: dict[str, Any], data: bytes, init: bytes) -> None:
        init_path = self.root / entry["init"]
        if not init_path.exists():
            _write_atomic(init_path, init)
            self.meta["inits"] = max(int(self.meta.get("inits", 0)), int(entry["init"][4:-4]) + 1)
        _write_atomic(self.root / entry["uri"], data)
        self._bytes += len(data)
        self.meta["segments"].append(entry)
        self.meta["bytes"] = self._bytes
        self._save_meta()

    def _save_meta(self) -> None:
        _write_atomic(self.root / "meta.json", json.dumps(self.meta).encode())

    def _stop(self, why: str) -> None:
        self.stopped = why
        self.meta["stopped"] = why
        log.error("recording of %s stopped: %s (the show goes on)", self.bid, why)
        with contextlib.suppress(OSError):
            self._save_meta()

    async def aclose(self) -> None:
        """Write what is left (the show may go on after a restart: nothing is finished here)."""
        if self._bus is not None:
            self._bus.discard(self)
        if self._aac is not None:
            self._aac.discard(self._audio)
        if not self.stopped:
            self.segmenter.flush()
        await self._tasks.drain(timeout=30)


class _Audio:
    """The AAC bus's subscriber: the mix into the recording's segmenter."""

    def __init__(self, segmenter: Segmenter) -> None:
        self.segmenter = segmenter

    def offer(self, frame: EncodedFrame) -> None:
        self.segmenter.feed_audio(frame)

    def close(self) -> None:
        pass


def prune_recordings(data_dir: Path, retention_days: int) -> None:
    """Delete recordings last written more than ``retention_days`` ago."""
    base = data_dir / "recordings"
    if not base.is_dir():
        return
    cutoff = time.time() - retention_days * 86400
    for root in base.iterdir():
        meta = root / "meta.json"
        try:
            if meta.stat().st_mtime < cutoff:
                shutil.rmtree(root)
        except OSError:
            continue
