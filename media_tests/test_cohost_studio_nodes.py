"""A co-host's studio on another node than the show's origin (Chromium through Playwright).

Two nodes on one Redis, with relay ports: the host publishes to A (the origin). The co-host's
invite link opened on B: its WHIP request is answered 409 ``origin_elsewhere`` naming A, and the
studio publishes to A, so A composes both. Then the host's phone comes back through B: A lets
the co-host go (its DTLS closes), the studio asks again and is sent on to B, where both are
composed again. Same network rules as ``test_browser``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from core.redisproc import free_port
from jangteo.testkit.clients import WhipClient
from jangteo.testkit.server import eventually
from stream.ingest.synthetic import PatternTrack, ToneTrack

from . import test_browser as tb
from .helpers import NEEDS_CHROMIUM
from .test_failover_page import node
from .test_pages import go_live, open_studio

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(120),
    NEEDS_CHROMIUM,
]


async def test_a_cohost_studio_publishes_where_the_show_is_composed(
    redis_url: str, context: BrowserContext
) -> None:
    ports = free_port(), free_port()
    async with (
        node(redis_url, "node-a", ports[0], ()) as a,
        node(redis_url, "node-b", ports[1], ()) as b,
    ):
        doc = await a.create_broadcast("두 노드 공동 방송")
        bid, host_token = doc["id"], doc["host_token"]
        host = WhipClient(a.base_url, bid, host_token)
        await host.publish(PatternTrack(320, 180, 30), ToneTrack(440))
        moved = WhipClient(b.base_url, bid, host_token)
        try:
            await host.connected()
            # each node heard of the other in the registry: B's page may call A, and back
            await eventually(lambda: b.base_url in a.app.state.node_origins.allowed, "A knows B")
            await eventually(lambda: a.base_url in b.app.state.node_origins.allowed, "B knows A")
            token = await a.token(bid, "cohost", "크리에이터", as_token=host_token)
            studio = await open_studio(context, b.base_url, bid, token)
            await go_live(studio)
            origin_a = a.ctx.hub.broadcasts[bid]
            await eventually(lambda: len(origin_a.publishers) == 2, "the co-host on A")
            assert bid not in b.ctx.hub.broadcasts  # one compositor, on A
            assert await studio.evaluate("window.jt.publisher.origin") == a.base_url
            connects = await studio.evaluate("window.jt.publisher.connects")

            await host.aclose(delete=False)  # the host's phone loses A, comes back through B
            await moved.publish(PatternTrack(320, 180, 30, hue=60), ToneTrack(440))
            await moved.connected()
            await eventually(lambda: bid in b.ctx.hub.broadcasts, "B composing the show")
            origin_b = b.ctx.hub.broadcasts[bid]
            await eventually(lambda: len(origin_b.publishers) == 2, "the co-host following", 15)
            assert bid not in a.ctx.hub.broadcasts
            await studio.wait_for_function(
                f"() => window.jt.state === 'connected' && window.jt.publisher.origin === "
                f"{b.base_url!r} && window.jt.publisher.connects > {connects}",
                timeout=tb.WAIT_MS,
            )
        finally:
            await host.aclose()
            await moved.aclose()
