"""Real WHIP publishers against our server: GStreamer webrtcbin and FFmpeg's WHIP muxer.

Each publisher runs as a child process (media_tests/clients/), talks plain WHIP to a real server
(uvicorn + Redis), and must get 201, feed decoded frames into the host source, take the compositor
off the slate, and reach an aiortc WHEP viewer as real pictures (and its tone as audio).

- GStreamer 1.22 (Debian 12) runs on the SYSTEM Python (``gi``). libnice never gathers loopback, so
  these tests need the private network namespace with the veth pair 10.213.0.1<->10.213.0.2 and
  skip outside it (``scripts/netns-run``, or the recipe in docs/interop.md).
- FFmpeg 8.1 is the one inside PyAV (``format="whip"``); it works over loopback.

Two server hooks make them work (stream/deliver/rtc_hooks.py, docs/interop.md): DTLS cipher suites
for peers with RSA certificates (GStreamer), and consent freshness for peers that check us but never
answer our checks (FFmpeg).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aioice.ice
import numpy as np
import pytest

from conftest import make_settings
from jangteo.testkit.clients import Received, WhepClient
from jangteo.testkit.server import RunningServer, running_server
from stream.ingest import pattern
from stream.ingest.publisher import Source

from .helpers import is_pattern, is_slate, wait_for_frame

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = Path(__file__).resolve().parent / "clients"
SYSTEM_PYTHON = "/usr/bin/python3"
NETNS_ADDRESS = "10.213.0.1"  # our end of the veth pair in the private namespace
TONE_HZ = 440.0

log = logging.getLogger(__name__)


# -- environment ---------------------------------------------------------------------------------
def _local_address(address: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((address, 0))
        except OSError:
            return False
    return True


def _gstreamer_missing() -> str | None:
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} not found"
    probe = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstWebRTC', '1.0'); "
        "from gi.repository import Gst; Gst.init(None); "
        "import sys; sys.exit(0 if Gst.ElementFactory.find('webrtcbin') and "
        "Gst.ElementFactory.find('nicesrc') and Gst.ElementFactory.find('x264enc') else 3)"
    )
    r = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=30)
    if r.returncode:
        return (
            "GStreamer webrtcbin is not installed for the system Python (Debian: gstreamer1.0-"
            "plugins-{base,good,bad,ugly} gstreamer1.0-nice python3-gst-1.0 "
            "gir1.2-gst-plugins-bad-1.0)"
        )
    return None


@pytest.fixture(scope="session")
def gstreamer() -> str:
    missing = _gstreamer_missing()
    if missing:
        pytest.skip(missing)
    return SYSTEM_PYTHON


@pytest.fixture(scope="session")
def netns_address() -> str:
    if not _local_address(NETNS_ADDRESS):
        pytest.skip(
            f"needs the private network namespace ({NETNS_ADDRESS} on a veth pair): libnice "
            "(GStreamer) never gathers loopback. Run: scripts/netns-run .venv/bin/python -m "
            "pytest media_tests/test_interop.py (or the unshare recipe in docs/interop.md)"
        )
    return NETNS_ADDRESS


@pytest.fixture
async def netns_server(redis_url: str, netns_address: str) -> AsyncIterator[RunningServer]:
    async with running_server(make_settings(redis_url, ice_host_addresses=(netns_address,))) as s:
        yield s


# -- child processes -----------------------------------------------------------------------------
class Child:
    """A publisher process; its stdout (and stderr) lines, awaitable."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name
        self.lines: list[str] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip())
            self._changed.set()
        self._changed.set()

    def output(self, last: int = 40) -> str:
        return "\n".join(self.lines[-last:])

    async def line(self, prefixes: tuple[str, ...], timeout: float) -> str:
        """The first output line starting with one of ``prefixes`` (or ``failed``)."""

        async def find() -> str:
            i = 0
            while True:
                while i < len(self.lines):
                    if self.lines[i].startswith((*prefixes, "failed")):
                        return self.lines[i]
                    i += 1
                if self._reader.done():
                    raise AssertionError(f"{self.name} exited:\n{self.output()}")
                self._changed.clear()
                await self._changed.wait()

        try:
            found = await asyncio.wait_for(find(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"{self.name}: no {prefixes} in {timeout}s:\n{self.output()}"
            ) from None
        if found.startswith("failed") and "failed" not in prefixes:
            raise AssertionError(f"{self.name}: {found}\n{self.output()}")
        return found

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        await self._reader
        assert self.proc.returncode is not None
        return self.proc.returncode


@contextlib.asynccontextmanager
async def child(name: str, *argv: str) -> AsyncIterator[Child]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    c = Child(proc, name)
    try:
        yield c
    finally:
        await c.stop()


def gst_publisher(
    python: str, url: str, token: str, codec: str, seconds: float = 60
) -> contextlib.AbstractAsyncContextManager[Child]:
    return child(
        f"gst-{codec}", python, str(CLIENTS / "gst_whip.py"), url, token,
        "--codec", codec, "--seconds", str(seconds), "--freq", str(TONE_HZ),
    )  # fmt: skip


def ffmpeg_publisher(
    url: str, token: str, seconds: float = 60, *extra: str
) -> contextlib.AbstractAsyncContextManager[Child]:
    return child(
        "ffmpeg-whip", sys.executable, "-m", "media_tests.clients.ffmpeg_whip", url, token,
        "--seconds", str(seconds), "--freq", str(TONE_HZ), *extra,
    )  # fmt: skip


# -- waiting on the server -----------------------------------------------------------------------
async def eventually(what: str, check: Callable[[], bool], timeout: float) -> None:
    """Poll a server counter (it has no event) every 20 ms until ``check()`` or fail."""

    async def poll() -> None:
        while not check():  # noqa: ASYNC110 - server counters have no event to wait on
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        raise AssertionError(f"not within {timeout}s: {what}") from None


def host_source(server: RunningServer, bid: str) -> Source | None:
    media = server.ctx.hub.get(bid)
    return media.compositor.host() if media else None


def whip_statuses(caplog: pytest.LogCaptureFixture, bid: str) -> list[int]:
    """Status codes uvicorn logged for ``POST /whip/{bid}``."""
    out = []
    for r in caplog.records:
        if r.name == "uvicorn.access" and isinstance(r.args, tuple) and len(r.args) >= 5:
            _, method, path, _, status = r.args[:5]
            if method == "POST" and path == f"/whip/{bid}":
                out.append(int(str(status)))
    return out


async def host_frames_flow(server: RunningServer, bid: str, frames: int = 30) -> Source:
    """The host source decodes ``frames`` frames and the compositor leaves the slate."""
    await eventually("a host source", lambda: host_source(server, bid) is not None, 10)
    source = host_source(server, bid)
    assert source is not None
    await eventually(
        f"{frames} decoded frames in the host source", lambda: source.video_frames >= frames, 20
    )
    media = server.ctx.hub.get(bid)
    assert media is not None
    await eventually("compositor off the slate", lambda: not media.compositor.on_slate, 5)
    return source


# -- pictures ------------------------------------------------------------------------------------
# videotestsrc pattern=smpte: seven bars across the top two thirds; which of B, G, R is lit
_SMPTE_BGR_ON = [
    (1, 1, 1), (0, 1, 1), (1, 1, 0), (0, 1, 0), (1, 0, 1), (0, 0, 1), (1, 0, 0),
]  # fmt: skip


def is_smpte(img: np.ndarray) -> bool:
    h, w = img.shape[:2]
    y = int(h * 0.3)
    for i, lit in enumerate(_SMPTE_BGR_ON):
        x = int((i + 0.5) * w / 7)
        patch = img[y - 4 : y + 4, x - 4 : x + 4].reshape(-1, 3).mean(axis=0)
        for value, on in zip(patch, lit, strict=True):
            if (on and value < 150) or (not on and value > 100):
                return False
    return True


async def viewer_sees(
    server: RunningServer, bid: str, picture: Callable[[np.ndarray], bool]
) -> WhepClient:
    """An aiortc WHEP viewer decodes a frame that is not the slate and is ``picture``."""
    token = await server.token(bid, "viewer", "interop")
    viewer = WhepClient(server.base_url, bid, token, keep_images=90)
    await viewer.play()

    def good(f: Received) -> bool:
        return f.image is not None and not is_slate(f.image) and picture(f.image)

    try:
        await wait_for_frame(viewer, good, timeout=15)
    except TimeoutError:
        await viewer.aclose()
        kept = [f.image for f in viewer.frames if f.image is not None]
        slate = sum(is_slate(img) for img in kept)
        raise AssertionError(
            f"the viewer decoded {len(viewer.frames)} frames ({slate} of the first "
            f"{len(kept)} are the slate), none the publisher's picture"
        ) from None
    except BaseException:
        await viewer.aclose()
        raise
    return viewer


async def viewer_hears_tone(viewer: WhepClient) -> None:
    async def enough() -> None:
        while viewer.audio_samples < 48000 * 2:  # noqa: ASYNC110 - WhepClient has no audio event
            await asyncio.sleep(0.05)

    await asyncio.wait_for(enough(), 10)
    audio = np.concatenate(viewer.audio)
    tail = audio[-48000:]  # the last 0.5 s (interleaved stereo)
    assert abs(pattern.dominant_frequency(tail) - TONE_HZ) < 10


@pytest.fixture
def fast_consent(monkeypatch: pytest.MonkeyPatch) -> None:
    """aioice checks consent every 0.25 s instead of 5 s: expiry (6 misses) in ~1.5 s."""
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.25)


# -- GStreamer webrtcbin -------------------------------------------------------------------------
async def _gstreamer_publishes(
    server: RunningServer, python: str, codec: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="uvicorn.access")
    b = await server.create_broadcast()
    bid = b["id"]
    url = f"{server.base_url}/whip/{bid}"
    async with gst_publisher(python, url, b["host_token"], codec) as pub:
        offer = await pub.line(("offer",), 20)
        assert NETNS_ADDRESS in offer, offer
        answer = await pub.line(("answer",), 20)
        assert answer.startswith(f"answer 201 /whip/{bid}/"), answer
        assert whip_statuses(caplog, bid) == [201]
        await pub.line(("connected",), 15)
        await host_frames_flow(server, bid)
        media = server.ctx.hub.get(bid)
        assert media is not None
        [publisher] = media.publishers.values()
        assert publisher.state == "connected"
        viewer = await viewer_sees(server, bid, is_smpte)
        try:
            await viewer_hears_tone(viewer)
        finally:
            await viewer.aclose()
    # the client DELETEs its session on the way out
    assert any(line.startswith("deleted 200") for line in pub.lines), pub.output()
    await eventually("publisher gone", lambda: not media.publishers, 5)


@pytest.mark.netns
@pytest.mark.parametrize("codec", ["vp8", "h264"])
async def test_gstreamer_webrtcbin_publishes(
    netns_server: RunningServer, gstreamer: str, codec: str, caplog: pytest.LogCaptureFixture
) -> None:
    await _gstreamer_publishes(netns_server, gstreamer, codec, caplog)


# -- FFmpeg WHIP muxer (PyAV) --------------------------------------------------------------------
async def test_ffmpeg_whip_muxer_publishes(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="uvicorn.access")
    b = await server.create_broadcast()
    bid = b["id"]
    async with ffmpeg_publisher(f"{server.base_url}/whip/{bid}", b["host_token"]) as pub:
        await pub.line(("connected",), 20)
        assert whip_statuses(caplog, bid) == [201]
        await host_frames_flow(server, bid)
        media = server.ctx.hub.get(bid)
        assert media is not None
        viewer = await viewer_sees(server, bid, is_pattern)
        try:
            await viewer_hears_tone(viewer)
            # the stamped counter advances: live pictures, not one frozen frame
            kept = [f.image for f in viewer.frames if f.image is not None]
            counters = {pattern.read_counter(img) for img in kept[-30:]} - {None}
            assert len(counters) >= 15
        finally:
            await viewer.aclose()
        assert await pub.stop() == 0
    # the muxer DELETEs its resource when closed
    await eventually("publisher gone", lambda: not media.publishers, 5)


async def _ffmpeg_outlives_consent(server: RunningServer) -> None:
    b = await server.create_broadcast()
    bid = b["id"]
    async with ffmpeg_publisher(f"{server.base_url}/whip/{bid}", b["host_token"]) as pub:
        await pub.line(("connected",), 20)
        source = await host_frames_flow(server, bid, frames=10)
        media = server.ctx.hub.get(bid)
        assert media is not None
        # 16 consent intervals: aioice gives up after 6 unanswered checks without P2
        deadline = time.monotonic() + 16 * aioice.ice.CONSENT_INTERVAL
        while time.monotonic() < deadline:
            assert media.publishers, "the server dropped the FFmpeg session (consent expired)"
            await asyncio.sleep(0.1)
        before = source.video_frames
        await eventually("frames still flowing", lambda: source.video_frames >= before + 10, 3)
        assert len(media.publishers) == 1


@pytest.mark.usefixtures("fast_consent")
async def test_ffmpeg_outlives_unanswered_consent_checks(server: RunningServer) -> None:
    await _ffmpeg_outlives_consent(server)
