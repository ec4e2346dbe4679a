"""Real browser clients: Debian's Chromium drives our own pages through Playwright.

The studio page (/studio/{bid}) publishes Chromium's fake camera and microphone over WHIP (VP8 or
H.264, chosen in its codec <select>); the watch page (/watch/{bid}, guest token) plays the composed
output over WHEP. We check what a person would see (the <video> plays, its picture is neither black
nor the slate) and what the server got (the host source's decoded frames, compositor off the slate).

Networking stays on this machine: every RTCPeerConnection has ``iceServers: []``, the server's ICE
gathers only ``conftest.ICE_ADDRESS`` (127.0.0.1; 10.213.0.1 under ``scripts/netns-run``), and
Chromium gathers loopback thanks to ``--allow-loopback-in-peer-connection`` -- which it honours only
for pages with media permission (without it Chromium gathers just its default-route address), so
every test context grants camera and microphone; the watch page itself never asks for them. On a
host with an external interface Chromium may still pair that address with 127.0.0.1: the packets
stay in the kernel's loopback path (checked by ``assert_media_stays_here``). The tests pass on
plain loopback, on a loopback-only host, and under ``scripts/netns-run``.

Screenshots of both pages are written to artifacts/ (git-ignored).

The pages' Content-Security-Policy refuses eval (jangteo/pages.py), and Playwright's
``wait_for_function`` evals its predicate: give it a function (``"() => window.jt.ok"``), which it
evals once, where Chromium's DevTools may; a bare expression is evaled again at every poll, and
refused.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pytest

from conftest import ICE_ADDRESS
from jangteo.testkit.server import RunningServer
from stream.ingest.publisher import Source

from .helpers import NEEDS_CHROMIUM, is_slate

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Page

playwright_api = pytest.importorskip("playwright.async_api")

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
WAIT_MS = 20_000  # for any one thing to happen in the browser

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(60),
    NEEDS_CHROMIUM,
]

# Draws a <video> into a canvas and returns it as a PNG data URL (what is on screen, decoded).
SNAPSHOT_JS = """(video) => {
    const c = document.createElement("canvas");
    c.width = 320; c.height = 180;
    c.getContext("2d").drawImage(video, 0, 0, c.width, c.height);
    return c.toDataURL("image/png");
}"""
PLAYING_JS = "(v) => v.readyState >= 2 && v.currentTime > 0.5 && v.videoWidth > 0"


# -- helpers -------------------------------------------------------------------------------------
async def eventually(check: Callable[[], bool], what: str, timeout: float = 20) -> None:
    """Poll a server-side condition (there is no event to await for these)."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


async def snapshot(page: Page, selector: str) -> np.ndarray:
    """The <video>'s current picture, as the page decoded it (BGR, 320x180)."""
    url = await page.eval_on_selector(selector, SNAPSHOT_JS)
    png = base64.b64decode(url.split(",", 1)[1])
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "the canvas snapshot is not a PNG"
    return img


def assert_real_picture(img: np.ndarray, where: str) -> None:
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    assert gray.mean() > 25 or (gray > 60).mean() > 0.05, f"{where}: the picture is black"
    assert gray.std() > 4, f"{where}: the picture is one flat colour"
    assert not is_slate(img), f"{where}: the picture is the slate, not the camera"


async def wait_playing(page: Page, selector: str) -> None:
    """The <video> has data and its currentTime keeps advancing."""
    video = await page.wait_for_selector(selector, state="attached")
    assert video is not None
    await page.wait_for_function(PLAYING_JS, arg=video, timeout=WAIT_MS)
    t0 = await video.evaluate("v => v.currentTime")
    await page.wait_for_function(
        "([v, t0]) => v.currentTime > t0 + 0.5", arg=[video, t0], timeout=WAIT_MS
    )


def host_source(server: RunningServer, bid: str) -> Source | None:
    media = server.ctx.hub.get(bid)
    return media.compositor.host() if media else None


# The addresses of the ICE pair a session's RTCPeerConnection selected.
SELECTED_PAIR_JS = """async (pc) => {
    const r = await pc.getStats();
    let pair = null;
    r.forEach((s) => {
        if (s.type === "transport" && s.selectedCandidatePairId) {
            const p = r.get(s.selectedCandidatePairId);
            pair = {local: r.get(p.localCandidateId).address,
                    remote: r.get(p.remoteCandidateId).address};
        }
    });
    return pair;
}"""


async def assert_media_stays_here(page: Page, session: str) -> None:
    """The selected pair runs from one of this host's addresses to the server's test address.

    On plain loopback Chromium may pick its eth0 address as the local end (loopback candidates
    carry a higher network cost); packets to 127.0.0.1 and back to a local address still never
    leave the kernel's loopback path.
    """
    pair = await page.evaluate(f"async () => ({SELECTED_PAIR_JS})(window.jt.{session}.pc)")
    assert pair is not None, f"{session}: no selected candidate pair"
    assert pair["remote"] == ICE_ADDRESS, pair
    with socket.socket(
        socket.AF_INET6 if ":" in pair["local"] else socket.AF_INET, socket.SOCK_DGRAM
    ) as s:
        s.bind((pair["local"], 0))  # OSError unless it is an address of this host/namespace


def screenshot_path(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name


# -- tests ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("label", "mime"), [("VP8", "video/VP8"), ("H264", "video/H264")])
async def test_studio_publishes_watch_plays(
    server: RunningServer, context: BrowserContext, label: str, mime: str
) -> None:
    b = await server.create_broadcast(f"브라우저 {label}")
    bid, host_token = b["id"], b["host_token"]
    base = server.base_url

    # Studio: camera preview, choose the codec, go live.
    studio = await context.new_page()
    await studio.goto(f"{base}/studio/{bid}?token={host_token}")
    await studio.wait_for_selector("#golive:not([disabled])", timeout=WAIT_MS)
    await wait_playing(studio, "#camera")
    codec = studio.get_by_label("영상 코덱 · Video codec")
    assert await codec.input_value() == "video/VP8"  # the default
    await codec.select_option(mime)
    await studio.get_by_role("button", name="방송 시작 · Go live").click()
    await studio.wait_for_function("() => window.jt.state === 'connected'", timeout=WAIT_MS)
    stats = await studio.evaluate("window.jt.stats()")
    assert stats["publish"]["codec"].lower() == mime.lower(), stats

    # Server side: Chromium's frames really arrive and replace the slate.
    await eventually(
        lambda: (s := host_source(server, bid)) is not None and s.video_frames > 30,
        "30 decoded frames from Chromium in the host source",
    )
    media = server.ctx.hub.get(bid)
    assert media is not None
    await eventually(lambda: not media.compositor.on_slate, "the compositor to leave the slate")
    r = await server.http.get(f"/api/broadcasts/{bid}")
    assert r.json()["status"] == "live"

    # Watch page as a guest (no token in the URL): plays what the compositor makes.
    watch = await context.new_page()
    await watch.goto(f"{base}/watch/{bid}")
    await wait_playing(watch, "#player")
    await watch.wait_for_selector("#badge[data-status='live']", timeout=WAIT_MS)
    assert_real_picture(await snapshot(watch, "#player"), "watch page")
    # The studio's second <video> shows the same composed output.
    await wait_playing(studio, "#output")
    assert_real_picture(await snapshot(studio, "#output"), "studio output preview")

    # Tap to unmute: sound on, and the video keeps playing.
    await watch.get_by_role("button", name="탭하여 소리 켜기").click()
    await watch.wait_for_function("() => !document.querySelector('#player').muted")
    await wait_playing(watch, "#player")

    await assert_media_stays_here(studio, "publisher")
    await assert_media_stays_here(watch, "player")

    source = host_source(server, bid)
    assert source is not None and source.video_frames > 60
    assert not media.compositor.on_slate
    assert len(media.viewers) == 2  # the watch page and the studio's output preview

    await studio.screenshot(path=screenshot_path(f"studio-{label}.png"))
    await watch.screenshot(path=screenshot_path(f"watch-{label}.png"))

    # 종료 End: the studio DELETEs its WHIP session; viewers keep theirs and see the slate.
    await studio.get_by_role("button", name="종료 · End").click()
    await studio.wait_for_function("() => window.jt.state === 'idle'", timeout=WAIT_MS)
    await eventually(lambda: not media.publishers, "the publisher to leave")
    await eventually(lambda: media.compositor.on_slate, "the slate after the host left")
    assert len(media.viewers) == 2

    # Leaving the watch page DELETEs its WHEP session (keepalive fetch on pagehide).
    await watch.goto("about:blank")
    await eventually(lambda: len(media.viewers) == 1, "the watch page's session to be deleted")


async def test_watch_reconnects_when_the_server_drops_it(
    server: RunningServer, context: BrowserContext
) -> None:
    """No publisher: the viewer plays the slate; we drop its session server-side."""
    b = await server.live_broadcast("재연결")
    bid = b["id"]
    watch = await context.new_page()
    await watch.goto(f"{server.base_url}/watch/{bid}")
    await wait_playing(watch, "#player")
    await watch.wait_for_function("() => window.jt.player.connects === 1", timeout=WAIT_MS)
    media = server.ctx.hub.get(bid)
    assert media is not None and len(media.viewers) == 1
    (first,) = media.viewers

    await media.remove_viewer(first)  # as if this process had lost the session

    await watch.wait_for_function("() => window.jt.player.connects >= 2", timeout=30_000)
    await eventually(
        lambda: len(media.viewers) == 1 and first not in media.viewers,
        "exactly one new viewer session",
    )
    await wait_playing(watch, "#player")
    img = await snapshot(watch, "#player")
    assert is_slate(img), "after reconnecting, the viewer sees the slate again"
    await watch.screenshot(path=screenshot_path("watch-reconnected.png"))


async def test_watch_stops_when_the_broadcast_ends(
    server: RunningServer, context: BrowserContext
) -> None:
    """Ending the broadcast closes the viewer; the page says so and does not retry forever."""
    b = await server.live_broadcast("종료 테스트")
    bid = b["id"]
    watch = await context.new_page()
    await watch.goto(f"{server.base_url}/watch/{bid}")
    await wait_playing(watch, "#player")

    r = await server.http.post(
        f"/api/broadcasts/{bid}/end", headers={"Authorization": f"Bearer {b['host_token']}"}
    )
    assert r.status_code == 200, r.text

    await watch.wait_for_function("() => window.jt.state === 'stopped'", timeout=30_000)
    await watch.wait_for_selector("#badge[data-status='ended']", timeout=WAIT_MS)
    assert "종료" in await watch.inner_text("#status")
    assert server.ctx.hub.get(bid) is None
    await watch.screenshot(path=screenshot_path("watch-ended.png"))


async def test_watch_waits_for_the_show_to_start(
    server: RunningServer, context: BrowserContext
) -> None:
    """Before the host goes live the page waits (nothing is started on the server for it); once
    the broadcast is live it plays without a reload."""
    b = await server.create_broadcast("곧 시작")
    bid = b["id"]
    watch = await context.new_page()
    await watch.goto(f"{server.base_url}/watch/{bid}")
    await watch.wait_for_function("() => window.jt.player.state === 'waiting'", timeout=WAIT_MS)
    assert "곧 방송이 시작됩니다" in await watch.inner_text("#status")
    assert server.ctx.hub.get(bid) is None, "no compositor or encoder for a show not on air"

    await server.ctx.store.ensure_live(bid)  # the status event reaches the page over chat
    await wait_playing(watch, "#player")
    assert is_slate(await snapshot(watch, "#player"))
