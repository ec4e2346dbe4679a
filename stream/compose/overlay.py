"""What is drawn into the picture: the pinned product card, its deal countdown and stock, the
names of who is on air, a ticker of recent orders and the hearts total.

The event loop swaps in a new immutable :class:`OverlayModel` whenever the broadcast's events
change something (``Overlay.model = …``: one reference assignment). The compositor's thread calls
:meth:`Overlay.draw` for every frame: an element is re-rendered only when its own inputs changed
(the countdown once a second, the stock row when the stock moves, the card when the pin does);
otherwise the frame only composites the cached sprites (see stream/sprites.py).

Layout: every element stays inside a safe area (5 % margins) and scales with the output size
(sizes below are for 1280x720), large enough to read when the video is shown 360 px wide.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from .sprites import BGR, Image, Sprite, ellipsize, ink_of, put, text_width, won, wrap

PANEL: BGR = (34, 28, 24)
WHITE: BGR = (250, 250, 250)
GREY: BGR = (170, 170, 170)
YELLOW: BGR = (40, 210, 255)
RED: BGR = (60, 60, 235)
PINK: BGR = (170, 110, 255)
BADGE: BGR = (40, 40, 200)
TICKER_S = 20.0  # an order stays in the ticker this long
TICKER_LINES = 3


@dataclasses.dataclass(frozen=True)
class Pinned:
    id: str
    name: str
    price: int
    list_price: int | None
    deal_price: int | None
    deal_ends_at: int | None  # ms since the epoch
    stock: int
    order_url: str
    thumb: Image | None = dataclasses.field(default=None, compare=False)

    def price_now(self, now_ms: int) -> int:
        open_deal = self.deal_ends_at is None or now_ms < self.deal_ends_at
        if self.deal_price is not None and open_deal:
            return self.deal_price
        return self.price


@dataclasses.dataclass(frozen=True)
class Tick:
    name: str  # masked: 김**
    qty: int
    at_ms: int


@dataclasses.dataclass(frozen=True)
class OverlayModel:
    pinned: Pinned | None = None
    orders: tuple[Tick, ...] = ()
    hearts: int = 0


def _even(v: float) -> int:
    return max(2, round(v / 2) * 2)


def _even_up(v: float) -> int:
    return max(2, -(-int(v) // 2) * 2)


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where each element goes for one output size.

    Landscape (sizes for 1280x720): the card at the bottom right, names in the lower third at
    its left, hearts and the order ticker at the top left. Portrait (sizes for 720x1280, a
    phone held upright): the bottom third stays clear (the viewer page lays the chat over it),
    the card sits just above it, the hearts, names and ticker go down the top left (the top
    right is where picture-in-picture puts co-hosts)."""

    width: int
    height: int

    @property
    def portrait(self) -> bool:
        return self.height > self.width

    @property
    def s(self) -> float:
        if self.portrait:
            return min(self.width / 720, self.height / 1280)
        return min(self.width / 1280, self.height / 720)

    def px(self, v: float) -> int:
        return _even(v * self.s)

    def size(self, v: float) -> int:  # a font size
        return max(8, round(v * self.s))

    @property
    def margin(self) -> tuple[int, int]:
        return _even(self.width * 0.05), _even(self.height * 0.05)

    @property
    def card(self) -> tuple[int, int, int, int]:
        mx, my = self.margin
        w, h = min(self.px(560), self.width - 2 * mx), self.px(244)
        bottom = _even(self.height * 2 / 3) - self.px(16) if self.portrait else self.height - my
        return self.width - mx - w, bottom - h, w, h

    @property
    def hearts_at(self) -> tuple[int, int]:
        return self.margin

    @property
    def ticker_at(self) -> tuple[int, int]:
        """Below the hearts (portrait: below the names, which come first there)."""
        mx, my = self.margin
        below = my + self.px(58)
        return mx, below + (self.px(68) if self.portrait else 0)

    @property
    def countdown(self) -> tuple[int, int, int, int]:
        cx, cy, cw, _ = self.card
        w, h = self.px(196), self.px(52)
        return cx + cw - w, cy - h - self.px(8), w, h

    @property
    def stock(self) -> tuple[int, int, int, int]:
        cx, cy, cw, ch = self.card
        pad, qr = self.px(16), self.px(124)
        h = self.px(46)
        return cx + pad, cy + ch - pad - h, cw - 3 * pad - qr, h

    def lower_third(self, card: bool) -> tuple[int, int, int, int]:
        """Who is on air: the lower third (portrait: under the hearts, the bottom is chat's)."""
        mx, my = self.margin
        h = self.px(60)
        if self.portrait:
            return mx, my + self.px(58), _even(self.width * 0.62) - mx, h
        right = self.card[0] - self.px(16) if card else self.width - mx
        return mx, self.height - my - h, max(self.px(120), right - mx), h


# -- rendering ------------------------------------------------------------------------------------
def _panel(w: int, h: int, color: BGR = PANEL) -> Image:
    img = np.empty((h, w, 3), np.uint8)
    img[:] = color
    return img


def thumbnail(image: Image | None, side: int, name: str) -> Image:
    """A square thumbnail (centre crop), or a placeholder with the name's first letter."""
    if image is None:
        tile = _panel(side, side, (80, 72, 66))
        letter = name.strip()[:1] or "?"
        size = side // 2
        put(tile, letter, (side - text_width(letter, size)) // 2, side * 2 // 3, size, WHITE)
        return tile
    h, w = image.shape[:2]
    c = min(h, w)
    crop = image[(h - c) // 2 : (h - c) // 2 + c, (w - c) // 2 : (w - c) // 2 + c]
    return np.asarray(cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA), np.uint8)


def qr_code(url: str, side: int) -> Image:
    """The QR code of ``url`` (quiet zone included), black on white, ``side`` px square."""
    matrix = np.asarray(cv2.QRCodeEncoder.create().encode(url), np.uint8)
    n = matrix.shape[0]
    module = max(1, side // n)
    big = cv2.resize(matrix, (n * module, n * module), interpolation=cv2.INTER_NEAREST)
    out = np.full((side, side), 255, np.uint8)
    off = (side - n * module) // 2
    out[off : off + n * module, off : off + n * module] = big
    return np.asarray(cv2.cvtColor(out, cv2.COLOR_GRAY2BGR), np.uint8)


def render_card(p: Pinned, lay: Layout, now_ms: int) -> Sprite:
    x, y, w, h = lay.card
    img = _panel(w, h)
    pad, side, qr = lay.px(16), lay.px(150), lay.px(124)
    img[:, : lay.px(6)] = YELLOW  # accent
    img[pad : pad + side, pad : pad + side] = thumbnail(p.thumb, side, p.name)
    img[pad : pad + qr, w - pad - qr : w - pad] = qr_code(p.order_url, qr)
    cap = lay.size(20)
    put(img, "QR 주문", w - pad - qr + (qr - text_width("QR 주문", cap)) // 2,
        pad + qr + cap + lay.px(4), cap, GREY)  # fmt: skip
    x0 = pad * 2 + side
    tw = w - x0 - pad * 2 - qr
    ns, ps, ls = lay.size(28), lay.size(40), lay.size(24)
    base = pad
    for line in wrap(p.name, ns, tw, 2):
        base += int(ns * 1.25)
        put(img, line, x0, base, ns, WHITE)
    base += int(ps * 1.3)
    price = p.price_now(now_ms)
    put(img, won(price), x0, base, ps, YELLOW)
    before = p.list_price if p.list_price and p.list_price > price else None
    if before is None and price < p.price:
        before = p.price
    if before is not None:  # the struck-through list price and the discount, under the price
        old, pct = won(before), f"{round((before - price) * 100 / before)}%"
        base += int(ls * 1.35)
        x2 = put(img, old, x0, base, ls, GREY)
        mid = base - ls // 3
        cv2.line(img, (x0, mid), (x2, mid), GREY, max(1, lay.px(2)), cv2.LINE_AA)
        put(img, pct, x2 + lay.px(10), base, ls, RED)
    ink = ink_of(img, PANEL)
    ink[pad : pad + side, pad : pad + side] = 255
    ink[pad : pad + qr, w - pad - qr : w - pad] = 255
    return Sprite.from_bgr(img, ink, x, y, 0.82)


def stock_text(stock: int) -> str:
    return "품절 SOLD OUT" if stock <= 0 else f"남은 수량 {stock:,}개"


def render_stock(stock: int, lay: Layout) -> Sprite:
    x, y, w, h = lay.stock
    size = lay.size(30)
    label = stock_text(stock)
    if stock <= 0:  # a solid red badge
        img = _panel(w, h, BADGE)
        bw = min(w, text_width(label, size) + lay.px(24))
        img[:, bw:] = PANEL
        put(img, ellipsize(label, size, w), lay.px(12), h // 2 + size * 2 // 5, size, WHITE)
        ink = np.zeros((h, w), np.uint8)
        ink[:, :bw] = 255
        return Sprite.from_bgr(img, ink, x, y, 0.0)
    img = _panel(w, h)
    put(img, ellipsize(label, size, w), 0, h // 2 + size * 2 // 5, size, WHITE)
    return Sprite.from_bgr(img, ink_of(img, PANEL), x, y, 0.0)


def countdown_text(left_s: int) -> str:
    return f"{left_s // 60:02d}:{left_s % 60:02d}" if left_s < 6000 else f"{left_s // 3600}시간"


def render_countdown(left_s: int, lay: Layout) -> Sprite:
    x, y, w, h = lay.countdown
    img = _panel(w, h, BADGE)
    size = lay.size(34)
    label, clock = "특가", countdown_text(left_s)
    small = lay.size(22)
    put(img, label, lay.px(12), h // 2 + small * 2 // 5, small, WHITE)
    put(img, clock, w - lay.px(12) - text_width(clock, size), h // 2 + size * 2 // 5, size, WHITE)
    return Sprite.from_bgr(img, ink_of(img, BADGE), x, y, 0.9)


def render_names(names: Sequence[str], lay: Layout, card: bool) -> Sprite:
    x, y, max_w, h = lay.lower_third(card)
    size = lay.size(30)
    pad = lay.px(16)
    host, guests = names[0], " · ".join(names[1:])
    w = min(max_w, pad * 2 + lay.px(8) + text_width(host, size)
            + (text_width(f"  {guests}", size) if guests else 0))  # fmt: skip
    w = _even_up(w)
    img = _panel(w, h)
    img[:, : lay.px(6)] = YELLOW
    base = h // 2 + size * 2 // 5
    end = put(img, ellipsize(host, size, w - 2 * pad), pad + lay.px(8), base, size, WHITE)
    if guests and end < w - pad:
        put(img, ellipsize(f"  {guests}", size, w - pad - end), end, base, size, GREY)
    return Sprite.from_bgr(img, ink_of(img, PANEL), x, y, 0.75)


def ticker_lines(orders: Sequence[Tick], now_ms: int) -> tuple[str, ...]:
    live = [t for t in orders if now_ms - t.at_ms < TICKER_S * 1000]
    return tuple(
        f"{t.name} 님 구매" + (f" ×{t.qty}" if t.qty > 1 else "") for t in live[-TICKER_LINES:]
    )


def render_ticker(lines: Sequence[str], lay: Layout) -> Sprite:
    mx, my = lay.ticker_at
    size, lh, pad = lay.size(26), lay.px(40), lay.px(14)
    w = _even_up(min(lay.width // 2, pad * 2 + max(text_width(t, size) for t in lines) + 2))
    h = lh * len(lines) + lay.px(8)
    img = _panel(w, h)
    for i, line in enumerate(lines):
        put(img, ellipsize(line, size, w - 2 * pad), pad, lay.px(4) + lh * i + lh * 3 // 4,
            size, WHITE)  # fmt: skip
    return Sprite.from_bgr(img, ink_of(img, PANEL), mx, my, 0.6)


def render_hearts(total: int, lay: Layout) -> Sprite:
    """Top left (the top right is where picture-in-picture puts co-hosts)."""
    mx, my = lay.hearts_at
    size, pad = lay.size(30), lay.px(14)
    label = f"♥ {total:,}"
    w, h = _even_up(text_width(label, size) + 2 * pad), lay.px(50)
    img = _panel(w, h)
    put(img, label, pad, h // 2 + size * 2 // 5, size, PINK)
    return Sprite.from_bgr(img, ink_of(img, PANEL), mx, my, 0.6)


# -- the per-broadcast overlay ---------------------------------------------------------------------
Element = tuple[object, Sprite | None]


class Overlay:
    """One broadcast's overlay at one output size. ``draw`` runs in the compositor's thread."""

    def __init__(self, width: int, height: int) -> None:
        self.layout = Layout(width, height)
        self.model = OverlayModel()
        self.renders = 0  # sprites rendered (for tests and the benchmark)
        self._cache: dict[str, Element] = {}
        self._card_of: tuple[Pinned | None, Pinned | None] = (None, None)
        self._buffer: Image | None = None

    def state(self, now_ms: int, names: Sequence[str]) -> dict[str, object]:
        """Each element's inputs now; ``None``: not shown."""
        m, p = self.model, self.model.pinned
        left = None
        if p is not None and p.deal_price is not None and p.deal_ends_at is not None:
            s = -(-(p.deal_ends_at - now_ms) // 1000)  # ceil: 03:59 until 239 s are left
            left = s if s > 0 else None
        ticks = ticker_lines(m.orders, now_ms)
        if p is not None and self._card_of[0] is not p:  # once per pin, not once per frame
            # the card without the stock: the stock row is its own sprite
            self._card_of = (p, dataclasses.replace(p, stock=0))
        return {
            # (the thumbnail does not take part in Pinned's equality: its identity does here)
            "card": (self._card_of[1], p.price_now(now_ms), id(p.thumb)) if p else None,
            "stock": p.stock if p else None,
            "countdown": left,
            "names": (tuple(names), p is not None) if names else None,
            "ticker": ticks or None,
            "hearts": m.hearts or None,
        }

    def sprites(self, now_ms: int, names: Sequence[str]) -> list[Sprite]:
        """The sprites of this moment, re-rendering those whose inputs changed."""
        out = []
        for name, value in self.state(now_ms, names).items():
            cached = self._cache.get(name)
            if cached is None or cached[0] != value:
                sprite = None if value is None else self._render(name, value, now_ms)
                cached = self._cache[name] = (value, sprite)
                self.renders += sprite is not None
            if cached[1] is not None:
                out.append(cached[1])
        return out

    def _render(self, name: str, value: object, now_ms: int) -> Sprite:
        lay = self.layout
        if name == "card" and isinstance(value, tuple):
            return render_card(value[0], lay, now_ms)  # the product as state() saw it
        if name == "names" and isinstance(value, tuple):
            names, card = value
            return render_names(names, lay, card)
        if name == "ticker" and isinstance(value, tuple):
            return render_ticker(value, lay)
        if isinstance(value, int):
            render: Callable[[int, Layout], Sprite] = {
                "stock": render_stock, "countdown": render_countdown, "hearts": render_hearts,
            }[name]  # fmt: skip
            return render(value, lay)
        raise ValueError(f"cannot render {name} from {value!r}")

    def draw(self, canvas: Image, names: Sequence[str] = (), now: float | None = None) -> Image:
        """``canvas`` (I420) with the overlay composited; copied first if it is read-only (into
        a buffer the next call reuses: use the result before drawing again)."""
        now_ms = int((time.time() if now is None else now) * 1000)
        sprites = self.sprites(now_ms, names)
        if not sprites:
            return canvas
        if not canvas.flags.writeable:
            # one buffer, reused: a fresh 1.4 MB array per frame costs page faults every frame
            # (large blocks are mmap'd: core/malloc.py); the caller encodes it before the next
            if self._buffer is None or self._buffer.shape != canvas.shape:
                self._buffer = np.empty_like(canvas)
            np.copyto(self._buffer, canvas)
            canvas = self._buffer
        for sprite in sprites:
            sprite.draw(canvas, self.layout.width, self.layout.height)
        return canvas
