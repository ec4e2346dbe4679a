"""Low-Latency HLS from the encoded packets: playlists, blocking reload, PyAV reading what a
player reads, and bad requests answered 4xx."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator

import av
import numpy as np
import pytest

from jangteo.testkit.clients import WhipClient
from jangteo.testkit.server import RunningServer
from stream.ingest import pattern
from stream.ingest.synthetic import PatternTrack, ToneTrack

from .helpers import runs_on

pytestmark = pytest.mark.timeout(120)

RUNGS = {"360p": (640, 360), "180p": (320, 180)}


@pytest.fixture
async def live(server: RunningServer) -> AsyncIterator[tuple[RunningServer, str]]:
    b = await server.create_broadcast("시장 화면")
    pub = WhipClient(server.base_url, b["id"], b["host_token"])
    await pub.publish(PatternTrack(640, 360, 30), ToneTrack(440))
    await pub.connected()
    try:
        yield server, b["id"]
    finally:
        await pub.aclose()


async def test_the_multivariant_playlist_lists_every_rung(live: tuple[RunningServer, str]) -> None:
    server, bid = live
    r = await server.http.get(f"/hls/{bid}/index.m3u8", timeout=20)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/vnd.apple.mpegurl")
    assert r.headers["access-control-allow-origin"] == "*"
    assert "max-age" in r.headers["cache-control"]
    variants = re.findall(r"#EXT-X-STREAM-INF:(.*)\n(.*)", r.text)
    assert [uri for _, uri in variants] == ["360p/index.m3u8", "180p/index.m3u8"]
    for (attrs, _uri), (w, h) in zip(variants, RUNGS.values(), strict=True):
        assert f"RESOLUTION={w}x{h}" in attrs, attrs
        assert re.search(r'CODECS="avc1\.42[0-9a-f]{4},mp4a\.40\.2"', attrs), attrs
        assert re.search(r"BANDWIDTH=\d+", attrs)


async def test_a_media_playlist_is_low_latency(live: tuple[RunningServer, str]) -> None:
    server, bid = live
    await server.http.get(f"/hls/{bid}/index.m3u8", timeout=20)
    text = await _playlist_with_segments(server, bid, "360p", 2)
    assert "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=" in text
    assert re.search(r"#EXT-X-PART-INF:PART-TARGET=0\.3\d\d", text)
    assert '#EXT-X-MAP:URI="init0.mp4"' in text
    assert "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=" in text
    assert "#EXT-X-PROGRAM-DATE-TIME:" in text
    parts = re.findall(r'#EXT-X-PART:DURATION=([\d.]+),URI="([^"]+)"', text)
    assert parts and all(0 < float(d) <= 0.34 for d, _ in parts)
    assert ",INDEPENDENT=YES" in text  # each segment's first part starts on a keyframe
    durations = [float(d) for d in re.findall(r"#EXTINF:([\d.]+),", text)]
    target = int(re.search(r"#EXT-X-TARGETDURATION:(\d+)", text).group(1))  # type: ignore[union-attr]
    assert durations and all(1.4 <= d <= target for d in durations), durations
    # media from memory: immutable for a CDN
    seg = re.findall(r"^(seg\d+\.m4s)$", text, re.M)[-1]
    for name in ("init0.mp4", seg, parts[0][1]):
        r = await server.http.get(f"/hls/{bid}/360p/{name}")
        assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
        assert "immutable" in r.headers["cache-control"]
        assert len(r.content) > 100


async def _playlist_with_segments(server: RunningServer, bid: str, rung: str, segments: int) -> str:
    """The playlist once it holds ``segments`` whole segments (by blocking reloads)."""
    for msn in range(segments + 1):
        r = await server.http.get(f"/hls/{bid}/{rung}/index.m3u8?_HLS_msn={msn}", timeout=20)
        assert r.status_code == 200, r.text
    return str(r.text)


async def test_a_blocking_reload_is_held_until_the_part_exists(
    live: tuple[RunningServer, str],
) -> None:
    server, bid = live
    await server.http.get(f"/hls/{bid}/index.m3u8", timeout=20)
    text = (await server.http.get(f"/hls/{bid}/180p/index.m3u8")).text
    hint = re.search(r'PRELOAD-HINT:TYPE=PART,URI="part(\d+)\.(\d+)\.m4s"', text)
    assert hint is not None
    msn, part = int(hint.group(1)), int(hint.group(2))
    assert not re.search(rf'#EXT-X-PART:[^\n]*URI="part{msn}\.{part}\.m4s"', text)
    t0 = time.monotonic()
    r = await server.http.get(f"/hls/{bid}/180p/index.m3u8?_HLS_msn={msn}&_HLS_part={part}")
    held = time.monotonic() - t0
    assert r.status_code == 200
    assert re.search(rf'#EXT-X-PART:[^\n]*URI="part{msn}\.{part}\.m4s"', r.text)
    assert held < 1.0, f"held {held:.2f}s for one part (~0.33 s)"
    # the preload hint itself is answered when the part is made
    nxt = re.search(r'PRELOAD-HINT:TYPE=PART,URI="(part\d+\.\d+\.m4s)"', r.text)
    assert nxt is not None
    got = await server.http.get(f"/hls/{bid}/180p/{nxt.group(1)}")
    assert got.status_code == 200 and got.content[4:8] == b"moof"


Picture = tuple[int, int, int | None, float]  # width, height, counter, time (s)


def _read(url: str, frames: int) -> tuple[list[Picture], list[str], float]:
    """What a player gets from ``url``: (width, height, counter, time) of ``frames`` pictures,
    the streams' codecs, seconds of audio decoded alongside."""
    out: list[Picture] = []
    audio = 0.0
    with av.open(url, timeout=20) as c:
        codecs = [s.codec_context.name for s in c.streams]
        for packet in c.demux():
            for frame in packet.decode():
                if isinstance(frame, av.AudioFrame):
                    audio += frame.samples / frame.sample_rate
                elif isinstance(frame, av.VideoFrame):
                    img = np.asarray(frame.to_ndarray(format="bgr24"), np.uint8)
                    n = pattern.read_counter(img)
                    out.append((frame.width, frame.height, n, float(frame.time or 0)))
            if len(out) >= frames:
                break
    return out, codecs, audio


@pytest.mark.parametrize("rung", list(RUNGS))
async def test_pyav_plays_each_rendition(live: tuple[RunningServer, str], rung: str) -> None:
    server, bid = live
    await server.http.get(f"/hls/{bid}/index.m3u8", timeout=20)
    await _playlist_with_segments(server, bid, rung, 3)
    url = f"{server.base_url}/hls/{bid}/{rung}/index.m3u8"
    frames, codecs, audio = await asyncio.to_thread(_read, url, 120)
    assert codecs == ["h264", "aac"]
    assert {(w, h) for w, h, _, _ in frames} == {RUNGS[rung]}
    # in order, nothing missing: a lost or repeated part or segment would jump by its ten frames
    # or go back
    runs_on([(t, n) for _, _, n, t in frames])
    assert audio >= 0.9 * len(frames) / 30  # the audio of the same stretch


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/hls/{bid}/1080p/index.m3u8", 404, "rendition_not_found"),
        ("/hls/{bid}/360p/index.m3u8?_HLS_msn=abc", 400, "bad_hls_query"),
        ("/hls/{bid}/360p/index.m3u8?_HLS_msn=-1", 400, "bad_hls_query"),
        ("/hls/{bid}/360p/index.m3u8?_HLS_part=1", 400, "bad_hls_query"),
        ("/hls/{bid}/360p/index.m3u8?_HLS_msn=999999", 400, "bad_hls_query"),
        ("/hls/{bid}/360p/seg999999.m4s", 404, "not_found"),
        ("/hls/{bid}/360p/evil.m4s", 404, "not_found"),
        ("/hls/{bid}/360p/init7.mp4", 404, "not_found"),
        ("/hls/bnope/index.m3u8", 404, "not_found"),
    ],
)
async def test_bad_requests_are_4xx(
    live: tuple[RunningServer, str], path: str, status: int, code: str
) -> None:
    server, bid = live
    await server.http.get(f"/hls/{bid}/index.m3u8", timeout=20)
    r = await server.http.get(path.format(bid=bid))
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == code


async def test_hls_of_a_broadcast_not_live_is_409(server: RunningServer) -> None:
    b = await server.create_broadcast()
    r = await server.http.get(f"/hls/{b['id']}/index.m3u8")
    assert r.status_code == 409 and r.json()["code"] == "not_live"


async def test_media_tokens_keep_hls_to_the_broadcasts_own(redis_url: str) -> None:
    from conftest import make_settings
    from jangteo.testkit.server import running_server

    async with running_server(make_settings(redis_url, media_tokens=True)) as server:
        b = await server.create_broadcast()
        bid = b["id"]
        pub = WhipClient(server.base_url, bid, b["host_token"])
        await pub.publish(PatternTrack(640, 360, 30), ToneTrack(440))
        await pub.connected()
        try:
            r = await server.http.get(f"/hls/{bid}/index.m3u8")
            assert r.status_code == 401 and r.json()["code"] == "no_token"
            token = await server.token(bid, "viewer", "화면")
            r = await server.http.get(f"/hls/{bid}/index.m3u8", params={"token": token}, timeout=20)
            assert r.status_code == 200
            uri = next(line for line in r.text.splitlines() if line.endswith(token))
            text = (await server.http.get(f"/hls/{bid}/{uri}")).text
            init = re.search(r'#EXT-X-MAP:URI="([^"]+)"', text)
            assert init is not None and init.group(1) == f"init0.mp4?token={token}"
            rung = uri.split("/")[0]
            assert (await server.http.get(f"/hls/{bid}/{rung}/{init.group(1)}")).status_code == 200
            assert (await server.http.get(f"/hls/{bid}/{rung}/init0.mp4")).status_code == 401
        finally:
            await pub.aclose()
