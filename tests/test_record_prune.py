"""Recordings older than the retention are deleted when a show starts, off the event loop."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

import stream.media
from conftest import make_settings
from stream.deliver.record.recorder import prune_recordings, recording_dir
from stream.media import BroadcastMedia


def _recording(data_dir: Path, bid: str, age_days: float) -> Path:
    root = recording_dir(data_dir, bid)
    root.mkdir(parents=True)
    meta = root / "meta.json"
    meta.write_text("{}")
    then = time.time() - age_days * 86400
    os.utime(meta, (then, then))
    return root


def test_only_recordings_past_the_retention_go(tmp_path: Path) -> None:
    old, recent = _recording(tmp_path, "old", 31), _recording(tmp_path, "recent", 29)
    unmarked = recording_dir(tmp_path, "unmarked")
    unmarked.mkdir()  # no meta yet: a recording just starting
    prune_recordings(tmp_path, 30)
    assert not old.exists() and recent.exists() and unmarked.exists()


async def test_a_show_starting_prunes_in_a_thread(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = _recording(tmp_path, "old", 40)
    settings = make_settings(redis_url, record=True, data_dir=tmp_path, record_retention_days=30)
    media = BroadcastMedia("prune-show", settings)
    threads: list[threading.Thread] = []

    def prune(data_dir: Path, days: int) -> None:
        threads.append(threading.current_thread())
        prune_recordings(data_dir, days)

    monkeypatch.setattr(stream.media, "prune_recordings", prune)
    try:
        media.start()
        await media._watchers.drain(timeout=10)
    finally:
        await media.aclose()
    assert threads and threads[0] is not threading.main_thread() and not old.exists()
