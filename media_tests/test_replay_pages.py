"""The pages around the live show: the market screen (LL-HLS through hls.js), the replay with its
shoppable chapters, and the watch page handing over to the replay when the show ends.

Debian's Chromium through Playwright, as in ``test_pages`` (its fixtures, helpers and waits); a
real server that records (``record=True``) into the test's own directory, and a synthetic
publisher (test pattern + tone) over WHIP. HLS is plain HTTP: nothing here needs ICE. Screenshots
go to artifacts/ (git-ignored).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from jangteo.testkit.server import RunningServer, bearer

from . import test_browser as tb
from . import test_pages as tp
from .helpers import NEEDS_CHROMIUM, Contexts
from .test_record import publish, replay_ready

if TYPE_CHECKING:
    from playwright.async_api import Page

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(90),
    NEEDS_CHROMIUM,
]

WAIT_MS = tb.WAIT_MS
PHONE = tp.PHONE
SCREEN = {"width": 1280, "height": 720}

# The pages' own state, read in the page: time, whether it plays, what hls.js is doing.
VIDEO_AT = "(v) => ({t: v.currentTime, paused: v.paused, ready: v.readyState})"
HLS_STATE = """() => {
    const hls = window.jt.hls;
    const level = hls.levels[hls.currentLevel >= 0 ? hls.currentLevel : 0];
    const details = level && level.details;
    return {lowLatency: hls.config.lowLatencyMode, live: !!(details && details.live),
            parts: details && details.partList ? details.partList.length : 0,
            latency: hls.latency};
}"""
NO_SIDEWAYS_SCROLL = "() => [innerWidth, document.documentElement.scrollWidth]"


# -- fixtures and helpers ------------------------------------------------------------------------
async def pin(server: RunningServer, bid: str, host: str, pid: str) -> None:
    r = await server.http.post(f"/api/broadcasts/{bid}/pin", headers=bearer(host),
                               json={"product_id": pid})  # fmt: skip
    assert r.status_code == 200, r.text


async def end(server: RunningServer, bid: str, host: str) -> None:
    r = await server.http.post(f"/api/broadcasts/{bid}/end", headers=bearer(host))
    assert r.status_code == 200, r.text


async def live_picture(server: RunningServer, bid: str) -> None:
    media = server.ctx.hub.get(bid)
    assert media is not None
    await tb.eventually(lambda: not media.compositor.on_slate, "the compositor to leave the slate")


def mmss(seconds: float) -> str:
    n = int(seconds)
    return f"{n // 60}:{n % 60:02d}"


async def wait_advancing(page: Page, selector: str) -> float:
    """The <video>'s currentTime moves on by half a second while playing; returns where it was."""
    video = await page.query_selector(selector)
    assert video is not None
    t0: float = (await video.evaluate(VIDEO_AT))["t"]
    await page.wait_for_function(
        "([v, t0]) => !v.paused && v.currentTime > t0 + 0.5", arg=[video, t0], timeout=WAIT_MS
    )
    return t0


# -- tests ---------------------------------------------------------------------------------------
async def test_market_screen_plays_low_latency_hls(
    recording: RunningServer, contexts: Contexts
) -> None:
    """The screen waits for the show, plays its LL-HLS through hls.js (low-latency mode, parts),
    shows the pinned product in large type, and moves on to the replay when the show ends."""
    server = recording
    b = await server.create_broadcast("시장 골목 화면")
    bid, host, base = b["id"], b["host_token"], server.base_url
    await tp.put_product(server, bid, host, "apple", name="햇사과 2kg", price=19900, stock=7)
    screen = await (await contexts(viewport=SCREEN)).new_page()
    await screen.goto(f"{base}/screen/{bid}")
    await screen.wait_for_function(
        "() => window.jt && window.jt.state === 'waiting'", timeout=WAIT_MS
    )
    assert "곧 방송이 시작됩니다" in await screen.inner_text("#notice")

    pub = await publish(server, bid, host)
    try:
        await live_picture(server, bid)
        await pin(server, bid, host, "apple")
        # the screen's next status check (every 5 s) starts the player
        await tb.wait_playing(screen, "#player")
        await screen.wait_for_function("() => window.jt.state === 'playing'", timeout=WAIT_MS)
        tb.assert_real_picture(await tb.snapshot(screen, "#player"), "market screen")
        state = await screen.evaluate(HLS_STATE)
        assert state["lowLatency"] is True and state["live"], state
        assert state["parts"] > 0, f"hls.js reads no EXT-X-PART: {state}"
        assert await screen.is_hidden("#notice")

        await screen.wait_for_selector("#product:not([hidden])", timeout=WAIT_MS)
        assert await screen.inner_text("#p-name") == "햇사과 2kg"
        assert await screen.inner_text("#p-price") == "19,900원"
        assert "남은 수량 7개" in await screen.inner_text("#p-stock")
        assert "시장 골목 화면" in await screen.inner_text("#title")
        size = await screen.evaluate(
            "() => { const r = document.querySelector('#player').getBoundingClientRect();"
            " return [r.width * r.height, innerWidth * innerHeight]; }"
        )
        assert size[0] >= 0.5 * size[1], f"the picture does not fill the screen: {size}"
        await tp.save(screen, "screen.png")
        await screen.set_viewport_size({"width": 720, "height": 1280})  # a portrait screen
        await tp.save(screen, "screen-portrait.png")

        await end(server, bid, host)
    finally:
        await pub.aclose()
    await screen.wait_for_url(f"**/replay/{bid}", timeout=WAIT_MS)
    await screen.wait_for_function("() => window.jt && window.jt.replay", timeout=WAIT_MS)


async def test_replay_chapters_seek_and_buy(recording: RunningServer, contexts: Contexts) -> None:
    """A show with two pins becomes a replay: its page lists both products as chapters, a tap
    seeks to the pin and plays, and Buy orders at the product's price, marked as from the
    replay; stock goes down on the page and a sold-out product says so instead of a button."""
    server = recording
    b = await server.create_broadcast("다시보기 장터")
    bid, host, base = b["id"], b["host_token"], server.base_url
    await tp.put_product(server, bid, host, "p1", name="제주 감귤 5kg", price=29900, stock=5)
    options = [{"id": "s", "name": "소과", "stock": 4}, {"id": "l", "name": "대과", "stock": 6}]
    await tp.put_product(server, bid, host, "p2", name="햇사과 2kg", price=19900, options=options)
    pub = await publish(server, bid, host)
    try:
        await live_picture(server, bid)
        # the show goes on for a while around its pins: wall-clock time, no event marks it
        await asyncio.sleep(1)
        await pin(server, bid, host, "p1")
        await asyncio.sleep(3)
        await pin(server, bid, host, "p2")
        await asyncio.sleep(3)
        await end(server, bid, host)
    finally:
        await pub.aclose()
    doc = await replay_ready(server.http, bid)
    chapters = doc["chapters"]
    assert [c["product_id"] for c in chapters] == ["p1", "p2"], chapters
    # the first product sold out since the show
    await tp.put_product(server, bid, host, "p1", name="제주 감귤 5kg", price=29900, stock=0)

    page = await (await contexts(viewport=PHONE, is_mobile=True, has_touch=True)).new_page()
    await page.goto(f"{base}/replay/{bid}")
    await page.wait_for_function(
        "() => document.querySelectorAll('#chapters li .stock, #chapters li .sold-out')"
        ".length === 2",
        timeout=WAIT_MS,
    )
    items = page.locator("#chapters li")
    assert [await li.get_attribute("data-product") for li in await items.all()] == ["p1", "p2"]
    first, second = items.nth(0), items.nth(1)
    text = await first.inner_text()
    assert "제주 감귤 5kg" in text and "29,900원" in text and mmss(chapters[0]["t_s"]) in text
    assert "품절 · Sold out" in text and await first.locator("[data-action='buy']").count() == 0
    text = await second.inner_text()
    assert "햇사과 2kg" in text and "19,900원" in text and mmss(chapters[1]["t_s"]) in text
    assert "남은 수량 10개" in text
    assert await second.locator("[data-action='chapter']").get_attribute("data-t") == str(
        chapters[1]["t_s"]
    )

    # Tap the second chapter: the video lands on its moment, plays on, and the chapter is lit.
    t2 = chapters[1]["t_s"]
    assert t2 > 2, f"the second pin is too early to tell a seek from the start: {t2}"
    video = await page.query_selector("#player")
    assert (await video.evaluate(VIDEO_AT))["t"] < 1  # type: ignore[union-attr]
    await second.locator("[data-action='chapter']").click()
    await page.wait_for_function(
        "([v, t]) => v.readyState >= 2 && !v.seeking && Math.abs(v.currentTime - t) <= 1",
        arg=[video, t2],
        timeout=WAIT_MS,
    )
    landed = await wait_advancing(page, "#player")
    assert abs(landed - t2) <= 1, (landed, t2)
    await page.wait_for_selector("#chapters li[data-product='p2'].current", timeout=WAIT_MS)
    assert await second.get_attribute("aria-current") == "true"
    assert await first.get_attribute("aria-current") is None
    assert await page.evaluate("window.jt.hls !== null"), "played through hls.js"
    tb.assert_real_picture(await tb.snapshot(page, "#player"), "replay page")

    # Buy from the replay: option and quantity, then confirm (placed and paid).
    await second.locator("[data-action='buy']").click()
    dialog = page.get_by_role("dialog", name="주문", exact=True)
    await dialog.wait_for(timeout=WAIT_MS)
    await page.get_by_label("옵션", exact=True).select_option("l")
    await page.get_by_label("수량", exact=True).fill("2")
    assert await page.inner_text("#buy-total") == "39,800원"
    await page.locator('[data-action="confirm"]').click()  # the second tap: placed and paid
    await page.wait_for_selector("#confirm-step:not([hidden])", timeout=WAIT_MS)
    assert await page.inner_text("#c-total") == "39,800원"
    await page.wait_for_function(
        "() => document.querySelector('#confirm-msg').textContent.includes('결제 완료')",
        timeout=WAIT_MS,
    )
    await page.locator("#confirm-close").click()
    await page.wait_for_selector("#order-list li[data-status='paid']", timeout=WAIT_MS)
    await page.locator("#chapters li[data-product='p2'] .stock", has_text="남은 수량 8개").wait_for(
        timeout=WAIT_MS
    )

    r = await server.http.get(f"/api/broadcasts/{bid}/orders", headers=bearer(host))
    assert r.status_code == 200, r.text
    (order,) = r.json()["orders"]
    assert order["product_id"] == "p2" and order["qty"] == 2 and order["status"] == "paid", order
    assert order["shown"]["via"] == "replay", order
    assert order["unit_price"] == 19900, order

    # A phone's screen: nothing wider, labelled controls, readable text.
    sizes = await page.evaluate(NO_SIDEWAYS_SCROLL)
    assert sizes[1] <= sizes[0], f"the replay page scrolls sideways on a phone: {sizes}"
    found = await page.evaluate(tp.A11Y_JS)
    assert not found["unnamed"] and not found["low"], found
    await tp.save(page, "replay-phone.png")


async def test_watch_page_hands_over_to_the_replay(
    recording: RunningServer, contexts: Contexts
) -> None:
    """When the show ends the watch page offers its replay, and opens it once it is ready."""
    server = recording
    b = await server.create_broadcast("끝나면 다시보기")
    bid, host, base = b["id"], b["host_token"], server.base_url
    pub = await publish(server, bid, host)
    try:
        await live_picture(server, bid)
        watch = await tp.open_watch(
            await contexts(viewport=PHONE, is_mobile=True, has_touch=True), base, bid
        )
        await tb.wait_playing(watch, "#player")
        assert await watch.is_hidden("[data-action='replay']")
        await end(server, bid, host)
    finally:
        await pub.aclose()
    link = watch.locator('[data-action="replay"]')
    await link.wait_for(timeout=WAIT_MS)
    assert await link.get_attribute("href") == f"/replay/{bid}"
    await watch.wait_for_selector("#badge[data-status='ended']", timeout=WAIT_MS)
    await tp.save(watch, "watch-replay-offer.png")
    # once the replay is ready the page opens it by itself
    await watch.wait_for_url(f"**/replay/{bid}", timeout=WAIT_MS)
    await watch.wait_for_function(
        "() => window.jt && window.jt.replay && window.jt.replay.status === 'ready'",
        timeout=WAIT_MS,
    )
