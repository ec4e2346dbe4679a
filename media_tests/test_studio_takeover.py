"""The host goes live from a second device (Chromium through Playwright): the show moves to it and
the first studio stops, saying so, instead of taking the show back (which it did: each studio
reconnected when the other replaced its session, back and forth).

The server replaces the host's session with the newer one of the same identity and tells the
person on their chat (``session_replaced``, addressed to them); the studio holding that session
stops. Same network rules as ``test_browser``.
"""

from __future__ import annotations

import pytest

from jangteo.testkit.server import RunningServer

from . import test_browser as tb
from .helpers import NEEDS_CHROMIUM, Contexts
from .test_pages import DESKTOP, go_live, open_studio

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(120),
    NEEDS_CHROMIUM,
]


async def test_a_second_device_takes_the_show_and_the_first_studio_stops(
    server: RunningServer, contexts: Contexts
) -> None:
    b = await server.create_broadcast("기기 바꾸기")
    bid, host = b["id"], b["host_token"]
    laptop = await open_studio(await contexts(viewport=DESKTOP), server.base_url, bid, host)
    await go_live(laptop)
    media = server.ctx.hub.get(bid)
    assert media is not None
    (first,) = media.publishers

    phone = await open_studio(await contexts(viewport=DESKTOP), server.base_url, bid, host)
    await go_live(phone)
    # the laptop's studio is told and stops for good: no retry is left to take the show back
    await laptop.wait_for_function("() => window.jt.publisher === null", timeout=tb.WAIT_MS)
    assert "다른 기기에서 방송을 이어갑니다" in await laptop.inner_text("#status")
    assert await laptop.is_enabled("#golive"), "the host may take it back by hand"
    (second,) = media.publishers
    assert second != first
    assert await phone.evaluate("window.jt.state") == "connected"
    session_url = await phone.evaluate("window.jt.publisher.sessionUrl")
    assert session_url.endswith(f"/{second}")
