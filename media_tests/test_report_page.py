"""The show report page and the studio's live numbers in Chromium: the charts are drawn (pixels
of each series' colour on its canvas), nothing goes to the console, and the page prints on one
A4 sheet. Same browser, server and helpers as ``test_pages``."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from commerce.forecast import SAMPLE_PRODUCTS, synthetic_history
from commerce.merchant import store_show
from commerce.stats import StatsSampler
from core.pins import Pin, pins_key, record_pin
from jangteo.testkit.server import RunningServer, bearer

from . import test_browser as tb
from .helpers import NEEDS_CHROMIUM, Contexts
from .test_pages import DESKTOP, WAIT_MS, put_product

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(90),
    NEEDS_CHROMIUM,
]

# How many pixels of a canvas are near an RGB colour (the series' stroke or fill).
COLOURED_JS = """([sel, rgb]) => {
    const c = document.querySelector(sel);
    if (!c) return -1;
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) {
        if (Math.abs(d[i] - rgb[0]) + Math.abs(d[i + 1] - rgb[1]) + Math.abs(d[i + 2] - rgb[2]) < 60
            && d[i + 3] > 200) n++;
    }
    return n;
}"""


async def _show_with_sales(server: RunningServer) -> tuple[str, str]:
    """A live show with two products, two pins, orders and a minute of timeline."""
    b = await server.create_broadcast("동문시장 한라봉 라이브")
    bid, host = b["id"], b["host_token"]
    await put_product(server, bid, host, "p1", name="한라봉 3kg", price=29900, stock=100)
    await put_product(server, bid, host, "p2", name="감귤 녹차", price=12000, stock=100)
    await server.ctx.store.ensure_live(bid)
    sampler = StatsSampler(server.ctx.redis)
    now = int(time.time() * 1000)
    buyers = [await server.token(bid, "viewer", f"손님{i}") for i in range(6)]
    for i, pid in enumerate(("p1", "p1", "p2", "p2", "p1", "p2")):
        if i in (0, 2):
            r = await server.http.post(f"/api/broadcasts/{bid}/pin", headers=bearer(host),
                                       json={"product_id": pid})  # fmt: skip
            assert r.status_code == 200, r.text
        r = await server.http.post(
            f"/api/broadcasts/{bid}/orders", json={"product_id": pid, "qty": 1 + i % 2},
            headers=bearer(buyers[i]) | {"Idempotency-Key": f"r{i}"},
        )  # fmt: skip
        assert r.status_code == 201, r.text
        await server.ctx.chat_store.report_presence(bid, "test", 10 + 5 * i, fresh_s=1000)
        await sampler.sample_once(now_ms=now - 60_000 + i * 10_000, bids=[bid])
    # the pins as if made during that minute (the timeline's points fall inside them)
    await server.ctx.redis.delete(pins_key(bid))
    for at, pid, name in ((now - 60_000, "p1", "한라봉 3kg"), (now - 30_000, "p2", "감귤 녹차")):
        await record_pin(server.ctx.redis, bid, Pin(at, pid, name, 0))
    return bid, host


async def test_the_report_page_draws_its_charts_and_prints_on_one_page(
    server: RunningServer, contexts: Contexts
) -> None:
    bid, host = await _show_with_sales(server)
    page = await (await contexts(viewport={"width": 800, "height": 1100})).new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    await page.goto(f"{server.base_url}/api/broadcasts/{bid}/report?format=html&token={host}")
    await page.wait_for_function("() => window.jt && window.jt.ready", timeout=WAIT_MS)

    title = await page.inner_text("#report-title")
    assert title == "동문시장 한라봉 라이브 방송 리포트 · Show report"
    totals = await page.inner_text("#totals")
    assert "179,600원" in totals  # 29,900 × 4 + 12,000 × 5
    # the viewers' line (blue), the orders' bars (green), the GMV bars (gold), conversion (purple)
    series = {"#viewers-chart": [31, 111, 235], "#opm-chart": [46, 139, 87],
              "#gmv-chart": [255, 190, 40], "#conversion-chart": [155, 89, 208]}  # fmt: skip
    for chart, rgb in series.items():
        sel = f"{chart} canvas"
        assert await page.evaluate(COLOURED_JS, [sel, rgb]) > 50, sel
    # each pin is marked on the viewers' chart (red dashes)
    assert await page.evaluate(COLOURED_JS, ["#viewers-chart canvas", [208, 24, 58]]) > 20
    rows = await page.locator("#pins tbody tr").all_inner_texts()
    assert len(rows) == 2 and "한라봉 3kg" in rows[0] and "감귤 녹차" in rows[1]

    await page.screenshot(path=tb.screenshot_path("report.png"), full_page=True)
    pdf = await page.pdf(format="A4", print_background=True)
    pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf))
    assert pages == 1, f"the report prints on {pages} A4 pages"
    assert not errors, errors


async def test_the_studio_shows_the_numbers_live(server: RunningServer, contexts: Contexts) -> None:
    bid, host = await _show_with_sales(server)
    prices = {pid: price for pid, (_, price, _) in SAMPLE_PRODUCTS.items()}
    for past in synthetic_history(4, seed=5)[0]:  # the merchant's earlier shows
        await store_show(server.ctx, f"m_{bid}", past, prices, "지난 방송")
    studio = await (await contexts(viewport=DESKTOP)).new_page()
    await studio.goto(f"{server.base_url}/studio/{bid}?token={host}")
    await studio.wait_for_function(
        "() => window.jt && window.jt.numbers.reads > 0", timeout=WAIT_MS
    )
    cell = studio.locator("#numbers-panel [data-stat='orders'] dd")
    assert await cell.inner_text() == "6"
    assert "179,600원" in await studio.inner_text("#numbers-panel [data-stat='gmv'] dd")
    await studio.wait_for_selector("#numbers-panel .numbers-chart canvas", timeout=WAIT_MS)

    # one more order: the panel has it within its next read (every 3 s)
    buyer = await server.token(bid, "viewer", "늦은 손님")
    r = await server.http.post(f"/api/broadcasts/{bid}/orders", json={"product_id": "p2", "qty": 1},
                               headers=bearer(buyer) | {"Idempotency-Key": "late"})  # fmt: skip
    assert r.status_code == 201, r.text
    await studio.wait_for_function(
        "() => document.querySelector(\"#numbers-panel [data-stat='orders'] dd\")"
        ".textContent === '7'",
        timeout=WAIT_MS,
    )
    # and what the merchant's past shows say about the next one
    await studio.wait_for_selector("#numbers-panel .forecast:not([hidden]) li", timeout=WAIT_MS)
    first = await studio.locator("#numbers-panel .forecast li").first.inner_text()
    assert "제주 감귤 5kg" in first and "개" in first
    assert "지난 방송 4회" in await studio.inner_text("#numbers-panel .forecast-meta")
    href: Any = await studio.get_attribute("[data-action='report']", "href")
    assert href.endswith(f"/report?format=html&token={host}")
