"""The pages during a drain (Chromium through Playwright): nobody notices more than a moment.

Two nodes on one Redis, with relay ports. The host's studio and a viewer's watch page are both
opened on node A's own URL (no load balancer in front), live, chatting. The operator drains A
(asked of B): A lets the camera and the player go and refuses them; the studio publishes through
B (which becomes the origin), the watch page plays from B, and both pages' API calls and chat
move to B, where a chat line still goes from the viewer to the studio. Same network rules as
``test_browser``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from core.redisproc import free_port
from jangteo.testkit.server import eventually

from . import test_browser as tb
from .helpers import NEEDS_CHROMIUM
from .test_failover_page import node
from .test_pages import chat_line, go_live, open_studio, open_watch, send_chat

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(120),
    NEEDS_CHROMIUM,
]

MOVED_WITHIN_MS = 15_000


async def test_the_pages_move_off_a_drained_node(redis_url: str, context: BrowserContext) -> None:
    ports = free_port(), free_port()
    async with (
        node(redis_url, "node-a", ports[0], ()) as a,
        node(redis_url, "node-b", ports[1], ()) as b,
    ):
        await eventually(lambda: b.base_url in a.app.state.node_origins.allowed, "A knows B")
        await eventually(lambda: a.base_url in b.app.state.node_origins.allowed, "B knows A")
        doc = await a.create_broadcast("옮겨 가는 방송")
        bid = doc["id"]
        studio = await open_studio(context, a.base_url, bid, doc["host_token"])
        await go_live(studio)
        watch = await open_watch(context, a.base_url, bid)
        await tb.wait_playing(watch, "#player")
        for page in (studio, watch):  # both know where else to go
            await page.wait_for_function("() => window.jt.nodes.length === 2", timeout=tb.WAIT_MS)

        r = await b.http.post("/api/nodes/node-a/drain", headers=b.admin())
        assert r.status_code == 202, r.text
        await eventually(lambda: a.app.state.drain.active, "A draining", 10)

        # the camera goes to B, which composes the show now; the player follows
        await studio.wait_for_function(
            f"() => window.jt.state === 'connected' && "
            f"window.jt.publisher.origin === {b.base_url!r}",
            timeout=MOVED_WITHIN_MS,
        )
        await eventually(lambda: bid in b.ctx.hub.broadcasts, "B composing the show")
        await watch.wait_for_function(
            f"() => window.jt.state === 'connected' && window.jt.player.origin === {b.base_url!r}",
            timeout=MOVED_WITHIN_MS,
        )
        await tb.wait_playing(watch, "#player")
        tb.assert_real_picture(await tb.snapshot(watch, "#player"), "after the drain")
        # their calls and chat went to B as well
        for page in (studio, watch):
            await page.wait_for_function(
                f"() => window.jt.home === {b.base_url!r} && window.jt.chat.state === 'open'",
                timeout=MOVED_WITHIN_MS,
            )
        await send_chat(watch, "B에서도 잘 보여요")
        await chat_line(studio, "B에서도 잘 보여요").wait_for(timeout=tb.WAIT_MS)
        # nothing is left on A
        drain = a.app.state.drain
        await eventually(lambda: not any(drain.sessions().values()), "A empty", 15)
