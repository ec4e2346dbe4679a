"""The overlay in composed frames: what a viewer would read in the picture.

Text is found by template matching (stream/textmatch.py): the expected string, rendered with the
overlay's font, must match its region better than near-miss strings (another price, another
count); Hangul must not come out as boxes (a rendering of unmapped code points must not match).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.events import publish
from jangteo.testkit.server import RunningServer
from jangteo.testkit.textmatch import UNMAPPED, score
from stream.compose.overlay import Layout, Overlay, OverlayModel, Pinned, Tick
from stream.compose.slate import slate_i420

GOLDEN = Path(__file__).parent / "golden" / "overlay-640x360.png"
NOW = 1_800_000_000.0  # a fixed clock for the renderings


def bgr(i420: np.ndarray, layout: Layout) -> np.ndarray:
    return np.asarray(cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420), np.uint8)


THUMB = np.zeros((240, 320, 3), np.uint8)
THUMB[:, :160] = (40, 120, 200)
THUMB[:, 160:] = (200, 160, 40)


def pinned(**kw: object) -> Pinned:
    thumb = THUMB
    base: dict[str, object] = dict(
        id="A1", name="제주 감귤 3kg", price=29900, list_price=39900, deal_price=24900,
        deal_ends_at=int(NOW * 1000) + 240_000, stock=12,
        order_url="http://127.0.0.1:8000/watch/b1?product=A1", thumb=thumb,
    )  # fmt: skip
    base.update(kw)
    return Pinned(**base)  # type: ignore[arg-type]


def frame(
    ov: Overlay, model: OverlayModel, now: float = NOW, names: tuple[str, ...] = ()
) -> np.ndarray:
    ov.model = model
    lay = ov.layout
    return bgr(ov.draw(slate_i420(lay.width, lay.height), names, now=now), lay)


def best(
    picture: np.ndarray,
    right: str,
    wrong: list[str],
    size: int,
    region: tuple[int, int, int, int],
    floor: float = 0.9,
) -> None:
    """``right`` is in ``region``, and reads better there than every string in ``wrong``."""
    s = score(picture, right, size, region)
    others = {w: score(picture, w, size, region) for w in wrong}
    assert s >= floor, f"{right!r} not found ({s:.3f})"
    for w, o in others.items():
        assert s > o + 0.02, f"{right!r} ({s:.3f}) does not beat {w!r} ({o:.3f})"


@pytest.mark.parametrize("size", [(1280, 720), (640, 360)])
def test_card_shows_the_product_in_hangul_with_price_and_stock(size: tuple[int, int]) -> None:
    ov = Overlay(*size)
    lay = ov.layout
    pic = frame(ov, OverlayModel(pinned()))
    # the name: glyphs, not boxes
    assert score(pic, "제주 감귤", lay.size(28), lay.card) >= 0.95
    assert score(pic, f"{UNMAPPED * 2} {UNMAPPED * 2}", lay.size(28), lay.card) < 0.7
    # the deal price, the struck-through list price, the discount
    best(pic, "24,900원", ["29,900원", "24,800원", "34,900원"], lay.size(40), lay.card)
    # struck through: the line through it lowers the match
    best(pic, "39,900원", ["38,900원", "39,800원"], lay.size(24), lay.card, floor=0.6)
    best(pic, "38%", ["37%", "39%", "17%"], lay.size(24), lay.card)
    best(pic, "남은 수량 12개", ["남은 수량 11개", "남은 수량 13개"], lay.size(30), lay.stock)
    # the thumbnail is in the card (its two colours, top-left of the card)
    cx, cy, _, _ = lay.card
    pad, side = lay.px(16), lay.px(150)
    left = pic[cy + pad + side // 2, cx + pad + side // 4].astype(int)
    right = pic[cy + pad + side // 2, cx + pad + 3 * side // 4].astype(int)
    assert np.abs(left - (40, 120, 200)).max() < 30 and np.abs(right - (200, 160, 40)).max() < 30
    # and the QR code decodes to the product's order page
    crop = pic[cy : cy + lay.card[3], cx:]
    crop = cv2.resize(crop, None, fx=4, fy=4, interpolation=cv2.INTER_NEAREST)
    text, _, _ = cv2.QRCodeDetector().detectAndDecode(crop)
    assert text == "http://127.0.0.1:8000/watch/b1?product=A1"


def test_the_countdown_ticks_each_second_and_goes_at_the_end() -> None:
    ov = Overlay(1280, 720)
    lay, model = ov.layout, OverlayModel(pinned())
    best(frame(ov, model, NOW + 1.2), "03:59", ["04:00", "03:58"], lay.size(34), lay.countdown)
    best(frame(ov, model, NOW + 2.2), "03:58", ["03:59", "03:57"], lay.size(34), lay.countdown)
    renders = ov.renders
    frame(ov, model, NOW + 2.5)  # same second: nothing re-rendered
    assert ov.renders == renders
    # deal over: no countdown, the regular price again
    over = frame(ov, model, NOW + 241)
    assert score(over, "00:00", lay.size(34), lay.countdown) < 0.6
    best(over, "29,900원", ["24,900원"], lay.size(40), lay.card)


def test_sold_out_badge_at_zero() -> None:
    ov = Overlay(1280, 720)
    lay = ov.layout
    pic = frame(ov, OverlayModel(pinned(stock=0)))
    best(pic, "품절 SOLD OUT", ["남은 수량 0개"], lay.size(30), lay.stock)
    x, y, _, h = lay.stock
    b, g, r = pic[y + h // 2, x + 4].astype(int)
    assert r > 150 and r > 2 * g and r > 2 * b, "the badge is red"


def test_lower_third_ticker_and_hearts() -> None:
    ov = Overlay(1280, 720)
    lay = ov.layout
    at = int(NOW * 1000)
    model = OverlayModel(None, (Tick("김**", 1, at - 1000), Tick("이**", 2, at)), 18313)
    pic = frame(ov, model, names=("장터 사장님", "민지"))
    mx, my = lay.margin
    top_left = (mx, my, lay.width // 2, lay.px(200))
    best(pic, "김** 님 구매", ["박** 님 구매"], lay.size(26), top_left)
    best(pic, "이** 님 구매 ×2", ["이** 님 구매 ×3"], lay.size(26), top_left)
    best(pic, "♥ 18,313", ["♥ 18,312"], lay.size(30), (mx, my, lay.width // 2, lay.px(50)))
    lower = lay.lower_third(False)
    best(pic, "장터 사장님", ["장터 사장단", "강터 사장님"], lay.size(30), lower)
    assert score(pic, "민지", lay.size(30), lower) >= 0.9
    # orders leave the ticker after a while
    later = frame(ov, model, NOW + 60, names=("장터 사장님",))
    assert score(later, "김** 님 구매", lay.size(26), top_left) < 0.6


@pytest.mark.parametrize("size", [(1280, 720), (640, 360), (720, 1280), (854, 480)])
def test_every_element_stays_inside_the_safe_area(size: tuple[int, int]) -> None:
    ov = Overlay(*size)
    lay = ov.layout
    at = int(NOW * 1000)
    ov.model = OverlayModel(
        pinned(name="아주 긴 상품 이름 " * 8), (Tick("김**", 1, at),) * 3, 1_234_567
    )
    mx, my = lay.margin
    sprites = ov.sprites(at, ["사장님 " * 20, "크리에이터"])
    assert len(sprites) == 6
    for s in sprites:
        assert mx <= s.x and s.x + s.w <= lay.width - mx, (s.x, s.w)
        assert my <= s.y and s.y + s.h <= lay.height - my, (s.y, s.h)


def test_sprites_are_rendered_on_change_only() -> None:
    ov = Overlay(640, 360)
    canvas = slate_i420(640, 360)
    ov.model = OverlayModel(pinned())
    for i in range(30):
        ov.draw(canvas, ("사장님",), now=NOW + 1.5 + i / 100)
    assert ov.renders == 4  # card, stock, countdown, names: once
    ov.model = OverlayModel(pinned(stock=11))
    ov.draw(canvas, ("사장님",), now=NOW + 1.9)
    assert ov.renders == 5  # only the stock row again
    # the thumbnail arrives after the pin (loaded from Redis): the card is drawn again with it
    ov.model = OverlayModel(pinned(stock=11, thumb=None))
    ov.draw(canvas, ("사장님",), now=NOW + 1.9)
    assert ov.renders == 6
    ov.model = OverlayModel(pinned(stock=11))
    pic = bgr(ov.draw(canvas, ("사장님",), now=NOW + 1.9), ov.layout)
    assert ov.renders == 7
    cx, cy, _, _ = ov.layout.card
    pad, side = ov.layout.px(16), ov.layout.px(150)
    spot = pic[cy + pad + side // 2, cx + pad + side // 4].astype(int)
    assert np.abs(spot - (40, 120, 200)).max() < 30


def test_draw_leaves_a_read_only_canvas_alone() -> None:
    ov = Overlay(640, 360)
    ov.model = OverlayModel(pinned())
    canvas = slate_i420(640, 360)
    before = canvas.copy()
    out = ov.draw(canvas, (), now=NOW)
    assert np.array_equal(canvas, before) and not np.array_equal(out, before)
    empty = Overlay(640, 360)
    assert empty.draw(canvas, (), now=NOW) is canvas  # nothing to draw: no copy


def test_golden_image_of_one_fixed_state() -> None:
    ov = Overlay(640, 360)
    at = int(NOW * 1000)
    model = OverlayModel(pinned(), (Tick("김**", 1, at), Tick("박**", 3, at)), 726)
    pic = frame(ov, model, NOW + 1.2, names=("장터 사장님", "민지"))
    if os.environ.get("JANGTEO_WRITE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(GOLDEN), pic)
    gold = cv2.imread(str(GOLDEN))
    assert gold is not None, f"missing {GOLDEN} (JANGTEO_WRITE_GOLDEN=1 writes it)"
    diff = cv2.absdiff(pic, gold).max(axis=2)
    assert diff.mean() < 1.0 and (diff > 24).mean() < 0.002, (diff.mean(), (diff > 24).mean())


# -- through the API, Redis and the feed -----------------------------------------------------------
async def test_api_changes_reach_the_overlay(server: RunningServer) -> None:
    b = await server.create_broadcast()
    bid, host = b["id"], {"Authorization": f"Bearer {b['host_token']}"}
    r = await server.http.put(f"/api/broadcasts/{bid}/products/p1", headers=host,
                              json={"name": "제주 감귤 5kg", "price": 29900, "list_price": 39900,
                                    "stock": 2})  # fmt: skip
    assert r.status_code == 201, r.text
    media = await server.ctx.hub.open(bid)
    feed = server.app.state.overlays.active[bid]
    ov = media.compositor.overlay
    lay = ov.layout
    assert ov.model.pinned is None
    ends = int(time.time() * 1000) + 120_000
    r = await server.http.post(f"/api/broadcasts/{bid}/pin", headers=host,
                               json={"product_id": "p1", "deal_price": 19900,
                                     "deal_ends_at": ends})  # fmt: skip
    assert r.status_code == 200, r.text
    await feed.until(lambda m: m.pinned is not None)
    pic = bgr(ov.draw(slate_i420(lay.width, lay.height), ()), lay)
    best(pic, "19,900원", ["29,900원", "18,900원"], lay.size(40), lay.card)
    best(pic, "남은 수량 2개", ["남은 수량 1개"], lay.size(30), lay.stock)

    buyer = await server.token(bid, "viewer", "김철수")
    for key, left in (("k1", 1), ("k2", 0)):
        r = await server.http.post(f"/api/broadcasts/{bid}/orders",
                                   headers={"Authorization": f"Bearer {buyer}",
                                            "Idempotency-Key": key},
                                   json={"product_id": "p1", "qty": 1})  # fmt: skip
        assert r.status_code == 201, r.text
        await feed.until(lambda m, left=left: m.pinned is not None and m.pinned.stock == left)
        pic = bgr(ov.draw(slate_i420(lay.width, lay.height), ()), lay)
        if left:
            best(
                pic,
                f"남은 수량 {left}개",
                ["남은 수량 2개", "남은 수량 0개"],
                lay.size(30),
                lay.stock,
            )
        else:
            best(pic, "품절 SOLD OUT", ["남은 수량 1개"], lay.size(30), lay.stock)
    mx, my = lay.margin
    best(pic, "김** 님 구매", ["이** 님 구매"], lay.size(26), (mx, my, lay.width // 2, lay.px(200)))

    r = await server.http.delete(f"/api/broadcasts/{bid}/pin", headers=host)
    assert r.status_code == 204
    await feed.until(lambda m: m.pinned is None)

    # a layout switched through another process arrives as an event
    await publish(server.ctx.redis, bid, {"type": "layout", "layout": "pip"})
    await feed.until(lambda m: media.compositor.layout == "pip")
    await server.ctx.hub.end(bid)
    assert bid not in server.app.state.overlays.active
