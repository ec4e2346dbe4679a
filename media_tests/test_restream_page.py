"""The studio's "Go live on other platforms" panel in Chromium: a preset, a hidden key, the
push's status badge going live against a real RTMP server, the key never shown again."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from conftest import make_settings
from jangteo.testkit import rtmp
from jangteo.testkit.clients import WhipClient
from jangteo.testkit.server import running_server
from stream.ingest.synthetic import PatternTrack, ToneTrack

from . import test_browser as tb
from .helpers import NEEDS_CHROMIUM, Contexts
from .test_pages import DESKTOP, open_studio, save
from .test_restream import in_order, pull

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(90),
    NEEDS_CHROMIUM,
    pytest.mark.skipif(rtmp.available() is not None, reason=str(rtmp.available())),
]

WAIT_MS = tb.WAIT_MS
KEY = "market-key-7f3e9a"


async def test_the_studio_sends_the_show_to_another_platform(
    redis_url: str, contexts: Contexts, tmp_path: Path
) -> None:
    nginx = rtmp.NginxRtmp(tmp_path / "nginx")
    nginx.start()
    settings = make_settings(redis_url, restream_allow_private=True)
    try:
        async with running_server(settings) as server:
            b = await server.create_broadcast("동시 송출")
            bid, host = b["id"], b["host_token"]
            async with contextlib.aclosing(WhipClient(server.base_url, bid, host)) as pub:
                await pub.publish(PatternTrack(640, 360, 30), ToneTrack(440))
                studio = await open_studio(
                    await contexts(viewport=DESKTOP), server.base_url, bid, host
                )
                panel = studio.locator("#restream-panel")
                await panel.get_by_text("송출 대상 추가 · Add a platform").click()
                # a preset fills the platform's server URL; "other" leaves it to the merchant
                await studio.select_option("#rs-preset", "youtube")
                assert (
                    await studio.input_value("#rs-server")
                    == "rtmps://a.rtmps.youtube.com:443/live2"
                )
                await studio.select_option("#rs-preset", "other")
                assert await studio.get_attribute("#rs-key", "type") == "password"
                # a wrong scheme is refused with a clear word
                await studio.fill("#rs-server", "http://127.0.0.1/live")
                await studio.fill("#rs-key", KEY)
                await studio.click('[data-action="restream-add"]')
                await studio.wait_for_selector("#restream-msg[data-kind='error']", timeout=WAIT_MS)
                assert "rtmp://" in await studio.inner_text("#restream-msg")
                await studio.fill("#rs-server", f"rtmp://127.0.0.1:{nginx.port}/live")
                await studio.fill("#rs-name", "시장 채널")
                await studio.click('[data-action="restream-add"]')
                await studio.wait_for_selector(
                    '#destinations li[data-status="live"]', timeout=WAIT_MS
                )
                listed = await studio.inner_text("#destinations")
                assert "시장 채널" in listed and "/live/****" in listed and KEY not in listed
                assert await studio.input_value("#rs-key") == ""  # not kept in the page either
                await save(studio, "restream-studio.png")
                pulled = await asyncio.to_thread(pull, nginx.url(KEY), 60)
                in_order(pulled, skip=15)  # the camera fading in over the slate first
                await studio.click('[data-action="restream-remove"]')
                await studio.wait_for_selector("#destinations li[data-status]", state="detached",
                                               timeout=WAIT_MS)  # fmt: skip
                assert server.ctx.hub.get(bid).restreamer.pushers == {}  # type: ignore[union-attr]
    finally:
        nginx.stop()
