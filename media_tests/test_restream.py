"""RTMP(S) restream against a real RTMP server (Debian's nginx with libnginx-mod-rtmp), pulled
back with PyAV: the show's own packets, in order, close behind the WebRTC viewers; a far end
that dies, stalls or lies; and stream keys kept secret."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import statistics
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from conftest import make_settings
from jangteo.testkit import rtmp
from jangteo.testkit.clients import WhepClient, WhipClient
from jangteo.testkit.server import RunningServer, running_server
from stream.ingest import pattern
from stream.ingest.synthetic import PatternTrack, ToneTrack

from .helpers import is_slate, runs_on

pytestmark = [
    pytest.mark.timeout(150),
    pytest.mark.skipif(rtmp.available() is not None, reason=str(rtmp.available())),
]


@pytest.fixture
def nginx(tmp_path: Path) -> Iterator[rtmp.NginxRtmp]:
    server = rtmp.NginxRtmp(tmp_path / "nginx", tls=True, front=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def live(redis_url: str, nginx: rtmp.NginxRtmp) -> AsyncIterator[Show]:
    settings = make_settings(redis_url, restream_allow_private=True,
                             restream_ca_file=str(nginx.ca_file))  # fmt: skip
    async with running_server(settings) as server:
        b = await server.create_broadcast("시장 재송출")
        pub = WhipClient(server.base_url, b["id"], b["host_token"])
        await pub.publish(PatternTrack(640, 360, 30), ToneTrack(440))
        await pub.connected()
        try:
            yield Show(server, b["id"], b["host_token"], pub)
        finally:
            await pub.aclose()


@dataclasses.dataclass
class Show:
    server: RunningServer
    bid: str
    token: str
    host: WhipClient

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def viewer(self, **kw: Any) -> WhepClient:
        token = await self.server.token(self.bid, "viewer", "시청자")
        viewer = WhepClient(self.server.base_url, self.bid, token, **kw)
        await viewer.play(video_codec="h264")
        return viewer

    async def add(self, url: str, name: str = "네이버 쇼핑라이브", **more: Any) -> dict[str, Any]:
        r = await self.server.http.post(f"/api/broadcasts/{self.bid}/destinations",
                                        json={"name": name, "url": url} | more,
                                        headers=self.auth)  # fmt: skip
        assert r.status_code == 201, r.text
        doc: dict[str, Any] = r.json()
        return doc

    async def listing(self) -> list[dict[str, Any]]:
        r = await self.server.http.get(f"/api/broadcasts/{self.bid}/destinations",
                                       headers=self.auth)  # fmt: skip
        assert r.status_code == 200, r.text
        out: list[dict[str, Any]] = r.json()
        return out

    async def status(self, did: str, wanted: str, timeout: float = 20) -> dict[str, Any]:
        """The destination once its status is ``wanted`` (polled: the push runs server-side)."""
        deadline = time.monotonic() + timeout
        while True:
            (d,) = [d for d in await self.listing() if d["id"] == did]
            if d["status"] == wanted:
                return d
            if time.monotonic() > deadline:
                raise AssertionError(f"{did} is {d['status']} ({d['last_error']}), not {wanted}")
            await asyncio.sleep(0.1)


@dataclasses.dataclass
class Pulled:
    codecs: list[str]
    frames: list[tuple[float, int | None, float]]  # (time.time() decoded, counter, pts seconds)
    audio_s: float
    size: tuple[int, int]


def pull(
    url: str,
    frames: int,
    seen: Callable[[int | None, bool], None] | None = None,
    stop: threading.Event | None = None,
) -> Pulled:
    """What a platform's player gets from ``url``: ``frames`` pictures and the audio between;
    ``seen(counter, slate)`` is told of each picture (from this thread) until ``stop``."""
    got: list[tuple[float, int | None, float]] = []
    audio, size = 0.0, (0, 0)
    with av.open(url, timeout=20) as c:
        codecs = [s.codec_context.name for s in c.streams]
        c.streams.video[0].thread_type = "SLICE"  # frame threads would hold frames back
        for packet in c.demux():
            for frame in packet.decode():
                if isinstance(frame, av.AudioFrame):
                    audio += frame.samples / frame.sample_rate
                elif isinstance(frame, av.VideoFrame):
                    img = np.asarray(frame.to_ndarray(format="bgr24"), np.uint8)
                    size = frame.width, frame.height
                    n = pattern.read_counter(img)
                    got.append((time.time(), n, float(frame.time or 0)))
                    if seen is not None:
                        seen(n, n is None and is_slate(img))
            if len(got) >= frames or (stop is not None and stop.is_set()):
                break
    return Pulled(codecs, got, audio, size)


def in_order(pulled: Pulled, skip: int = 0) -> None:
    """Stamped frames in order, none lost, after the first ``skip`` (helpers.runs_on)."""
    runs_on([(t, n) for _, n, t in pulled.frames[skip:]])


def distinct(counters: Iterable[int]) -> list[int]:
    """``counters`` with each run of one value kept once."""
    return [n for n, _ in itertools.groupby(counters)]


def frame_rate(pulled: Pulled) -> float:
    pts = [t for _, _, t in pulled.frames]
    return (len(pts) - 1) / (pts[-1] - pts[0])


def _connections_to(port: int) -> int:
    """Established TCP connections of this network namespace whose far end is ``port``."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                remote, state = fields[2], fields[3]
                count += int(remote.rsplit(":", 1)[1], 16) == port and state == "01"
    return count


class Stamps:
    """What a WebRTC viewer decoded: each stamped frame's counter, and when it was first seen."""

    def __init__(self) -> None:
        self.at: dict[int, float] = {}
        self.sequence: list[int] = []

    def __call__(self, frame: av.VideoFrame, now: float) -> None:
        n = pattern.read_counter(np.asarray(frame.to_ndarray(format="bgr24"), np.uint8))
        if n is not None:
            self.at.setdefault(n, now)
            self.sequence.append(n)


async def test_two_platforms_get_the_show_close_behind_webrtc(
    live: Show, nginx: rtmp.NginxRtmp
) -> None:
    stamps = Stamps()
    viewer = await live.viewer(on_frame=stamps)
    a = await live.add(nginx.url("naver-key-1234"))
    b = await live.add(nginx.tls_url("youtube-key-5678"), name="YouTube", rendition="180p")
    await live.status(a["id"], "live")
    await live.status(b["id"], "live")
    first, second = await asyncio.gather(
        asyncio.to_thread(pull, nginx.url("naver-key-1234"), 150),
        asyncio.to_thread(pull, nginx.url("youtube-key-5678"), 60),
    )
    await viewer.aclose()
    for pulled, size in ((first, (640, 360)), (second, (320, 180))):
        assert sorted(pulled.codecs) == ["aac", "h264"]
        assert pulled.size == size
        in_order(pulled)
        assert frame_rate(pulled) >= 25
        assert pulled.audio_s >= 0.8 * len(pulled.frames) / 30
    # the very frames the viewer got (the same encoded packets), in the same order (a player
    # may show one frame twice, so each side's runs of the same counter count once) ...
    counters = distinct(n for _, n, _ in first.frames if n is not None)
    shown = distinct(stamps.sequence)
    start = shown.index(counters[10])
    same = shown[start : start + len(counters) - 10]
    assert counters[10 : 10 + len(same)] == same and len(same) >= 100
    # ... at most a second after the viewer saw them (once the player's probe is behind it)
    behind = [at - stamps.at[n] for at, n, _ in first.frames[60:] if n in stamps.at]
    assert len(behind) >= 60, "the viewer and the platform saw the same frames"
    assert statistics.median(behind) < 1.0, f"median {statistics.median(behind):.2f}s behind"
    listed = {d["id"]: d for d in await live.listing()}
    assert listed[a["id"]]["bytes_sent"] > 100_000
    assert listed[b["id"]]["url"] == f"rtmps://localhost:{nginx.tls_port}/live/****"
    assert listed[b["id"]]["rendition"] == "180p"


async def test_the_push_comes_back_when_the_far_end_does(live: Show, nginx: rtmp.NginxRtmp) -> None:
    d = await live.add(nginx.url("coupang-key"))
    await live.status(d["id"], "live")
    nginx.kill()  # kill -9: the connection drops without a goodbye
    retrying = await live.status(d["id"], "retrying")
    assert retrying["last_error"]
    nginx.start()
    await live.status(d["id"], "live", timeout=15)  # within 15 s of its coming back
    pulled = await asyncio.to_thread(pull, nginx.url("coupang-key"), 45)
    in_order(pulled)


async def test_a_stalled_platform_costs_the_viewers_nothing(
    live: Show, nginx: rtmp.NginxRtmp, tmp_path: Path
) -> None:
    other = rtmp.NginxRtmp(tmp_path / "other")
    other.start()
    try:
        viewer = await live.viewer()
        await viewer.wait_frames(30, timeout=20)
        slow = await live.add(nginx.front_url("stalls"), name="느린 플랫폼")
        good = await live.add(other.url("keeps-up"), name="Kakao")
        await live.status(slow["id"], "live")
        await live.status(good["id"], "live")
        nginx.pause()  # it stops reading; its sockets stay open
        stalled_at, seen = time.monotonic(), len(viewer.frames)
        pulled = await asyncio.to_thread(pull, other.url("keeps-up"), 150)
        in_order(pulled)  # the other platform: every frame
        assert frame_rate(pulled) >= 25
        # the viewer: every frame while the stalled push backs up
        during = viewer.frames[seen:]
        assert len(during) >= 25 * (time.monotonic() - stalled_at) - 10
        d = await live.status(slow["id"], "retrying", timeout=30)
        assert "took nothing" in d["last_error"]
        # the stalled connection is gone, its buffers with it (at most a new attempt is open)
        assert _connections_to(nginx.front_port) <= 1
        media = live.server.ctx.hub.get(live.bid)
        assert media is not None and media.restreamer is not None
        pusher = media.restreamer.pushers[slow["id"]]
        assert pusher.dropped > 0  # dropped at the queue, resumed at keyframes
        await viewer.aclose()
    finally:
        other.stop()


async def test_a_deleted_destination_stops(live: Show, nginx: rtmp.NginxRtmp) -> None:
    d = await live.add(nginx.url("grip-key"))
    await live.status(d["id"], "live")
    r = await live.server.http.delete(f"/api/broadcasts/{live.bid}/destinations/{d['id']}",
                                      headers=live.auth)  # fmt: skip
    assert r.status_code == 204
    assert await live.listing() == []
    media = live.server.ctx.hub.get(live.bid)
    assert media is not None and media.restreamer is not None
    assert media.restreamer.pushers == {}
    with pytest.raises(av.error.FFmpegError):  # nothing is published under that key any more
        await asyncio.to_thread(pull, nginx.url("grip-key"), 1)


async def test_rtmps_is_verified(live: Show, nginx: rtmp.NginxRtmp) -> None:
    """The certificate must name the host in the URL: the same server by its address, which
    its certificate does not name, is refused."""
    wrong_name = f"rtmps://127.0.0.1:{nginx.tls_port}/live/verify-key"
    d = await live.add(wrong_name, name="wrong name")
    retrying = await live.status(d["id"], "retrying")
    assert "certificate" in retrying["last_error"].lower()


async def test_stream_keys_stay_secret(
    live: Show, nginx: rtmp.NginxRtmp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = "sk-live-9f8e7d6c5b4a"
    closed = rtmp.NginxRtmp(nginx.root.parent / "closed")  # configured, never started
    d = await live.add(closed.url(key), name="닫힌 서버")
    assert d["url"] == f"rtmp://127.0.0.1:{closed.port}/live/****"
    assert key not in str(d)
    failed = await live.status(d["id"], "retrying")
    assert failed["last_error"] and key not in failed["last_error"]
    assert key not in str(await live.listing())
    assert key not in caplog.text
    raw = await live.server.ctx.redis.hgetall(f"jt:{{{live.bid}}}:destinations")
    kept = [v if isinstance(v, bytes) else v.encode() for v in raw.values()]
    assert kept and key.encode() not in b"".join(kept)  # kept encrypted


async def test_the_push_rides_out_the_host_reconnecting(live: Show, nginx: rtmp.NginxRtmp) -> None:
    """The host's phone drops and comes back: the platform sees the slate, then the show,
    on the same connection."""
    d = await live.add(nginx.url("kakao-key"))
    await live.status(d["id"], "live")
    media = live.server.ctx.hub.get(live.bid)
    assert media is not None and media.restreamer is not None
    pusher = media.restreamer.pushers[d["id"]]
    loop = asyncio.get_running_loop()
    kinds: list[str] = []
    more = asyncio.Event()

    def add(kind: str) -> None:
        kinds.append(kind)
        more.set()

    def seen(counter: int | None, slate: bool) -> None:  # in the pulling thread
        kind = "show" if counter is not None else "slate" if slate else "other"
        loop.call_soon_threadsafe(add, kind)

    async def until(check: Callable[[], bool], timeout: float = 20) -> None:
        async with asyncio.timeout(timeout):
            while not check():
                more.clear()
                await more.wait()

    stop = threading.Event()
    pulling = asyncio.ensure_future(asyncio.to_thread(pull, nginx.url("kakao-key"), 3000, seen,
                                                      stop))  # fmt: skip
    again: WhipClient | None = None
    try:
        await until(lambda: kinds.count("show") >= 30)
        await live.host.aclose(delete=False)  # the network drops: no DELETE
        await until(lambda: kinds[-30:] == ["slate"] * 30)
        again = WhipClient(live.server.base_url, live.bid, live.token)
        await again.publish(PatternTrack(640, 360, 30), ToneTrack(440))
        await until(lambda: kinds[-30:] == ["show"] * 30)
    finally:
        stop.set()  # stop watching before the host leaves (that would be a slate again)
        await pulling
        if again is not None:
            await again.aclose()
    assert pusher.connections == 1 and pusher.status == "live"
    order = [k for k, _ in itertools.groupby(k for k in kinds if k != "other")]
    assert order == ["show", "slate", "show"]
