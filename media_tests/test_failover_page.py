"""The viewer page and the studio move to another node when their own dies (Chromium through
Playwright).

Two nodes on one Redis, with relay ports: the host publishes to A (the origin); a guest opens the
watch page served by B, which plays through B's edge. B stops; the page's WHEP session fails and
the player moves to the next node GET /api/broadcasts/{bid} named (A) with the same token, and
plays again within seconds. With the default CORS setting (no configured origins) A accepts B's
page because it heard of B in the node registry. The page's API calls move to A too (``jt.home``),
and its chat socket, which A lets in for the same reason. The studio opened on the origin's own
URL publishes through the other node when the origin stops (that node becomes the origin), its
calls and chat with it. Same network rules as ``test_browser``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

from conftest import make_settings
from core.redisproc import free_port
from jangteo.testkit.clients import WhipClient
from jangteo.testkit.server import RunningServer, eventually, running_server
from stream.ingest.synthetic import PatternTrack, ToneTrack

from . import test_browser as tb
from .helpers import NEEDS_CHROMIUM

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(120),
    NEEDS_CHROMIUM,
]

BACK_WITHIN_S = 8  # from node B gone to the page playing from A again


@contextlib.asynccontextmanager
async def node(
    redis_url: str, name: str, port: int, origins: tuple[str, ...]
) -> AsyncIterator[RunningServer]:
    settings = make_settings(redis_url, node_id=name, port=port, relay_port=free_port(),
                             cors_origins=origins, video_width=320, video_height=180)  # fmt: skip
    async with running_server(settings) as s:
        yield s


@pytest.mark.parametrize("listed", [False, True], ids=["default-cors", "nodes-listed"])
async def test_the_watch_page_plays_from_another_node_when_its_node_dies(
    redis_url: str, context: BrowserContext, listed: bool
) -> None:
    ports = free_port(), free_port()
    origins = tuple(f"http://127.0.0.1:{p}" for p in ports) if listed else ()
    async with contextlib.AsyncExitStack() as b_alive:
        b = await b_alive.enter_async_context(node(redis_url, "node-b", ports[1], origins))
        async with node(redis_url, "node-a", ports[0], origins) as a:
            doc = await a.create_broadcast("두 노드")
            bid = doc["id"]
            pub = WhipClient(a.base_url, bid, doc["host_token"])
            await pub.publish(PatternTrack(320, 180, 30), ToneTrack(440))
            try:
                await pub.connected()
                # A heard of B in the registry (at its first heartbeat): B's pages may use A
                await eventually(lambda: b.base_url in a.app.state.node_origins.allowed,
                                 "node A learning node B's URL")  # fmt: skip

                watch = await context.new_page()
                await watch.goto(f"{b.base_url}/watch/{bid}")
                await tb.wait_playing(watch, "#player")
                assert bid in b.ctx.hub.edges, "B plays the broadcast through its edge"
                # the page knows where else to go: B (its own) first, then A
                await watch.wait_for_function(
                    "() => window.jt.nodes.length === 2", timeout=tb.WAIT_MS
                )
                assert await watch.evaluate("window.jt.nodes") == [b.base_url, a.base_url]
                assert await watch.evaluate("window.jt.player.origin") == b.base_url
                await watch.wait_for_function(
                    "() => window.jt.chat.state === 'open'", timeout=tb.WAIT_MS
                )

                await b_alive.aclose()  # node B stops (its sessions close, its port is shut)
                gone = time.monotonic()
                on_a = f"window.jt.player.origin === {a.base_url!r}"
                await watch.wait_for_function(f"() => {on_a} && window.jt.state === 'connected'",
                                              timeout=BACK_WITHIN_S * 1000)  # fmt: skip
                await tb.wait_playing(watch, "#player")
                back = time.monotonic() - gone
                assert back < BACK_WITHIN_S, f"playing again {back:.1f} s after node B stopped"
                tb.assert_real_picture(await tb.snapshot(watch, "#player"), "after the move")
                stats = await watch.evaluate("window.jt.stats()")
                assert stats["frames"] > 0 and stats["connects"] == 2, stats
                media = a.ctx.hub.get(bid)
                assert media is not None and media.audience() == 1  # the page's one session
                # the page's API calls follow (B does not answer them any more)
                await watch.wait_for_function(f"() => window.jt.home === {a.base_url!r}",
                                              timeout=tb.WAIT_MS)  # fmt: skip
                # and the chat: it resumes on A (which knows B's page from the registry)
                await watch.wait_for_function(
                    "() => window.jt.chat.state === 'open' && window.jt.chat.connects >= 2",
                    timeout=tb.WAIT_MS,
                )
                await watch.fill("#chat-input", "A에서 안녕")
                await watch.press("#chat-input", "Enter")
                await watch.wait_for_selector("#chat-log li.mine:has-text('A에서 안녕')",
                                              timeout=tb.WAIT_MS)  # fmt: skip
                await watch.screenshot(path=tb.screenshot_path("watch-moved-node.png"))
            finally:
                await pub.aclose()


async def test_the_studio_publishes_through_another_node_when_its_node_dies(
    redis_url: str, context: BrowserContext
) -> None:
    from .test_pages import go_live, open_studio

    ports = free_port(), free_port()
    async with contextlib.AsyncExitStack() as a_alive:
        a = await a_alive.enter_async_context(node(redis_url, "node-a", ports[0], ()))
        async with node(redis_url, "node-b", ports[1], ()) as b:
            await eventually(lambda: a.base_url in b.app.state.node_origins.allowed, "B knows A")
            doc = await a.create_broadcast("스튜디오 옮기기")
            bid = doc["id"]
            studio = await open_studio(context, a.base_url, bid, doc["host_token"])
            await go_live(studio)
            await studio.wait_for_function("() => window.jt.nodes.length === 2",
                                           timeout=tb.WAIT_MS)  # fmt: skip
            assert await studio.evaluate("window.jt.publisher.origin") == a.base_url

            await a_alive.aclose()  # node A, the origin, stops: publishing again within 8 s
            await studio.wait_for_function(
                f"() => window.jt.state === 'connected' && "
                f"window.jt.publisher.origin === {b.base_url!r}",
                timeout=BACK_WITHIN_S * 1000,
            )
            media = b.ctx.hub.get(bid)
            assert media is not None and len(media.publishers) == 1  # B composes the show now
            doc_b = (await b.http.get(f"/api/broadcasts/{bid}")).json()
            assert doc_b["origin"]["node"] == "node-b" and doc_b["status"] == "live"
            # the studio's calls and chat follow it to B
            await studio.wait_for_function(
                f"() => window.jt.home === {b.base_url!r} && window.jt.chat.state === 'open'",
                timeout=tb.WAIT_MS,
            )
