"""axe-core on the studio and the watch page: no serious or critical WCAG 2.1 A/AA or
best-practice violations, on a desktop and on a phone.

Same browser, server and contexts as ``test_pages`` (whose fixtures and helpers this reuses); the
engine is the vendored axe-core (media_tests/axe.py, media_tests/vendor/VENDORED.md).
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, Any

import pytest

from jangteo.testkit.server import RunningServer

from . import test_browser as tb
from .axe import axe_violations, describe
from .test_pages import (
    DESKTOP,
    PHONE,
    WAIT_MS,
    Contexts,
    bearer,
    browser,
    chat_line,
    contexts,
    open_studio,
    open_watch,
    put_product,
    send_chat,
)

if TYPE_CHECKING:
    from playwright.async_api import Page

__all__ = ["browser", "contexts"]  # fixtures, used by name

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(90),
    pytest.mark.skipif(shutil.which(tb.CHROMIUM) is None, reason=f"no Chromium at {tb.CHROMIUM}"),
]

# Folded parts of the studio (add a product, restream destination) are opened so axe sees them.
OPEN_DETAILS = "() => document.querySelectorAll('details').forEach((d) => { d.open = true; })"


async def test_pages_have_no_serious_axe_violations(
    server: RunningServer, contexts: Contexts
) -> None:
    """The studio (desktop and phone) and the watch page (phone) with a pinned product and a chat
    line: axe finds nothing serious or critical."""
    b = await server.create_broadcast("접근성 검사")
    bid, host, base = b["id"], b["host_token"], server.base_url
    await put_product(server, bid, host, "p1", name="햇감자 3kg", price=12900, list_price=15900,
                      stock=4, per_buyer_limit=2)  # fmt: skip
    r = await server.http.post(f"/api/broadcasts/{bid}/pin", headers=bearer(host),
                               json={"product_id": "p1"})  # fmt: skip
    assert r.status_code == 200, r.text

    phone: dict[str, Any] = {"viewport": PHONE, "is_mobile": True, "has_touch": True}
    studio = await open_studio(await contexts(viewport=DESKTOP), base, bid, host)
    watch = await open_watch(await contexts(**phone), base, bid)
    await watch.wait_for_selector("#product:not([hidden])", timeout=WAIT_MS)
    await send_chat(watch, "접근성 확인")  # a chat line, with the host's moderation buttons
    await chat_line(studio, "접근성 확인").wait_for(timeout=WAIT_MS)
    await chat_line(watch, "접근성 확인").wait_for(timeout=WAIT_MS)
    studio_phone = await open_studio(await contexts(**phone), base, bid, host)

    found: dict[str, list[dict[str, Any]]] = {}
    pages: tuple[tuple[str, Page, str], ...] = (  # name, page, shown once the pin is drawn
        ("studio (desktop 1280x1000)", studio, "#pinned-box:not([hidden])"),
        ("studio (phone 390x844)", studio_phone, "#pinned-box:not([hidden])"),
        ("watch (phone 390x844)", watch, "#product:not([hidden])"),
    )
    for name, page, ready in pages:
        await page.wait_for_selector(ready, timeout=WAIT_MS)
        await page.evaluate(OPEN_DETAILS)
        found[name] = await axe_violations(page)

    report = "\n\n".join(f"{name}: {describe(v)}" for name, v in found.items() if v)
    assert not report, "serious/critical axe violations\n\n" + report
