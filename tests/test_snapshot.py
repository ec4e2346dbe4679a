"""A flash product's image is the live composed frame (the market-stall case)."""

from __future__ import annotations

import cv2
import numpy as np

from jangteo.testkit.server import RunningServer
from stream.encode.bus import Subscription
from stream.encode.encoders import Codec
from stream.ingest import pattern
from stream.ingest.synthetic import SyntheticStudio


async def test_snapshot_takes_the_composed_frame(server: RunningServer) -> None:
    b = await server.create_broadcast()
    bid, host = b["id"], {"Authorization": f"Bearer {b['host_token']}"}
    r = await server.http.post(
        f"/api/broadcasts/{bid}/products/snapshot",
        json={"name": "오늘 딴 딸기 1kg", "price": 15000, "stock": 20},
        headers=host,
    )
    assert r.status_code == 409 and r.json()["code"] == "no_picture"  # nothing live yet
    media = server.ctx.hub.ensure(bid)
    studio = SyntheticStudio(media.compositor, width=640, height=360)
    studio.start()
    try:
        # wait until the compositor has composed the studio's picture (a tap on the video bus)
        bus = media.compositor.bus(Codec.VP8)
        tap = Subscription(bus, maxlen=100, wait_keyframe=False)
        bus.subscribers.add(tap)
        while media.compositor.on_slate:
            await tap.get()
        tap.close()
        r = await server.http.post(
            f"/api/broadcasts/{bid}/products/snapshot",
            json={"name": "오늘 딴 딸기 1kg", "price": 15000, "stock": 20},
            headers=host,
        )
    finally:
        await studio.aclose()
    assert r.status_code == 201, r.text
    product = r.json()
    assert product["name"] == "오늘 딴 딸기 1kg" and product["stock"] == 20
    img = await server.http.get(product["image"])
    assert img.headers["content-type"] == "image/jpeg"
    picture = cv2.imdecode(np.frombuffer(img.content, np.uint8), cv2.IMREAD_COLOR)
    assert picture is not None
    n = pattern.read_counter(picture)
    assert n is not None  # the studio's numbered picture, not a slate or a blank
    assert pattern.pattern_error(picture, n) < 30
    listed = (await server.http.get(f"/api/broadcasts/{bid}/products")).json()["products"]
    assert [p["id"] for p in listed] == [product["id"]]
