"""Every page under its Content-Security-Policy (jangteo/pages.py), in Chromium: a whole show --
the studio goes live, a viewer watches, chats and opens the order step, the market screen plays
the LL-HLS through hls.js (its worker from a blob: URL), the merchant opens the report, and the
show becomes a replay that plays -- and the browser reports no violation on any of them.

Violations are collected from the ``securitypolicyviolation`` event of every document (an init
script hands each to Python through a binding, so one on a page that navigates on is kept) and
from Chromium's console. A script the policy must refuse is refused and reported, which shows the
collector hears them. Same browser, server, contexts and waits as ``test_pages``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from jangteo.testkit.server import RunningServer

from . import test_browser as tb
from . import test_pages as tp
from .helpers import NEEDS_CHROMIUM, Contexts
from .test_record import replay_ready
from .test_replay_pages import end, wait_advancing

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, ConsoleMessage, Page, Response

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(120),
    NEEDS_CHROMIUM,
]

WAIT_MS = tb.WAIT_MS
CHAT_OPEN = "() => window.jt && window.jt.chat.state === 'open'"
HLS_PLAYING = "() => window.jt.state === 'playing' && !!window.jt.hls"  # hls.js, not native

# Before any script of each document: every violation goes to Python as it happens.
REPORT_JS = """document.addEventListener("securitypolicyviolation", (e) => {
    window.__cspViolation({page: location.pathname, directive: e.effectiveDirective,
                           blocked: e.blockedURI, sample: e.sample, source: e.sourceFile});
});"""


class Violations:
    """What the pages of the contexts it watches were refused."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.console: list[str] = []

    async def watch(self, ctx: BrowserContext) -> BrowserContext:
        await ctx.expose_binding("__cspViolation", lambda _source, v: self.events.append(v))
        await ctx.add_init_script(REPORT_JS)
        ctx.on("console", self._console)
        return ctx

    def _console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            self.console.append(f"{message.page.url if message.page else '?'}: {message.text}")

    def __bool__(self) -> bool:
        return bool(self.events or self.console)

    def __str__(self) -> str:
        return "\n".join([*map(str, self.events), *self.console])


async def goto(page: Page, url: str) -> Response:
    """Open a page, which must come with a policy that allows scripts from this origin only."""
    response = await page.goto(url)
    assert response is not None and response.ok, url
    policy = await response.header_value("content-security-policy")
    assert policy and "script-src 'self';" in policy, (url, policy)
    return response


async def test_no_page_breaks_its_content_security_policy(
    recording: RunningServer, contexts: Contexts
) -> None:
    server = recording
    seen = Violations()
    b = await server.create_broadcast("보안 정책 장터")
    bid, host, base = b["id"], b["host_token"], server.base_url
    await tp.put_product(server, bid, host, "p1", name="햇감자 3kg", price=12900, stock=9)

    studio_ctx = await seen.watch(await contexts(viewport=tp.DESKTOP))
    studio = await studio_ctx.new_page()
    await goto(studio, f"{base}/studio/{bid}?token={host}")
    await studio.wait_for_function(CHAT_OPEN, timeout=WAIT_MS)
    await tp.go_live(studio)
    row = studio.locator("#product-list li", has_text="햇감자 3kg")
    await row.get_by_role("button", name="고정").click()

    phone = {"viewport": tp.PHONE, "is_mobile": True, "has_touch": True}
    watch = await (await seen.watch(await contexts(**phone))).new_page()
    await goto(watch, f"{base}/watch/{bid}")
    await watch.wait_for_function(CHAT_OPEN, timeout=WAIT_MS)
    await tb.wait_playing(watch, "#player")
    await tp.send_chat(watch, "정책 안에서 안녕")
    await tp.chat_line(studio, "정책 안에서 안녕").wait_for(timeout=WAIT_MS)
    await watch.wait_for_selector("#product:not([hidden])", timeout=WAIT_MS)
    await watch.locator('[data-action="buy"]').click()
    await watch.get_by_role("dialog", name="주문", exact=True).wait_for(timeout=WAIT_MS)

    screen_ctx = await seen.watch(await contexts(viewport={"width": 1280, "height": 720}))
    screen = await screen_ctx.new_page()
    await goto(screen, f"{base}/screen/{bid}")
    await tb.wait_playing(screen, "#player")
    await screen.wait_for_function(HLS_PLAYING, timeout=WAIT_MS)

    report = await studio_ctx.new_page()
    await goto(report, f"{base}/api/broadcasts/{bid}/report?format=html&token={host}")
    await report.wait_for_function("() => window.jt && window.jt.ready", timeout=WAIT_MS)

    await end(server, bid, host)
    await replay_ready(server.http, bid)
    replay = await (await seen.watch(await contexts(**phone))).new_page()
    await goto(replay, f"{base}/replay/{bid}")
    await replay.wait_for_function("() => window.jt && window.jt.replay", timeout=WAIT_MS)
    await replay.locator("#chapters [data-action='chapter']").first.click()  # the pin: plays
    await wait_advancing(replay, "#player")
    assert not seen, f"the pages broke their policy:\n{seen}"

    # and a script the policy forbids is refused, and heard of
    await watch.evaluate("""() => {
        const s = document.createElement("script");
        s.textContent = "window.__inline = true";
        document.body.append(s);
    }""")
    await tb.eventually(lambda: bool(seen.events), "the refused script to be reported")
    assert await watch.evaluate("window.__inline === undefined")
    assert [e["directive"] for e in seen.events] == ["script-src-elem"], str(seen)
