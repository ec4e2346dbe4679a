"""Every show kept as a shoppable replay: VOD HLS and one MP4 from the same packets, chapters at
the pins, a restart mid-show kept, a full disk that stops the recording and not the show."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest

from conftest import make_settings
from jangteo.testkit.clients import WhepClient, WhipClient
from jangteo.testkit.server import RunningServer, raw_get, running_server
from stream.ingest import pattern
from stream.ingest.synthetic import PatternTrack, ToneTrack

pytestmark = pytest.mark.timeout(150)


async def publish(server: RunningServer, bid: str, host: str, offset: int = 0) -> WhipClient:
    """The host publishes the stamped pattern (counting from ``offset``) and a tone."""
    pub = WhipClient(server.base_url, bid, host)
    track = PatternTrack(640, 360, 30)
    track.offset = offset
    await pub.publish(track, ToneTrack(440))
    await pub.connected()
    return pub


async def _pin(server: RunningServer, bid: str, host: str, pid: str, price: int) -> float:
    auth = {"Authorization": f"Bearer {host}"}
    product = {"name": f"상품 {pid}", "price": price, "stock": 10}
    r = await server.http.put(f"/api/broadcasts/{bid}/products/{pid}", headers=auth, json=product)
    assert r.status_code in (200, 201), r.text
    at = time.time()
    r = await server.http.post(f"/api/broadcasts/{bid}/pin", headers=auth,
                               json={"product_id": pid})  # fmt: skip
    assert r.status_code == 200, r.text
    return at


async def replay_ready(http: httpx.AsyncClient, bid: str, timeout: float = 10) -> dict[str, Any]:
    """The replay's document once it is ready (it is finished in the background: there is no
    event to await, so its status is polled)."""
    deadline = time.monotonic() + timeout
    while True:
        doc: dict[str, Any] = (await http.get(f"/api/broadcasts/{bid}/replay")).json()
        if doc["status"] == "ready":
            return doc
        assert time.monotonic() < deadline, f"not ready after {timeout}s: {doc}"
        await asyncio.sleep(0.2)  # the replay is finished in the background: poll its status


def _decode(url: str) -> tuple[list[tuple[int, int, int | None, float]], list[str], float]:
    """(width, height, counter, seconds) of every picture, the codecs, seconds of audio."""
    out: list[tuple[int, int, int | None, float]] = []
    audio = 0.0
    with av.open(url, timeout=20) as c:
        codecs = [s.codec_context.name for s in c.streams]
        for frame in c.decode(*c.streams):
            if isinstance(frame, av.AudioFrame):
                audio += frame.samples / frame.sample_rate
            elif isinstance(frame, av.VideoFrame):
                img = np.asarray(frame.to_ndarray(format="bgr24"), np.uint8)
                out.append((frame.width, frame.height, pattern.read_counter(img),
                            float(frame.time or 0.0)))  # fmt: skip
    return out, codecs, audio


async def test_a_show_becomes_a_replay_with_chapters(recording: RunningServer) -> None:
    server = recording
    b = await server.create_broadcast("다시 보기")
    bid, host = b["id"], b["host_token"]
    pub = await publish(server, bid, host)
    live = (await server.http.get(f"/api/broadcasts/{bid}/replay")).json()
    assert live["status"] == "recording" and live["hls"] is None
    started = time.time()
    await asyncio.sleep(3)  # the show goes on for a while: no event marks "three seconds of it"
    pins = [await _pin(server, bid, host, "p1", 19900)]
    await asyncio.sleep(3)
    pins.append(await _pin(server, bid, host, "p2", 7900))
    await asyncio.sleep(3)
    ended_at = time.monotonic()
    auth = {"Authorization": f"Bearer {host}"}
    r = await server.http.post(f"/api/broadcasts/{bid}/end", headers=auth)
    assert r.status_code == 200, r.text
    await pub.aclose()
    doc = await replay_ready(server.http, bid)
    assert time.monotonic() - ended_at <= 10
    assert doc["hls"] == f"/vod/{bid}/index.m3u8" and doc["mp4"] == f"/vod/{bid}/replay.mp4"
    assert 7 <= doc["duration_s"] <= time.time() - started + 1, doc
    # chapters within a second of the pins, on the replay's timeline
    t0 = doc["started_at"] / 1000
    assert [c["product_id"] for c in doc["chapters"]] == ["p1", "p2"]
    for chapter, at in zip(doc["chapters"], pins, strict=True):
        assert abs(chapter["t_s"] - (at - t0)) <= 1.0, (chapter, at - t0)
    assert doc["chapters"][1]["price"] == 7900 and doc["chapters"][0]["name"] == "상품 p1"
    vtt = (await server.http.get(f"/vod/{bid}/chapters.vtt")).text
    assert vtt.startswith("WEBVTT") and "상품 p1 · 19,900원" in vtt
    # the VOD playlist
    text = (await server.http.get(f"/vod/{bid}/index.m3u8")).text
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in text and text.rstrip().endswith("#EXT-X-ENDLIST")
    assert text.count("#EXT-X-DATERANGE:") == 2 and 'X-PRODUCT-ID="p2"' in text
    frames, codecs, audio = await asyncio.to_thread(_decode, f"{server.base_url}{doc['hls']}")
    _check_play(frames, codecs, audio, doc["duration_s"])
    # the MP4: moov first, Range answered 206, the same pictures
    r = await server.http.get(doc["mp4"], headers={"Range": "bytes=0-63"})
    assert r.status_code == 206 and r.headers["content-range"].startswith("bytes 0-63/")
    assert len(r.content) == 64 and r.content[4:8] == b"ftyp"
    head = (await server.http.get(doc["mp4"], headers={"Range": "bytes=0-65535"})).content
    boxes = _top_boxes(head)
    assert boxes[:2] == ["ftyp", "moov"] or boxes[:3] == ["ftyp", "free", "moov"], boxes
    frames, codecs, audio = await asyncio.to_thread(_decode, f"{server.base_url}{doc['mp4']}")
    _check_play(frames, codecs, audio, doc["duration_s"])
    # nothing but the replay's own files, however the path is written (sent as written)
    for raw in (f"/vod/{bid}/../../../../etc/passwd", f"/vod/{bid}/..%2F..%2F..%2Fetc%2Fpasswd",
                f"/vod/{bid}/%2e%2e%2f{bid}%2fmeta.json", f"/vod/{bid}/meta.json",
                f"/vod/{bid}/..%5Cmeta.json", f"/vod/{bid}/replay.mp4%00.m3u8"):  # fmt: skip
        status, answer = await raw_get(server.base_url, raw)
        assert status == 404 and b"root:" not in answer and b'"segments"' not in answer, raw


def _top_boxes(data: bytes) -> list[str]:
    names, i = [], 0
    while i + 8 <= len(data):
        size = int.from_bytes(data[i : i + 4], "big")
        names.append(data[i + 4 : i + 8].decode("latin-1"))
        if size < 8:
            break
        i += size
    return names


def _check_play(
    frames: list[tuple[int, int, int | None, float]], codecs: list[str], audio: float,
    duration: float,
) -> None:  # fmt: skip
    assert codecs == ["h264", "aac"]
    assert {(w, h) for w, h, _, _ in frames} == {(640, 360)}
    assert len(frames) >= 25 * duration * 0.95, (len(frames), duration)
    counters = [n for _, _, n, _ in frames if n is not None]
    assert len(counters) >= 0.95 * len(frames)
    assert counters == sorted(counters), "stamped frames in order"
    assert abs(audio - duration) <= 1.0, (audio, duration)


async def test_a_restart_mid_show_keeps_what_was_recorded(redis_url: str, tmp_path: Path) -> None:
    settings = make_settings(redis_url, record=True, data_dir=tmp_path)
    async with running_server(settings) as first:
        b = await first.create_broadcast("재시작")
        bid, host = b["id"], b["host_token"]
        pub = await publish(first, bid, host)
        await asyncio.sleep(4)  # the first half of the show
        await pub.aclose()
    # the server went away mid-show; a new one carries on with the same data directory
    async with running_server(settings) as second:
        pub = await publish(second, bid, host, offset=10_000)
        await asyncio.sleep(4)
        auth = {"Authorization": f"Bearer {host}"}
        assert (await second.http.post(f"/api/broadcasts/{bid}/end", headers=auth)).is_success
        await pub.aclose()
        doc = await replay_ready(second.http, bid)
        text = (await second.http.get(doc["hls"])).text
        assert text.count("#EXT-X-DISCONTINUITY") == 1 and text.count("#EXT-X-MAP:") == 2
        assert 6.5 <= doc["duration_s"] <= 9.5, doc
        frames, _, _ = await asyncio.to_thread(_decode, f"{second.base_url}{doc['mp4']}")
        counters = [n for _, _, n, _ in frames if n is not None]
        before = [n for n in counters if n < 10_000]
        after = [n for n in counters if n >= 10_000]
        assert len(before) >= 90 and len(after) >= 90, (len(before), len(after))
        assert counters == before + after, "the first part, then the second"
        times = [t for *_, t in frames]
        assert times == sorted(times), "one timeline through the restart"


async def test_a_full_disk_stops_the_recording_not_the_show(redis_url: str, tmp_path: Path) -> None:
    # no disk has this much free
    settings = make_settings(redis_url, record=True, data_dir=tmp_path, record_min_free_mb=10**12)
    async with running_server(settings) as server:
        b = await server.create_broadcast("꽉 찬 디스크")
        bid = b["id"]
        pub = await publish(server, bid, b["host_token"])
        viewer = WhepClient(server.base_url, bid, await server.token(bid, "viewer", "v"))
        try:
            await viewer.play(audio=False)
            await viewer.wait_frames(150, timeout=30)  # five seconds: past the first segment
            doc = (await server.http.get(f"/api/broadcasts/{bid}/replay")).json()
            assert "disk" in doc.get("stopped", ""), doc
            assert not list((tmp_path / "recordings" / bid).glob("seg*.m4s"))
        finally:
            await viewer.aclose()
            await pub.aclose()


async def test_a_show_not_recorded_has_no_replay(server: RunningServer) -> None:
    b = await server.create_broadcast()
    pub = await publish(server, b["id"], b["host_token"])
    await pub.aclose()
    doc = (await server.http.get(f"/api/broadcasts/{b['id']}/replay")).json()
    assert doc == {"status": "none", "duration_s": 0, "hls": None, "mp4": None, "chapters": []}
    r = await server.http.get(f"/vod/{b['id']}/index.m3u8")
    assert r.status_code == 409 and r.json()["code"] == "replay_not_ready"
    assert (await server.http.get("/api/broadcasts/bnope/replay")).status_code == 404
