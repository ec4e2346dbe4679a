"""Phone-first: the studio run by one merchant with one thumb, and the viewer page buying in two
taps in four languages and currencies, on 390x844 and 360x800 touch screens (and a landscape show
on a phone turned sideways). Same Chromium, server and helpers as ``test_pages``.

"Fits" means: the page itself does not scroll (only the sheet and the chat do, inside), every
visible control outside a sheet or dialog is on screen, every sheet or dialog fits the screen, every
visible control is at least 44x44 CSS px, and every button, menu and switch has a ``data-action``
hook. The console stays free of errors throughout.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from conftest import make_settings
from jangteo.testkit.server import RunningServer, bearer, running_server

from . import test_browser as tb
from .helpers import NEEDS_CHROMIUM, Contexts
from .test_pages import (
    PHONE,
    SMALL_PHONE,
    WAIT_MS,
    chat_line,
    put_product,
    send_chat,
)

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Page, ViewportSize


pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(120),
    NEEDS_CHROMIUM,
]

STATIC = Path(__file__).resolve().parents[1] / "jangteo" / "static"
SAMPLE_RATES = STATIC.parent / "fx-rates.sample.json"
SIDEWAYS: ViewportSize = {"width": 844, "height": 390}  # a phone turned for a landscape show

FITS_JS = """() => {
    const vw = innerWidth, vh = innerHeight, page = document.scrollingElement;
    const problems = [];
    if (page.scrollHeight > vh + 1 || page.scrollWidth > vw + 1) {
        problems.push(`the page scrolls: ${page.scrollWidth}x${page.scrollHeight} in ${vw}x${vh}`);
    }
    const name = (el) => (el.id ? `#${el.id}` : "")
        + (el.dataset.action ? `[${el.dataset.action}]` : "")
        + ` "${(el.getAttribute("aria-label") || el.textContent || "").trim().slice(0, 24)}"`;
    const shown = (el) => {
        const r = el.getBoundingClientRect(), s = getComputedStyle(el);
        return r.width > 0 && r.height > 0 && s.visibility !== "hidden" && !el.closest(".sr-only");
    };
    const off = (r) => r.left < -1 || r.top < -1 || r.right > vw + 1 || r.bottom > vh + 1;
    for (const box of document.querySelectorAll("#sheet, dialog[open]")) {
        if (shown(box) && off(box.getBoundingClientRect())) {
            problems.push(`${name(box)} off screen`);
        }
    }
    for (const el of document.querySelectorAll("button, select, input, summary, a[href]")) {
        if (!shown(el)) continue;
        // a checkbox is tapped through its label
        const target = el.type === "checkbox" ? el.closest("label") || el : el;
        const r = target.getBoundingClientRect();
        if (!el.closest("#sheet, dialog") && off(r)) problems.push(`${name(el)} off screen`);
        if (el.matches("button, select, input[type=checkbox]") && !el.dataset.action) {
            problems.push(`${name(el)} has no data-action hook`);
        }
        if (r.width < 43.5 || r.height < 43.5) {
            problems.push(`${name(el)} is ${Math.round(r.width)}x${Math.round(r.height)}`);
        }
    }
    return problems;
}"""

# navigator.wakeLock, recorded: Chromium grants it only to a visible, focused, secure page.
WAKE_LOCK_JS = """(() => {
    window.__wake = {requests: 0, released: 0};
    Object.defineProperty(navigator, "wakeLock", {configurable: true, value: {
        async request(type) {
            window.__wake.requests++;
            const listeners = [];
            return {type, released: false,
                addEventListener(_e, f) { listeners.push(f); },
                async release() { this.released = true; window.__wake.released++;
                                  listeners.forEach((f) => f()); }};
        }}});
})()"""


def catalog(lang: str) -> dict[str, str]:
    doc: dict[str, str] = json.loads((STATIC / f"i18n-{lang}.json").read_text("utf-8"))
    return doc


@pytest.fixture
async def server(redis_url: str) -> AsyncIterator[RunningServer]:
    """The test server, with the sample exchange rates the demo ships."""
    async with running_server(make_settings(redis_url, fx_rates_file=str(SAMPLE_RATES))) as s:
        yield s


async def new_broadcast(server: RunningServer, title: str, orientation: str) -> dict[str, str]:
    r = await server.http.post("/api/broadcasts", headers=server.admin(),
                               json={"title": title, "orientation": orientation})  # fmt: skip
    assert r.status_code == 201, r.text
    doc: dict[str, str] = r.json()
    assert doc["orientation"] == orientation
    return doc


async def phone(contexts: Contexts, size: ViewportSize, **kw: Any) -> BrowserContext:
    ctx = await contexts(viewport=size, is_mobile=True, has_touch=True, **kw)
    await ctx.add_init_script(WAKE_LOCK_JS)
    return ctx


async def console_errors(page: Page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"{m.text} ({m.location.get('url')})")
            if m.type == "error" else None)  # fmt: skip
    return errors


async def assert_fits(page: Page, what: str) -> None:
    problems = await page.evaluate(FITS_JS)
    if problems:  # what it looked like, for whoever fixes it
        slug = re.sub(r"\W+", "-", what)
        await page.screenshot(path=tb.screenshot_path(f"unfit-{slug}.png"))
    assert not problems, f"{what}: {problems}"


async def body_has(page: Page, attr: str, present: bool = True) -> None:
    js = f"() => document.body.hasAttribute('data-{attr}') === {'true' if present else 'false'}"
    await page.wait_for_function(js, timeout=WAIT_MS)


def size_id(size: ViewportSize) -> str:
    return f"{size['width']}x{size['height']}"


SHOWS = [(PHONE, "portrait"), (SMALL_PHONE, "portrait"), (SIDEWAYS, "landscape")]


@pytest.mark.parametrize(("size", "orientation"), SHOWS, ids=[size_id(s) for s, _ in SHOWS])
async def test_one_merchant_runs_the_show_from_a_phone(
    server: RunningServer, contexts: Contexts, size: ViewportSize, orientation: str
) -> None:
    """Go live, pin with a deal, flash a product from the camera, see an order come in, delete a
    viewer's line by tapping it, finish: by touch, in the screen, the screen kept awake."""
    b = await new_broadcast(server, "동문시장 한라봉", orientation)
    bid, host, base = b["id"], b["host_token"], server.base_url
    await put_product(server, bid, host, "hallabong", name="한라봉 3kg", price=29900, stock=20)
    await put_product(server, bid, host, "tea", name="감귤 녹차", price=12000, stock=5)

    studio = await (await phone(contexts, size)).new_page()
    errors = await console_errors(studio)
    await studio.goto(f"{base}/studio/{bid}?token={host}")
    await studio.wait_for_function(
        "() => window.jt && window.jt.chat.state === 'open'", timeout=WAIT_MS
    )
    assert await studio.evaluate("document.body.dataset.orientation") == orientation
    await studio.wait_for_selector("[data-action='go-live']:not([disabled])", timeout=WAIT_MS)
    await assert_fits(studio, "before going live")

    # One tap: live, the screen kept on, the picture viewers see fills the screen.
    await studio.locator("[data-action='go-live']").tap()
    await studio.wait_for_function("() => window.jt.state === 'connected'", timeout=WAIT_MS)
    await body_has(studio, "on-air")
    assert await studio.evaluate("window.jt.awake"), "a wake lock is held while live"
    await studio.wait_for_selector("#elapsed:not([hidden])", timeout=WAIT_MS)
    assert re.fullmatch(r"\d+:\d\d", (await studio.inner_text("#elapsed")).strip())
    assert await studio.is_hidden("#golive") and await studio.is_visible("[data-action='finish']")
    await assert_fits(studio, "live")

    # The product sheet: a deal, then pin; the sheet folds away and the pin is on the air.
    await studio.locator("[data-action='products']").tap()
    await body_has(studio, "sheet")
    await assert_fits(studio, "product sheet")
    await studio.get_by_label("특가 (원) · Deal price (won)").fill("25900")
    await studio.locator("[data-action='pin'][data-product-id='hallabong']").tap()
    await body_has(studio, "sheet", present=False)
    r = await server.http.get(f"/api/broadcasts/{bid}/products")
    assert r.json()["pinned"]["product_id"] == "hallabong", r.text
    assert r.json()["pinned"]["deal_price"] == 25900

    # A viewer on another phone chats and buys; the studio gets a toast and the line.
    watch_ctx = await phone(contexts, size)
    watch = await watch_ctx.new_page()
    watch_errors = await console_errors(watch)
    await watch.goto(f"{base}/watch/{bid}")
    await watch.wait_for_function(
        "() => window.jt && window.jt.chat.state === 'open'", timeout=WAIT_MS
    )
    await send_chat(watch, "한라봉 달아요?")
    await watch.wait_for_selector("#product:not([hidden])", timeout=WAIT_MS)
    await watch.wait_for_function("() => document.querySelector('#player').readyState >= 2",
                                  timeout=WAIT_MS)  # fmt: skip
    await assert_fits(watch, "watching")
    await chat_line(watch, "한라봉 달아요?").wait_for(timeout=WAIT_MS)
    shot = f"{orientation}-{size_id(size)}.png"
    await watch.screenshot(path=tb.screenshot_path(f"phone-watch-{shot}"))
    await watch.locator("[data-action='buy']").tap()
    await watch.locator("[data-action='confirm']").tap()
    await watch.wait_for_function(
        "() => document.querySelector('#confirm-msg').textContent.includes('결제 완료')",
        timeout=WAIT_MS,
    )
    toast = studio.locator("#toasts .toast", has_text="한라봉 3kg")
    await toast.wait_for(timeout=WAIT_MS)
    assert "1개" in await toast.inner_text()

    # Tap the line: its moderation opens; delete it, and it is gone on the viewer's phone too.
    line = chat_line(studio, "한라봉 달아요?")
    await line.locator(".text").tap()
    await line.locator("button", has_text="삭제").tap()
    await chat_line(watch, "한라봉 달아요?").wait_for(state="detached", timeout=WAIT_MS)
    await line.wait_for(state="detached", timeout=WAIT_MS)

    # Flash product: the live picture becomes the photo of a new product, pinned at once.
    await studio.locator("[data-action='flash-open']").tap()
    await body_has(studio, "sheet")
    await assert_fits(studio, "flash sheet")
    await studio.get_by_label("깜짝 상품명 · Flash product name").fill("못난이 귤 한 봉지")
    await studio.get_by_label("깜짝 가격 (원) · Flash price (won)").fill("5000")
    await studio.get_by_label("깜짝 재고 · Flash stock").fill("7")
    await studio.locator("[data-action='flash']").tap()
    await body_has(studio, "sheet", present=False)
    r = await server.http.get(f"/api/broadcasts/{bid}/products")
    flash = next(p for p in r.json()["products"] if p["name"] == "못난이 귤 한 봉지")
    assert flash["image"], "the flash product has the live picture as its photo"
    await studio.wait_for_function(
        "([pid]) => window.jt.shop.pinned()?.id === pid", arg=[flash["id"]], timeout=WAIT_MS
    )

    # The rest is a sheet away; it fits too.
    await studio.locator("[data-action='more']").tap()
    await body_has(studio, "sheet")
    await assert_fits(studio, "more sheet")
    await studio.locator("[data-action='close-sheet']").tap()
    await studio.screenshot(path=tb.screenshot_path(f"phone-studio-{shot}"))

    # Finish, in two taps: the show ends and the screen may sleep again.
    await studio.locator("[data-action='finish']").tap()
    await studio.locator("[data-action='finish-confirm']").tap()
    await studio.wait_for_function(
        "() => document.querySelector('#badge').dataset.status === 'ended'", timeout=WAIT_MS
    )
    await studio.wait_for_function("() => !window.jt.awake", timeout=WAIT_MS)
    assert await studio.evaluate("window.__wake") == {"requests": 1, "released": 1}
    assert not errors and not watch_errors, (errors, watch_errors)


BUYERS = [("ko", None), ("en", "USD"), ("zh", "CNY"), ("ja", "JPY")]


@pytest.mark.parametrize(("size", "orientation"), SHOWS, ids=[size_id(s) for s, _ in SHOWS])
async def test_viewers_buy_in_two_taps_in_their_language_and_currency(
    server: RunningServer, contexts: Contexts, size: ViewportSize, orientation: str
) -> None:
    """Korean, English, Chinese and Japanese buyers, each seeing won and about that in their own
    currency: Buy, Confirm, paid. The order is in won and records what the buyer was shown."""
    b = await new_broadcast(server, "동문시장 라이브", orientation)
    bid, host, base = b["id"], b["host_token"], server.base_url
    await server.ctx.store.ensure_live(bid)
    await put_product(server, bid, host, "hallabong", name="한라봉 3kg", price=29900, stock=50)
    r = await server.http.post(f"/api/broadcasts/{bid}/pin", headers=bearer(host),
                               json={"product_id": "hallabong"})  # fmt: skip
    assert r.status_code == 200, r.text
    rates = json.loads(SAMPLE_RATES.read_text("utf-8"))

    for lang, currency in BUYERS:
        words = catalog(lang)
        query = f"?lang={lang}" + (f"&currency={currency}" if currency else "")
        page = await (await phone(contexts, size)).new_page()
        errors = await console_errors(page)
        await page.goto(f"{base}/watch/{bid}{query}")
        await page.wait_for_function("() => window.jt && window.jt.chat.state === 'open'",
                                     timeout=WAIT_MS)  # fmt: skip
        await page.wait_for_selector("#product:not([hidden])", timeout=WAIT_MS)
        assert await page.get_attribute("html", "lang") == lang
        assert await page.locator("[data-action='buy']").inner_text() == words["product.buy"]
        shown = await page.inner_text("#p-price")
        if currency:
            rate = rates["rates"][currency]
            amount = round(29900 * rate["per_won"], rate["decimals"])
            assert "≈" in shown and f"{amount:,.{rate['decimals']}f}" in shown, (lang, shown)
        else:
            assert shown == "29,900원"
        await assert_fits(page, f"watch {lang}")

        await page.locator("[data-action='buy']").tap()  # one
        await page.wait_for_selector("#buy-dialog[open]", timeout=WAIT_MS)
        await assert_fits(page, f"order step {lang}")
        await page.locator("[data-action='confirm']").tap()  # two
        await page.wait_for_function(
            "([text]) => document.querySelector('#confirm-msg').textContent === text",
            arg=[words["buy.paid"]], timeout=WAIT_MS,
        )  # fmt: skip
        await assert_fits(page, f"paid {lang}")
        assert not errors, (lang, errors)

    r = await server.http.get(f"/api/broadcasts/{bid}/orders", headers=bearer(host))
    orders = sorted(r.json()["orders"], key=lambda o: o["created_at"])
    assert [o["status"] for o in orders] == ["paid"] * len(BUYERS)
    assert all(o["total"] == 29900 for o in orders), "charged in won"
    for order, (_, currency) in zip(orders, BUYERS, strict=True):
        converted = order["shown"].get("converted")
        if currency is None:
            assert converted is None
        else:
            rate = rates["rates"][currency]
            assert converted["currency"] == currency
            assert converted["amount"] == round(29900 * rate["per_won"], rate["decimals"])
            assert converted["rates_date"] == rates["date"]
