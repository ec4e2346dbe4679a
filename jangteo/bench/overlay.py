"""``jangteo bench overlay``: the cost of the overlay per frame, sprite path against a naive one.

Each output size (default 1280x720 and the portrait 720x1280), the full overlay: the pinned
card (thumbnail, Hangul name, deal price, struck list price, discount, QR code), the stock row,
the deal countdown, the names, the order ticker and the hearts total.

* ``sprite``: what the compositor does -- :meth:`stream.compose.overlay.Overlay.draw` on a fresh
  canvas each frame (a copy of it: the compositor keeps the picture without overlay for
  snapshots); the countdown ticks every second of the simulated 30 fps clock. ``busy``: the
  same while the stock changes every 10th frame (a flash sale: 3 stock-row renders a second).
* ``naive``: what a straightforward build does on every frame: render every element again
  (resize the thumbnail, make the QR code, draw the text) and blend the translucent panels per
  pixel in NumPy.

Also the compose cost (scaling publishers' pictures into the layout,
``stream/compose/layout.py``) with 1 and 4 publishers of 1280x720. Everything runs on one thread
of this process.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
from av.video.frame import VideoFrame

from stream.compose.layout import LAYOUTS, compose_sources
from stream.compose.overlay import (
    Layout,
    Overlay,
    OverlayModel,
    Pinned,
    Tick,
    render_card,
    render_countdown,
    render_hearts,
    render_names,
    render_stock,
    render_ticker,
    ticker_lines,
)
from stream.compose.slate import slate_i420
from stream.compose.sprites import Image, Sprite, planes

GOAL_MS = 0.5  # card + lower third + ticker + countdown per 1280x720 frame


def sample_photo() -> Image:
    rng = np.random.default_rng(7)
    photo = rng.integers(0, 255, (480, 640, 3), np.uint8)
    return np.asarray(cv2.GaussianBlur(photo, (0, 0), 9), np.uint8)


def sample_model(now_ms: int, stock: int, photo: Image) -> OverlayModel:
    pinned = Pinned(
        id="A1", name="제주 감귤 3kg 한 박스 산지직송", price=29900, list_price=39900,
        deal_price=24900, deal_ends_at=now_ms + 600_000, stock=stock,
        order_url="https://shop.example/watch/b1?product=A1", thumb=photo,
    )  # fmt: skip
    ticks = tuple(Tick(n, 1 + i % 2, now_ms) for i, n in enumerate(("김**", "이**", "박**")))
    return OverlayModel(pinned, ticks, 18313)


def naive_draw(
    canvas: Image, model: OverlayModel, lay: Layout, names: list[str], now_ms: int
) -> Image:
    """Everything again, every frame, blended per pixel."""
    p = model.pinned
    assert p is not None
    left = max(1, (p.deal_ends_at or now_ms) - now_ms) // 1000
    sprites = [
        render_card(p, lay, now_ms),
        render_stock(p.stock, lay),
        render_countdown(left, lay),
        render_names(names, lay, True),
        render_ticker(ticker_lines(model.orders, now_ms), lay),
        render_hearts(model.hearts, lay),
    ]
    out = canvas.copy()
    for s in sprites:
        _blend_per_pixel(out, s, lay)
    return out


def _blend_per_pixel(canvas: Image, s: Sprite, lay: Layout) -> None:
    for i, (dst, src) in enumerate(
        zip(planes(canvas, lay.width, lay.height), s.planes(), strict=True)
    ):
        d = 1 if i == 0 else 2
        ink = s.ink if i == 0 else s.ink2
        alpha = np.where(ink > 0, 256, int(s.alpha * 256)).astype(np.uint16)
        roi = dst[s.y // d : s.y // d + s.h // d, s.x // d : s.x // d + s.w // d]
        roi[...] = (
            (roi.astype(np.uint16) * (256 - alpha) + src.astype(np.uint16) * alpha) >> 8
        ).astype(np.uint8)


def _ms_per_call(fn: Callable[[int], object], frames: int) -> float:
    for i in range(min(10, frames)):
        fn(i)
    t0 = time.perf_counter()
    for i in range(frames):
        fn(i)
    return (time.perf_counter() - t0) * 1000 / frames


def _camera(width: int, height: int, seed: int) -> VideoFrame:
    rng = np.random.default_rng(seed)
    img = np.asarray(
        cv2.GaussianBlur(rng.integers(0, 255, (height, width, 3), np.uint8), (0, 0), 5), np.uint8
    )
    return VideoFrame.from_ndarray(img, format="bgr24").reformat(format="yuv420p")


def bench(args: argparse.Namespace) -> dict[str, Any]:
    sizes = [_size(text) for text in args.sizes.split(",")]
    shapes = {f"{w}x{h}": one_size(w, h, args.frames) for w, h in sizes}
    return {
        "bench": "overlay",
        "frames": args.frames,
        "sizes": shapes,
        "goal_ms": GOAL_MS,
        "meets_goal": all(v["sprite_ms_per_frame"] <= GOAL_MS for v in shapes.values()),
        "cpu": os.cpu_count(),
    }


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.strip().partition("x")
    return int(w), int(h)


def one_size(w: int, h: int, n: int) -> dict[str, Any]:
    """The figures at one output size (landscape or portrait)."""
    lay = Layout(w, h)
    names = ["장터 사장님", "크리에이터 민지"]
    start_ms = int(time.time() * 1000)
    base = slate_i420(w, h).copy()
    frame_ms = 1000 / 30

    photo = sample_photo()
    models = [sample_model(start_ms, 10_000 - k, photo) for k in range(n // 10 + 2)]

    def sprite_path(busy: bool) -> Callable[[int], object]:
        ov = Overlay(w, h)
        ov.model = models[0]

        def frame(i: int) -> object:
            now_ms = start_ms + int(i * frame_ms)
            if busy and i % 10 == 0:
                ov.model = models[i // 10]
            canvas = base.copy()
            canvas.setflags(write=False)  # as the compositor hands it over: drawn on a copy
            out = ov.draw(canvas, names, now=now_ms / 1000)
            renders[busy] = ov.renders
            return out

        return frame

    renders: dict[bool, int] = {}
    model = models[0]

    def naive(i: int) -> object:
        return naive_draw(base, model, lay, names, start_ms + int(i * frame_ms))

    copy_ms = _ms_per_call(lambda i: base.copy(), n)
    sprite_ms = _ms_per_call(sprite_path(False), n)
    busy_ms = _ms_per_call(sprite_path(True), n)
    naive_ms = _ms_per_call(naive, max(30, n // 10))
    compose: dict[str, dict[str, float]] = {}
    cams = [_camera(1280, 720, seed) for seed in range(4)]  # landscape cameras, either shape
    for layout in LAYOUTS:
        compose[layout] = {}
        for k in (1, 4):

            def one(i: int, k: int = k, layout: str = layout) -> object:
                return compose_sources(cams[:k], layout, w, h)

            compose[layout][f"{k}_publishers_ms"] = round(_ms_per_call(one, max(30, n // 5)), 3)
    return {
        "sprite_ms_per_frame": round(sprite_ms, 3),
        "sprite_ms_without_canvas_copy": round(sprite_ms - copy_ms, 3),
        "sprite_renders": renders[False],
        "busy_ms_per_frame": round(busy_ms, 3),
        "busy_renders": renders[True],
        "naive_ms_per_frame": round(naive_ms, 3),
        "ratio": round(naive_ms / sprite_ms, 1),
        "compose": compose,
    }


def screenshot(path: str, width: int, height: int) -> None:
    """A composed frame as viewers get it: host and co-host side by side, the full overlay."""
    from jangteo.overlays import decode_thumb
    from jangteo.sample import picture
    from stream.ingest.synthetic import pattern_frame

    now_ms = int(time.time() * 1000)
    stall = decode_thumb(picture((0, 140, 255), 0))
    assert stall is not None
    guest = VideoFrame.from_ndarray(
        np.asarray(cv2.resize(stall, (width, height)), np.uint8), format="bgr24"
    )
    pictures = [pattern_frame(120, width, height), guest]
    canvas = compose_sources(pictures, "side_by_side", width, height)
    ov = Overlay(width, height)
    model = sample_model(now_ms, 12, stall)
    ov.model = model
    out = ov.draw(canvas, ["장터 사장님", "크리에이터 민지"], now=now_ms / 1000 + 1.5)
    cv2.imwrite(path, cv2.cvtColor(out, cv2.COLOR_YUV2BGR_I420))


def add_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("overlay", help="overlay cost per frame: sprites vs naive redraw")
    p.add_argument("--sizes", default="1280x720,720x1280", help="output sizes, landscape and "
                   "portrait by default")  # fmt: skip
    p.add_argument("--frames", type=int, default=900, help="frames timed for the sprite path")
    p.add_argument("--screenshot", metavar="PNG", help="also write a composed frame there (of "
                   "each size: NAME-WxH.png)")  # fmt: skip

    def run(args: argparse.Namespace) -> int:
        if args.screenshot:
            stem = args.screenshot.removesuffix(".png")
            for w, h in (_size(t) for t in args.sizes.split(",")):
                screenshot(f"{stem}-{w}x{h}.png", w, h)
        print(json.dumps(bench(args), ensure_ascii=False), flush=True)
        return 0

    p.set_defaults(run=run)
