"""axe-core on the studio and the watch page: no serious or critical WCAG 2.1 A/AA or
best-practice violations, on a desktop and on a phone.

Same browser, server and contexts as ``test_pages`` (whose fixtures and helpers this reuses); the
engine is the vendored axe-core (media_tests/axe.py, media_tests/vendor/VENDORED.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from jangteo.testkit.server import RunningServer

from .axe import axe_violations, describe
from .helpers import NEEDS_CHROMIUM, Contexts
from .test_pages import (
    DESKTOP,
    PHONE,
    SMALL_PHONE,
    WAIT_MS,
    chat_line,
    open_studio,
    open_watch,
    pinned_show,
    send_chat,
)

if TYPE_CHECKING:
    from playwright.async_api import Page


pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(90),
    NEEDS_CHROMIUM,
]

# axe-core goes in as an inline script and compiles its messages with `new Function`: the pages'
# Content-Security-Policy refuses both (jangteo/pages.py), so these contexts bypass it (the pages
# under it: test_csp.py).
AXE = {"bypass_csp": True}
# Folded parts of the studio (add a product, restream destination) are opened so axe sees them.
OPEN_DETAILS = "() => document.querySelectorAll('details').forEach((d) => { d.open = true; })"


async def test_pages_have_no_serious_axe_violations(
    server: RunningServer, contexts: Contexts
) -> None:
    """The studio (desktop; phone with each of its sheets) and the watch page (phone, and its order
    step) at 390x844 and 360x800, with a pinned product and a chat line: axe finds nothing serious
    or critical."""
    bid, host, base = await pinned_show(server, "접근성 검사")

    studio = await open_studio(await contexts(viewport=DESKTOP, **AXE), base, bid, host)
    found: dict[str, list[dict[str, Any]]] = {}

    async def check(name: str, page: Page) -> None:
        await page.evaluate(OPEN_DETAILS)
        found[name] = await axe_violations(page)

    for size in (PHONE, SMALL_PHONE):
        shape = f"{size['width']}x{size['height']}"
        phone: dict[str, Any] = {"viewport": size, "is_mobile": True, "has_touch": True, **AXE}
        watch = await open_watch(await contexts(**phone), base, bid)
        await watch.wait_for_selector("#product:not([hidden])", timeout=WAIT_MS)
        await send_chat(watch, f"접근성 확인 {shape}")  # a chat line, with moderation buttons
        await chat_line(studio, f"접근성 확인 {shape}").wait_for(timeout=WAIT_MS)
        await chat_line(watch, f"접근성 확인 {shape}").wait_for(timeout=WAIT_MS)
        await check(f"watch (phone {shape})", watch)
        await watch.locator('[data-action="buy"]').click()
        await watch.get_by_role("dialog", name="주문", exact=True).wait_for(timeout=WAIT_MS)
        await check(f"watch, order step (phone {shape})", watch)

        studio_phone = await open_studio(await contexts(**phone), base, bid, host)
        await studio_phone.wait_for_function(
            "() => window.jt.shop.pinned() !== null", timeout=WAIT_MS
        )
        await chat_line(studio_phone, f"접근성 확인 {shape}").click()  # its moderation opens
        await check(f"studio (phone {shape})", studio_phone)
        for sheet in ("products", "flash", "more"):
            await studio_phone.locator(f'button[data-sheet="{sheet}"]').click()
            await studio_phone.wait_for_function(
                "([s]) => document.body.dataset.sheet === s", arg=[sheet], timeout=WAIT_MS
            )
            await check(f"studio, {sheet} sheet (phone {shape})", studio_phone)
            await studio_phone.locator('[data-action="close-sheet"]').click()

    await studio.wait_for_selector("#pinned-box:not([hidden])", timeout=WAIT_MS)
    await check("studio (desktop 1280x1000)", studio)

    report = "\n\n".join(f"{name}: {describe(v)}" for name, v in found.items() if v)
    assert not report, "serious/critical axe violations\n\n" + report
