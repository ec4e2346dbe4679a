"""The studio and watch pages as a merchant and a buyer use them: Debian's Chromium through
Playwright, a real server and Redis, the same network rules as ``test_browser`` (loopback or the
netns veth only, ``iceServers: []``, camera and microphone granted so Chromium gathers there).

The studio runs in a desktop-sized context, the watch page in a phone-sized one (mobile-first).
Everything waits on events in the pages (``wait_for_function`` / ``wait_for_selector``); the
product card the server draws into the video is checked on the viewer's decoded frames.
Screenshots go to artifacts/ (git-ignored).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import cv2
import pytest

from jangteo.testkit.server import RunningServer, bearer
from stream.deliver.whep import Viewer

from . import test_browser as tb
from .helpers import NEEDS_CHROMIUM, Contexts

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Page, ViewportSize

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(60),
    NEEDS_CHROMIUM,
]

WAIT_MS = tb.WAIT_MS
DESKTOP: ViewportSize = {"width": 1280, "height": 1000}
PHONE: ViewportSize = {"width": 390, "height": 844}
SMALL_PHONE: ViewportSize = {"width": 360, "height": 800}

# Fractions of the product card's region (lower right) of the <video>'s decoded picture that are
# dark (the card's panel, blended over the picture) and yellow (its price). The server draws the
# card (stream/compose/overlay.py): 5% margins, 560x244 of 1280x720 -> x 0.51..0.95, y 0.61..0.95.
CARD_JS = """(v) => {
    const c = document.createElement("canvas");
    c.width = v.videoWidth; c.height = v.videoHeight;
    const g = c.getContext("2d", {willReadFrequently: true});
    g.drawImage(v, 0, 0, c.width, c.height);
    const x0 = Math.round(0.53 * c.width), x1 = Math.round(0.94 * c.width);
    const y0 = Math.round(0.63 * c.height), y1 = Math.round(0.94 * c.height);
    const d = g.getImageData(x0, y0, x1 - x0, y1 - y0).data;
    let dark = 0, yellow = 0;
    for (let i = 0; i < d.length; i += 4) {
        const r = d[i], gr = d[i + 1], b = d[i + 2];
        if (0.299 * r + 0.587 * gr + 0.114 * b < 55) dark++;
        if (r > 190 && gr > 150 && b < 110) yellow++;
    }
    const n = d.length / 4;
    return {dark: dark / n, yellow: yellow / n};
}"""
CARD_SHOWN = f"(v) => {{ const f = ({CARD_JS})(v); return f.dark > 0.3 && f.yellow > 0.001; }}"

# Accessible basics, checked in the page: every visible control has a name, text contrast is at
# least 4.5:1 (3:1 for large text) against the nearest opaque background (WCAG 2 formula).
A11Y_JS = """() => {
    const visible = (el) => {
        const r = el.getBoundingClientRect();
        const s = getComputedStyle(el);
        return r.width > 0 && r.height > 0 && s.visibility !== "hidden" && !el.closest("[hidden]")
            && !el.closest(".sr-only");
    };
    const unnamed = [];
    for (const el of document.querySelectorAll("button, input, select, textarea")) {
        if (!visible(el)) continue;
        const by = el.getAttribute("aria-labelledby");
        const name = el.getAttribute("aria-label")
            || (el.labels && el.labels.length && el.labels[0].textContent.trim())
            || (el.tagName === "BUTTON" && el.textContent.trim())
            || (by && document.getElementById(by)?.textContent.trim());
        if (!name) unnamed.push(el.outerHTML.slice(0, 120));
    }
    const rgb = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
    const lum = ([r, g, b]) => {
        const f = (c) => {
            c /= 255;
            return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
        };
        return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const background = (el) => {
        for (let e = el; e; e = e.parentElement) {
            const c = rgb(getComputedStyle(e).backgroundColor);
            if (c.length >= 3 && (c.length < 4 || c[3] > 0.9)) return c.slice(0, 3);
        }
        return [15, 17, 21];
    };
    const low = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
        const el = n.parentElement;
        if (!n.textContent.trim() || !el || !visible(el) || el.closest(":disabled")
            || el.closest("video, script, style, [aria-hidden='true']")) continue;
        const s = getComputedStyle(el);
        if (Number(s.opacity) < 1) continue;
        const fg = lum(rgb(s.color).slice(0, 3)), bg = lum(background(el));
        const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
        const size = parseFloat(s.fontSize), bold = Number(s.fontWeight) >= 700;
        const need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
        if (ratio < need) low.push(`${n.textContent.trim().slice(0, 30)}: ${ratio.toFixed(2)}`);
    }
    return {unnamed, low};
}"""


# -- fixtures and helpers ------------------------------------------------------------------------


async def put_product(server: RunningServer, bid: str, host: str, pid: str, **body: Any) -> None:
    r = await server.http.put(f"/api/broadcasts/{bid}/products/{pid}", headers=bearer(host),
                              json={"price": 10000, "stock": 10} | body)  # fmt: skip
    assert r.status_code in (200, 201), r.text


async def pinned_show(server: RunningServer, title: str) -> tuple[str, str, str]:
    """A broadcast with one product pinned: (bid, host token, base URL)."""
    b = await server.create_broadcast(title)
    bid, host, base = b["id"], b["host_token"], server.base_url
    await put_product(server, bid, host, "p1", name="햇감자 3kg", price=12900, list_price=15900,
                      stock=4, per_buyer_limit=2)  # fmt: skip
    r = await server.http.post(f"/api/broadcasts/{bid}/pin", headers=bearer(host),
                               json={"product_id": "p1"})  # fmt: skip
    assert r.status_code == 200, r.text
    return bid, host, base


async def open_studio(
    ctx: BrowserContext, base: str, bid: str, token: str, query: str = ""
) -> Page:
    page = await ctx.new_page()
    await page.goto(f"{base}/studio/{bid}?token={token}{query}")
    await page.wait_for_function(
        "() => window.jt && window.jt.chat.state === 'open'", timeout=WAIT_MS
    )
    return page


async def go_live(studio: Page) -> None:
    await studio.wait_for_selector("#golive:not([disabled])", timeout=WAIT_MS)
    await studio.get_by_role("button", name="방송 시작 · Go live").click()
    await studio.wait_for_function("() => window.jt.state === 'connected'", timeout=WAIT_MS)


async def open_watch(ctx: BrowserContext, base: str, bid: str) -> Page:
    page = await ctx.new_page()
    await page.goto(f"{base}/watch/{bid}")
    await page.wait_for_function(
        "() => window.jt && window.jt.chat.state === 'open'", timeout=WAIT_MS
    )
    return page


async def send_chat(page: Page, text: str) -> None:
    await page.fill("#chat-input", text)
    await page.press("#chat-input", "Enter")


def chat_line(page: Page, text: str) -> Any:
    return page.locator("#chat-log li", has_text=text)


async def save(page: Page, name: str) -> None:
    await page.screenshot(path=tb.screenshot_path(name), full_page=True)


# -- tests ---------------------------------------------------------------------------------------
async def test_live_commerce_in_the_browser(server: RunningServer, contexts: Contexts) -> None:
    """Go live, play, chat, pin (card in the page and in the video), buy and confirm, delete."""
    b = await server.create_broadcast("제주 감귤 라이브")
    bid, host, base = b["id"], b["host_token"], server.base_url
    studio = await open_studio(await contexts(viewport=DESKTOP), base, bid, host)

    # The merchant adds a product from the studio.
    await studio.get_by_text("상품 추가 · Add a product").click()
    await studio.get_by_label("상품명 · Product name").fill("제주 감귤 5kg")
    await studio.get_by_label("가격 (원) · Price (won)").fill("29900")
    await studio.get_by_label("정가 (선택) · List price (optional)").fill("39900")
    await studio.get_by_label("재고 · Stock", exact=True).fill("10")
    await studio.get_by_role("button", name="상품 추가 · Add product").click()
    row = studio.locator("#product-list li", has_text="제주 감귤 5kg")
    await row.wait_for(timeout=WAIT_MS)
    pid = await row.get_attribute("data-id")
    assert pid

    await go_live(studio)
    media = server.ctx.hub.get(bid)
    assert media is not None
    await tb.eventually(lambda: not media.compositor.on_slate, "the compositor to leave the slate")

    # A viewer on a phone: the player plays (time advancing, a real picture).
    watch = await open_watch(
        await contexts(viewport=PHONE, is_mobile=True, has_touch=True), base, bid
    )
    await tb.wait_playing(watch, "#player")
    tb.assert_real_picture(await tb.snapshot(watch, "#player"), "watch page")
    await watch.wait_for_selector("#badge[data-status='live']", timeout=WAIT_MS)

    # The viewer's chat line reaches the studio.
    await send_chat(watch, "안녕하세요 사장님!")
    await chat_line(studio, "안녕하세요 사장님!").wait_for(timeout=WAIT_MS)

    # Pin with a deal: the card shows on the viewer page and is drawn into the video.
    player = await watch.query_selector("#player")
    before = await player.evaluate(CARD_JS)  # type: ignore[union-attr]
    assert before["dark"] < 0.1 and before["yellow"] < 0.001, f"a card before the pin: {before}"
    await studio.get_by_label("특가 (원) · Deal price (won)").fill("25900")
    await studio.get_by_label("특가 시간 · Deal time").select_option("5")
    await row.get_by_role("button", name="고정").click()
    await watch.wait_for_selector("#product:not([hidden])", timeout=WAIT_MS)
    assert await watch.inner_text("#p-name") == "제주 감귤 5kg"
    assert await watch.inner_text("#p-price") == "25,900원"
    assert "39,900원" in await watch.inner_text("#p-list")
    assert "남은 수량 10개" in await watch.inner_text("#p-stock")
    assert not await watch.is_hidden("#p-timer")  # the deal's countdown
    await watch.wait_for_function(CARD_SHOWN, arg=player, timeout=WAIT_MS)
    after = await player.evaluate(CARD_JS)  # type: ignore[union-attr]
    card = await tb.snapshot(watch, "#player")
    cv2.imwrite(str(tb.screenshot_path("pages-video-card.png")), card)
    await studio.wait_for_selector("#pinned-box:not([hidden])", timeout=WAIT_MS)

    # The viewer buys two (option-less product: quantity only) and confirms.
    await watch.locator('[data-action="buy"]').click()
    await watch.get_by_label("수량", exact=True).fill("2")
    assert await watch.inner_text("#buy-total") == "51,800원"
    await watch.locator('[data-action="confirm"]').click()  # the second tap: placed and paid
    await watch.wait_for_selector("#confirm-step:not([hidden])", timeout=WAIT_MS)
    assert await watch.inner_text("#c-total") == "51,800원"
    await watch.wait_for_function(
        "() => document.querySelector('#confirm-msg').textContent.includes('결제 완료')",
        timeout=WAIT_MS,
    )
    await watch.locator("#confirm-close").click()
    await watch.locator('[data-action="my-orders"]').click()  # the viewer's own orders
    await watch.wait_for_selector("#order-list li[data-status='paid']", timeout=WAIT_MS)
    await watch.locator("#orders-close").click()

    # The studio's feed has the order (reserved at once, paid within its 5 s refresh) and the
    # stock dropped on both pages.
    await studio.wait_for_selector("#order-feed li", timeout=WAIT_MS)
    feed = studio.locator("#order-feed li").first
    assert "제주 감귤 5kg × 2" in await feed.inner_text()
    await studio.wait_for_selector("#order-feed li[data-status='paid']", timeout=WAIT_MS)
    await watch.wait_for_function(
        "() => document.querySelector('#p-stock').textContent.includes('남은 수량 8개')",
        timeout=WAIT_MS,
    )
    await row.locator(".stock[data-stock='8']").wait_for(timeout=WAIT_MS)
    r = await server.http.get(f"/api/broadcasts/{bid}/products")
    assert next(p for p in r.json()["products"] if p["id"] == pid)["stock"] == 8

    # Hearts from the viewer reach the studio's counter.
    for _ in range(3):
        await watch.locator('[data-action="heart"]').click()
    await studio.wait_for_function(
        "() => document.querySelector('#hearts-total').textContent.includes('3')", timeout=WAIT_MS
    )

    await studio.get_by_text("상품 추가 · Add a product").click()  # fold the form away again
    await save(studio, "pages-studio.png")
    await save(watch, "pages-watch.png")

    # The host deletes the viewer's message: it disappears on the viewer page.
    line = chat_line(studio, "안녕하세요 사장님!")
    await line.get_by_role("button", name="삭제").click()
    await chat_line(watch, "안녕하세요 사장님!").wait_for(state="detached", timeout=WAIT_MS)
    await chat_line(studio, "안녕하세요 사장님!").wait_for(state="detached", timeout=WAIT_MS)
    assert after["dark"] > 0.3 and after["yellow"] > 0.001, after


async def test_viewer_refusals_are_clear(server: RunningServer, contexts: Contexts) -> None:
    """Deal ended, limit reached, sold out: each says so in words; the order flow by keyboard."""
    b = await server.create_broadcast("품절 테스트")
    bid, host, base = b["id"], b["host_token"], server.base_url
    await put_product(server, bid, host, "deal", name="반짝 특가 사과", price=20000, stock=10)
    await put_product(server, bid, host, "lim", name="한정 꿀", price=15000, stock=10,
                      per_buyer_limit=1)  # fmt: skip
    await put_product(server, bid, host, "last", name="마지막 한 개", price=5000, stock=1)
    watch = await open_watch(await contexts(viewport=PHONE, is_mobile=True, has_touch=True),
                             base, bid)  # fmt: skip

    async def pin(pid: str, **deal: int) -> None:
        r = await server.http.post(f"/api/broadcasts/{bid}/pin", headers=bearer(host),
                                   json={"product_id": pid} | deal)  # fmt: skip
        assert r.status_code == 200, r.text
        await watch.wait_for_function(
            "([pid]) => window.jt.shop.pin && window.jt.shop.pin.product_id === pid",
            arg=[pid],
            timeout=WAIT_MS,
        )

    # Deal ended: the dialog was open when the deal ran out.
    ends = int(time.time() * 1000) + 2500
    await pin("deal", deal_price=9900, deal_ends_at=ends)
    await watch.locator('[data-action="buy"]').click()
    await watch.wait_for_function("([t]) => Date.now() > t + 100", arg=[ends], timeout=WAIT_MS)
    await watch.locator('[data-action="confirm"]').click()
    await watch.wait_for_function(
        "() => document.querySelector('#dialog-msg').textContent.includes('특가가 끝났습니다')",
        timeout=WAIT_MS,
    )
    await watch.get_by_role("button", name="닫기", exact=True).click()
    await watch.wait_for_function("() => document.querySelector('#buy').disabled", timeout=WAIT_MS)
    assert "특가가 끝났습니다" in await watch.inner_text("#buy-msg")

    # Limit reached, by keyboard only: Enter on Buy, Enter to confirm (placed and paid).
    await pin("lim")
    await watch.focus("#buy")
    await watch.keyboard.press("Enter")
    await watch.wait_for_function("() => document.activeElement.id === 'buy-qty'", timeout=WAIT_MS)
    await watch.keyboard.press("Enter")  # submits the form: quantity 1
    await watch.wait_for_function(
        "() => document.querySelector('#confirm-msg').textContent.includes('결제 완료')",
        timeout=WAIT_MS,
    )
    await watch.wait_for_function(
        "() => document.activeElement.id === 'confirm-close'", timeout=WAIT_MS
    )
    await watch.keyboard.press("Escape")
    await watch.wait_for_function(
        "() => !document.querySelector('#buy-dialog').open", timeout=WAIT_MS
    )
    await watch.locator('[data-action="buy"]').click()
    await watch.locator('[data-action="confirm"]').click()
    await watch.wait_for_function(
        "() => document.querySelector('#dialog-msg').textContent.includes('1인 구매 한도')",
        timeout=WAIT_MS,
    )
    await watch.keyboard.press("Escape")

    # Sold out under the buyer's finger: someone else takes the last one while the dialog is open.
    await pin("last")
    await watch.locator('[data-action="buy"]').click()
    other = await server.token(bid, "viewer", "다른 손님")
    r = await server.http.post(
        f"/api/broadcasts/{bid}/orders",
        json={"product_id": "last", "qty": 1},
        headers=bearer(other) | {"Idempotency-Key": "other-1"},
    )
    assert r.status_code == 201, r.text
    await watch.locator('[data-action="confirm"]').click()
    await watch.wait_for_function(
        "() => document.querySelector('#dialog-msg').textContent.includes('품절되었습니다')",
        timeout=WAIT_MS,
    )
    await watch.keyboard.press("Escape")
    await watch.wait_for_function("() => document.querySelector('#buy').disabled", timeout=WAIT_MS)
    assert "품절" in await watch.inner_text("#p-stock")
    await save(watch, "pages-watch-sold-out.png")


async def test_chat_resumes_and_moderation_reaches_viewers(
    server: RunningServer, contexts: Contexts
) -> None:
    """The viewer's chat reconnects by itself without losing or repeating a line; the host's
    timeout, slow mode and freeze show on the viewer page."""
    b = await server.create_broadcast("채팅 테스트")
    bid, host, base = b["id"], b["host_token"], server.base_url
    studio = await open_studio(await contexts(viewport=DESKTOP), base, bid, host)
    viewer_ctx = await contexts(viewport=PHONE, is_mobile=True, has_touch=True)
    watch = await open_watch(viewer_ctx, base, bid)

    await send_chat(watch, "첫 번째 메시지")
    await chat_line(studio, "첫 번째 메시지").wait_for(timeout=WAIT_MS)
    await chat_line(watch, "첫 번째 메시지").wait_for(timeout=WAIT_MS)

    # The network drops and the server loses the socket; the host talks meanwhile.
    await viewer_ctx.set_offline(True)
    chat = server.ctx.chat.broadcasts[bid]
    viewer_uid = await watch.evaluate("window.jt.me.userId")
    for client in [c for c in chat.clients if c.claims.user_id == viewer_uid]:
        await client.aclose(1012, "restarting")
    await watch.wait_for_function("() => window.jt.chat.state === 'reconnecting'", timeout=WAIT_MS)
    assert "다시 연결" in await watch.inner_text("#chat-state")
    await send_chat(studio, "끊긴 동안 보낸 말")
    await chat_line(studio, "끊긴 동안 보낸 말").wait_for(timeout=WAIT_MS)
    await viewer_ctx.set_offline(False)
    await watch.wait_for_function("() => window.jt.chat.connects >= 2", timeout=30_000)
    await chat_line(watch, "끊긴 동안 보낸 말").wait_for(timeout=WAIT_MS)
    assert await chat_line(watch, "첫 번째 메시지").count() == 1  # resumed, not repeated

    # Slow mode and freeze from the studio's moderation controls.
    await studio.get_by_label("슬로 모드 · Slow mode").select_option("30")
    await watch.wait_for_function(
        "() => document.querySelector('#chat-state').textContent.includes('슬로 모드')",
        timeout=WAIT_MS,
    )
    await studio.get_by_label("채팅 얼리기 · Freeze chat").check()
    await watch.wait_for_function(
        "() => document.querySelector('#chat-input').disabled", timeout=WAIT_MS
    )
    assert "멈췄습니다" in await watch.inner_text("#chat-state")
    await studio.get_by_label("채팅 얼리기 · Freeze chat").uncheck()
    await studio.get_by_label("슬로 모드 · Slow mode").select_option("0")
    await watch.wait_for_function(
        "() => !document.querySelector('#chat-input').disabled", timeout=WAIT_MS
    )

    # A 5-minute timeout: the viewer is told privately, and a new line is refused in words.
    line = chat_line(studio, "첫 번째 메시지")
    await line.get_by_role("button", name="5분 제한").click()
    await watch.locator("#chat-log li.system", has_text="채팅이 제한되었습니다").wait_for(
        timeout=WAIT_MS
    )
    await send_chat(watch, "제한 중에 보낸 말")
    await watch.wait_for_function(
        "() => document.querySelector('#chat-state').textContent.includes('채팅할 수 없습니다')",
        timeout=WAIT_MS,
    )
    assert await chat_line(studio, "제한 중에 보낸 말").count() == 0


async def test_cohost_invite_and_flash_product(server: RunningServer, contexts: Contexts) -> None:
    """The host goes live, lists a flash product from the live picture, and invites a co-host
    whose studio (camera, go live, chat) shows what the host allows."""
    b = await server.create_broadcast("함께 방송")
    bid, host, base = b["id"], b["host_token"], server.base_url
    studio = await open_studio(await contexts(viewport=DESKTOP), base, bid, host)
    await go_live(studio)
    media = server.ctx.hub.get(bid)
    assert media is not None
    await tb.eventually(lambda: not media.compositor.on_slate, "the compositor to leave the slate")

    # Flash product: name, price, stock -> a product whose image is the live frame, pinned.
    await studio.get_by_label("깜짝 상품명 · Flash product name").fill("방금 보신 그 접시")
    await studio.get_by_label("깜짝 가격 (원) · Flash price (won)").fill("12000")
    await studio.get_by_label("깜짝 재고 · Flash stock").fill("3")
    await studio.get_by_role("button", name="화면 찍어 올리기 · Snap and list").click()
    await studio.wait_for_function(
        "() => document.querySelector('#pinned-name').textContent === '방금 보신 그 접시'",
        timeout=WAIT_MS,
    )
    products = (await server.http.get(f"/api/broadcasts/{bid}/products")).json()["products"]
    flash = next(p for p in products if p["name"] == "방금 보신 그 접시")
    assert flash["stock"] == 3 and flash["image"]
    r = await server.http.get(flash["image"])
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"

    # The invite link opens a co-host studio.
    await studio.get_by_role("button", name="초대 링크 만들기 · Create invite link").click()
    await studio.wait_for_function(
        "() => document.querySelector('#invite-link').value.includes('role=cohost')",
        timeout=WAIT_MS,
    )
    link = await studio.get_by_label("초대 링크 · Invite link").input_value()
    assert "role=cohost" in link and "token=" in link
    cohost = await (await contexts(viewport=DESKTOP)).new_page()
    await cohost.goto(link)
    await cohost.wait_for_function(
        "() => window.jt && window.jt.role === 'cohost'", timeout=WAIT_MS
    )
    assert "공동 진행자" in await cohost.inner_text("#role")
    for host_only in ("#orders-panel", "#cohost-panel", "#flash", "#moderation", "#finish"):
        assert await cohost.is_hidden(host_only), host_only
    assert await cohost.is_visible("#pin-note")  # may not pin until the host allows it
    await go_live(cohost)
    await tb.eventually(lambda: len(media.publishers) == 2, "the co-host's publisher")

    # The co-host's chat line reaches the host, marked as co-host.
    await cohost.wait_for_function("() => window.jt.chat.state === 'open'", timeout=WAIT_MS)
    await send_chat(cohost, "같이 방송해요")
    await chat_line(studio, "같이 방송해요").locator(".role").wait_for(timeout=WAIT_MS)

    # The host allows co-hosts to pin: the co-host's product list gets its pin buttons.
    await studio.wait_for_selector("#cohost-settings:not([hidden])", timeout=WAIT_MS)
    await studio.get_by_label("공동 진행자도 상품 고정 · Co-hosts may pin").check()
    await cohost.wait_for_selector("#unpin", state="visible", timeout=WAIT_MS)
    await cohost.get_by_role("button", name="고정 해제 · Unpin").click()
    await studio.wait_for_selector("#pinned-box", state="hidden", timeout=WAIT_MS)
    await save(cohost, "pages-cohost.png")


async def test_pages_accessible_basics(server: RunningServer, contexts: Contexts) -> None:
    """Labelled controls, sufficient contrast, visible keyboard focus on both pages."""
    bid, host, base = await pinned_show(server, "접근성")
    studio = await open_studio(await contexts(viewport=DESKTOP), base, bid, host)
    watch = await open_watch(await contexts(viewport=PHONE, is_mobile=True, has_touch=True),
                             base, bid)  # fmt: skip
    await send_chat(watch, "접근성 확인")
    await chat_line(studio, "접근성 확인").wait_for(timeout=WAIT_MS)
    await watch.wait_for_selector("#product:not([hidden])", timeout=WAIT_MS)
    await studio.get_by_text("상품 추가 · Add a product").click()

    for name, page in (("studio", studio), ("watch", watch)):
        found = await page.evaluate(A11Y_JS)
        assert not found["unnamed"], f"{name}: controls without a name: {found['unnamed']}"
        assert not found["low"], f"{name}: text below the contrast minimum: {found['low']}"
        # Keyboard focus is visible: Tab onto a control, its outline is drawn.
        await page.locator("body").focus()
        await page.keyboard.press("Tab")
        outline = await page.evaluate(
            "() => { const s = getComputedStyle(document.activeElement);"
            " return [document.activeElement.tagName, s.outlineStyle, s.outlineWidth]; }"
        )
        assert outline[0] != "BODY" and outline[1] != "none" and outline[2] != "0px", (
            name,
            outline,
        )
    # Nothing is wider than a phone's screen (the merchant may run the studio on one, too).
    await studio.set_viewport_size(PHONE)
    for name, page in (("studio", studio), ("watch", watch)):
        sizes = await page.evaluate("() => [innerWidth, document.documentElement.scrollWidth]")
        wide = await page.evaluate("""() => { const out = [];
            const w = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
            for (let n = w.nextNode(); n; n = w.nextNode()) { const r = document.createRange();
              r.selectNodeContents(n); if (r.getBoundingClientRect().right > innerWidth + 1)
              out.push(n.textContent.slice(0, 30) + ' ' + n.parentElement.id); }
            return out.slice(0, 8); }""")
        assert sizes[1] <= sizes[0], f"{name} scrolls sideways on a phone: {sizes} {wide}"
    await save(studio, "pages-studio-phone.png")
    # The buy dialog is a labelled, keyboard-closable dialog.
    await watch.locator('[data-action="buy"]').click()
    dialog = watch.get_by_role("dialog", name="주문", exact=True)
    await dialog.wait_for(timeout=WAIT_MS)
    assert await watch.get_by_label("수량", exact=True).get_attribute("max") == "2"
    await watch.keyboard.press("Escape")
    await dialog.wait_for(state="hidden", timeout=WAIT_MS)


# The test server's output is 640x360: its ladder is 360p (1 Mbps) and 180p (320 kbps).
VIDEO_WIDTH_IS = "(w) => document.querySelector('#player').videoWidth === w"
DATA_SAVER = '[data-action="data-saver"]'


def pinned_rungs(server: RunningServer, bid: str) -> list[str]:
    """The rung each WHEP viewer of the broadcast pinned ("" for auto)."""
    media = server.ctx.hub.get(bid)
    viewers = media.viewers.values() if media else []
    return [v.rendition for v in viewers if isinstance(v, Viewer)]


def overlaps(a: Any, b: Any) -> bool:
    return bool(
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and b["y"] < a["y"] + a["height"]
    )


async def test_watch_data_saver_pins_the_lowest_rung(
    server: RunningServer, contexts: Contexts
) -> None:
    """Data saver on: the page reconnects on the lowest rung (pinned on the server), the choice
    outlives a reload; off: back to auto on the top rung."""
    b = await server.live_broadcast("데이터 절약")
    bid, base = b["id"], server.base_url
    info = (await server.http.get(f"/api/broadcasts/{bid}")).json()
    assert [r["name"] for r in info["renditions"]] == ["360p", "180p"], info["renditions"]
    watch = await open_watch(await contexts(viewport=PHONE, is_mobile=True, has_touch=True),
                             base, bid)  # fmt: skip
    await tb.wait_playing(watch, "#player")
    await watch.wait_for_function(VIDEO_WIDTH_IS, arg=640, timeout=WAIT_MS)
    saver = watch.locator(DATA_SAVER)
    await saver.wait_for(timeout=WAIT_MS)  # shown: the ladder has more than one rung
    assert await saver.get_attribute("aria-label") == "데이터 절약"
    assert await saver.get_attribute("aria-pressed") == "false"
    assert pinned_rungs(server, bid) == [""]

    # On: a new session on the lowest rung, pinned there by the server.
    await saver.click()
    await watch.wait_for_function(VIDEO_WIDTH_IS, arg=320, timeout=WAIT_MS)
    await tb.eventually(lambda: pinned_rungs(server, bid) == ["180p"], "one viewer pinned to 180p")
    assert await saver.get_attribute("aria-pressed") == "true"
    assert await watch.evaluate("localStorage.getItem('jangteo:data-saver')") == "1"
    await tb.wait_playing(watch, "#player")
    await watch.keyboard.press("i")  # the stats say so too
    await watch.wait_for_function(
        "() => document.querySelector('#stats').textContent.includes('180p · 320×180')",
        timeout=WAIT_MS,
    )
    assert "데이터 절약 (고정)" in await watch.inner_text("#stats")

    # A reload keeps the choice: its first session is already on the lowest rung.
    await watch.reload()
    await watch.wait_for_function(
        "() => window.jt && window.jt.chat.state === 'open'", timeout=WAIT_MS
    )
    await tb.wait_playing(watch, "#player")
    await watch.wait_for_function(VIDEO_WIDTH_IS, arg=320, timeout=WAIT_MS)
    assert await watch.evaluate("[window.jt.rendition, window.jt.player.connects]") == ["180p", 1]
    await watch.wait_for_selector(f"{DATA_SAVER}[aria-pressed='true']", timeout=WAIT_MS)
    await tb.eventually(
        lambda: pinned_rungs(server, bid) == ["180p"], "the reloaded page's session alone"
    )

    # Off: back to auto, on the top rung.
    await saver.click()
    await watch.wait_for_function(VIDEO_WIDTH_IS, arg=640, timeout=WAIT_MS)
    await tb.eventually(lambda: pinned_rungs(server, bid) == [""], "one viewer on auto")
    assert await saver.get_attribute("aria-pressed") == "false"
    assert await watch.evaluate("localStorage.getItem('jangteo:data-saver')") == "0"
    await tb.wait_playing(watch, "#player")
    await save(watch, "pages-watch-data-saver.png")


async def test_watch_stats_overlay(server: RunningServer, contexts: Contexts) -> None:
    """A long press on the picture shows the playback stats (rung, bitrate, mode, frame rate)
    without covering the buy button or the chat; a tap hides them; the "i" key toggles them."""
    b = await server.live_broadcast("재생 정보")
    bid, host, base = b["id"], b["host_token"], server.base_url
    await put_product(server, bid, host, "p1", name="햇감자 3kg", price=12900, stock=4)
    r = await server.http.post(f"/api/broadcasts/{bid}/pin", headers=bearer(host),
                               json={"product_id": "p1"})  # fmt: skip
    assert r.status_code == 200, r.text
    watch = await open_watch(await contexts(viewport=PHONE, is_mobile=True, has_touch=True),
                             base, bid)  # fmt: skip
    await tb.wait_playing(watch, "#player")
    await watch.wait_for_selector("#product:not([hidden])", timeout=WAIT_MS)
    stats = watch.locator("#stats")
    assert await stats.is_hidden()

    # Long press: held ~600 ms on the picture, the overlay appears while the button is down.
    box = await watch.locator("#player").bounding_box()
    assert box is not None
    await watch.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    await watch.mouse.down()
    await stats.wait_for(state="visible", timeout=WAIT_MS)
    await watch.mouse.up()
    await watch.wait_for_function(
        "() => document.querySelector('#stats').textContent.includes('360p · 640×360')",
        timeout=WAIT_MS,
    )
    await watch.wait_for_function(  # the browser's decoded frame rate (getStats)
        "/^\\d+ fps$/.test(document.querySelector('#st-fps').textContent)", timeout=WAIT_MS
    )
    text = await stats.inner_text()
    assert "1 Mbps" in text and "자동" in text, text
    stats_box = await stats.bounding_box()
    assert stats_box is not None
    for other in ("#buy", "#chat-input"):
        other_box = await watch.locator(other).bounding_box()
        assert other_box is not None and not overlaps(stats_box, other_box), other
    await save(watch, "pages-watch-stats.png")

    # A tap on the overlay hides it.
    await stats.click()
    await stats.wait_for(state="hidden", timeout=WAIT_MS)

    # The "i" key toggles it, but not while typing in the chat.
    await watch.locator("body").focus()
    await watch.keyboard.press("i")
    await stats.wait_for(state="visible", timeout=WAIT_MS)
    await watch.focus("#chat-input")
    await watch.keyboard.type("hi")
    assert await stats.is_visible()
    await watch.locator("#chat-input").blur()
    await watch.keyboard.press("i")
    await stats.wait_for(state="hidden", timeout=WAIT_MS)
