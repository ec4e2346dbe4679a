"""The overlay as viewers get it: decoded WHEP frames, real peers, a real server and Redis."""

from __future__ import annotations

import time

import pytest

from jangteo.testkit.clients import Received, WhepClient, WhipClient
from jangteo.testkit.server import RunningServer
from jangteo.testkit.textmatch import score
from stream.compose.overlay import Layout
from stream.ingest.synthetic import PatternTrack, ToneTrack

from .helpers import wait_for_frame

pytestmark = pytest.mark.timeout(90)

SHOWN_WITHIN_S = 0.3


def reads(frame: Received, text: str, size: int, region: tuple[int, int, int, int]) -> bool:
    return frame.image is not None and score(frame.image, text, size, region) >= 0.8


async def test_pin_and_orders_show_in_the_viewers_video(server: RunningServer) -> None:
    b = await server.create_broadcast("오버레이")
    bid, host = b["id"], {"Authorization": f"Bearer {b['host_token']}"}
    r = await server.http.put(f"/api/broadcasts/{bid}/products/A1", headers=host,
                              json={"name": "제주 감귤 5kg", "price": 29900, "list_price": 39900,
                                    "stock": 5})  # fmt: skip
    assert r.status_code == 201, r.text
    pub = WhipClient(server.base_url, bid, b["host_token"])
    await pub.publish(PatternTrack(640, 360, 30), ToneTrack(440))
    await pub.connected()
    viewer = WhepClient(
        server.base_url, bid, await server.token(bid, "viewer", "시청자"), keep_images=10_000
    )
    await viewer.play()
    lay = Layout(server.settings.video_width, server.settings.video_height)
    price, stock = (lay.size(40), lay.card), (lay.size(30), lay.stock)
    try:
        first = await wait_for_frame(viewer, lambda f: f.image is not None, 15)
        assert not reads(first, "29,900원", *price), "no card before the pin"

        t0 = time.time()
        r = await server.http.post(
            f"/api/broadcasts/{bid}/pin", headers=host, json={"product_id": "A1"}
        )
        assert r.status_code == 200, r.text
        mark = len(viewer.frames)
        shown = await wait_for_frame(viewer, lambda f: reads(f, "29,900원", *price), 5, start=mark)
        assert shown.at - t0 <= SHOWN_WITHIN_S, f"card shown after {shown.at - t0:.3f} s"
        assert reads(shown, "남은 수량 5개", *stock)

        buyer = await server.token(bid, "viewer", "김철수")
        t1 = time.time()
        r = await server.http.post(f"/api/broadcasts/{bid}/orders",
                                   headers={"Authorization": f"Bearer {buyer}",
                                            "Idempotency-Key": "tap-1"},
                                   json={"product_id": "A1", "qty": 2})  # fmt: skip
        assert r.status_code == 201, r.text
        mark = len(viewer.frames)
        after = await wait_for_frame(
            viewer, lambda f: reads(f, "남은 수량 3개", *stock), 5, start=mark
        )
        assert after.at - t1 <= SHOWN_WITHIN_S, f"stock shown after {after.at - t1:.3f} s"
    finally:
        await viewer.aclose()
        await pub.aclose()
