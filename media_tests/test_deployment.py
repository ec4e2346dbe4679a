"""A three-node deployment on one machine (jangteo/testkit/deployment.py): three network
namespaces, a Redis Cluster of three masters, one ``jangteo serve`` in each namespace.

The publisher goes live on n1 (the origin); viewers watch on n2 and n3 (edges); chat and orders
cross the nodes; n2 is killed with ``kill -9`` and its viewers move to n3; then the origin is
killed and the publisher reconnects through n3, whose viewers see the slate and the show again.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from jangteo.testkit.clients import Received, WhepClient, WhipClient
from jangteo.testkit.deployment import Deployment, Node, available
from jangteo.testkit.server import bearer
from stream.ingest.synthetic import PatternTrack, ToneTrack
from tests.chat_client import ChatClient

from .helpers import is_pattern, is_slate, wait_for_frame

pytestmark = pytest.mark.timeout(300)
ADMIN = {"Authorization": "Bearer deploy-admin-key"}
_keys = itertools.count()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    reason = available()
    if reason:
        pytest.skip(f"the deployment test {reason}")
    d = Deployment(Path(tmp_path_factory.mktemp("deployment")), "deploy-secret",
                   "deploy-admin-key", JANGTEO_VIDEO_SIZE="320x180",
                   JANGTEO_RECORD="0", JANGTEO_LADDER="180p:600k",
                   JANGTEO_VIDEO_BITRATE="600000")  # fmt: skip
    try:
        d.start()
        yield d
    finally:
        d.stop()


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


async def metrics(http: httpx.AsyncClient, n: Node) -> str:
    r = await http.get(f"{n.url}/metrics", headers=ADMIN)
    r.raise_for_status()
    return r.text


async def token(http: httpx.AsyncClient, n: Node, bid: str, name: str) -> str:
    r = await http.post(f"{n.url}/api/broadcasts/{bid}/tokens", headers=ADMIN,
                        json={"role": "viewer", "name": name})  # fmt: skip
    r.raise_for_status()
    return str(r.json()["token"])


async def watch(http: httpx.AsyncClient, n: Node, bid: str, name: str) -> WhepClient:
    v = WhepClient(n.url, bid, await token(http, n, bid, name), keep_images=300, sample_every=2)
    await v.play()
    return v


def pattern_at(hue: int = 0) -> Callable[[Received], bool]:
    return lambda f: f.image is not None and is_pattern(f.image, hue=hue)


async def order(http: httpx.AsyncClient, n: Node, bid: str, buyer: str) -> httpx.Response:
    headers = bearer(buyer) | {"Idempotency-Key": f"d{next(_keys)}"}
    return await http.post(f"{n.url}/api/broadcasts/{bid}/orders", headers=headers,
                           json={"product_id": "p1", "qty": 1})  # fmt: skip


async def test_three_nodes_one_show(deployment: Deployment) -> None:
    n1, n2, n3 = deployment.nodes
    async with httpx.AsyncClient(timeout=20) as http:
        r = await http.post(
            f"{n1.url}/api/broadcasts", json={"title": "세 노드 방송"}, headers=ADMIN
        )
        r.raise_for_status()
        bid, host = r.json()["id"], r.json()["host_token"]
        r = await http.put(f"{n1.url}/api/broadcasts/{bid}/products/p1", headers=bearer(host),
                           json={"name": "제주 한라봉", "price": 19900, "stock": 10})  # fmt: skip
        assert r.status_code == 201, r.text
        pub = WhipClient(n1.url, bid, host)
        await pub.publish(PatternTrack(320, 180, 30), ToneTrack(440))
        await pub.connected()
        on_b = [await watch(http, n2, bid, f"b{i}") for i in range(3)]
        on_c = [await watch(http, n3, bid, f"c{i}") for i in range(2)]
        viewers = on_b + on_c
        try:
            for v in viewers:
                await wait_for_frame(v, pattern_at(), 20)
            doc = (await http.get(f"{n3.url}/api/broadcasts/{bid}")).json()
            assert doc["origin"]["node"] == "n1"

            # n1 sends each stream once per edge, not once per viewer
            before = [await metrics(http, n) for n in (n1, n2, n3)]
            await asyncio.gather(*(v.wait_frames(len(v.frames) + 90, 20) for v in viewers))
            after = [await metrics(http, n) for n in (n1, n2, n3)]
            relayed = metric(after[0], "jangteo_relay_bytes_out_total") - metric(
                before[0], "jangteo_relay_bytes_out_total"
            )
            out = "jangteo_rtp_bytes_out_total"
            per_viewer = sum(metric(a, out) - metric(b, out)
                             for a, b in zip(after[1:], before[1:], strict=True)) / 5  # fmt: skip
            edges = metric(after[0], "jangteo_relay_edges")
            assert edges == 2
            ratio = relayed / (2 * per_viewer)
            assert 0.5 < ratio < 1.6, f"n1 relayed {ratio:.2f} copies per edge (5 viewers)"

            # chat and orders made on n2 and n3 reach every node; the stock holds across them
            chats = [await ChatClient.open(n.url, bid, await token(http, n, bid, f"chat-{n.name}"))
                     for n in (n1, n2, n3)]  # fmt: skip
            await chats[1].send(type="chat", text="n2에서 안녕하세요")
            await chats[2].send(type="chat", text="n3에서 안녕하세요")
            for c in chats:
                for text in ("n2에서 안녕하세요", "n3에서 안녕하세요"):
                    await c.wait_for("chat", lambda e, t=text: e["text"] == t)  # type: ignore[misc]
            for c in chats:
                await c.aclose()
            buyers = [(n, await token(http, n, bid, f"buyer-{n.name}-{i}"))
                      for n in (n2, n3) for i in range(15)]  # fmt: skip
            answers = await asyncio.gather(*(order(http, n, bid, t) for n, t in buyers))
            sold = [a for a in answers if a.status_code == 201]
            assert len(sold) == 10, [a.status_code for a in answers]
            assert all(a.status_code == 409 for a in answers if a.status_code != 201)
            products = (await http.get(f"{n1.url}/api/broadcasts/{bid}/products")).json()
            assert products["products"][0]["stock"] == 0
            made_on_c = next(a for a, (n, _) in zip(answers, buyers, strict=True)
                             if n is n3 and a.status_code == 201)  # fmt: skip
            buyer = buyers[answers.index(made_on_c)][1]
            got = await http.get(f"{n1.url}/api/orders/{made_on_c.json()['id']}",
                                 headers=bearer(buyer))  # fmt: skip
            assert got.status_code == 200 and got.json()["status"] == made_on_c.json()["status"]

            # kill -9 n2: its viewers retry on n3 and decode within 3 s; the show goes on
            n2.kill()
            for v in on_b:
                await v.aclose(delete=False)
            t0 = time.monotonic()
            moved = [await watch(http, n3, bid, f"moved{i}") for i in range(3)]
            viewers = on_c + moved
            for v in moved:
                await wait_for_frame(v, pattern_at(), 3)
            assert time.monotonic() - t0 < 3.0 + 1.0  # three sessions negotiated in turn
            for v in on_c:  # never interrupted
                await wait_for_frame(v, pattern_at(), 3, start=max(0, len(v.frames) - 1))

            # kill -9 the origin: the publisher reconnects through n3; its viewers see the
            # slate, then the show again, on the same sessions
            marks = [len(v.frames) for v in viewers]
            n1.kill()
            await pub.aclose(delete=False)
            pub = WhipClient(n3.url, bid, host)
            await pub.publish(PatternTrack(320, 180, 30, hue=60), ToneTrack(440))
            for v, mark in zip(viewers, marks, strict=True):
                back = await wait_for_frame(v, pattern_at(60), 20, start=mark)
                between = v.frames[mark : v.frames.index(back)]
                assert any(f.image is not None and is_slate(f.image) for f in between), "slate"
                assert v.pc.connectionState == "connected"
            doc = (await http.get(f"{n3.url}/api/broadcasts/{bid}")).json()
            assert doc["origin"]["node"] == "n3"
            r = await http.post(f"{n3.url}/api/broadcasts/{bid}/end", headers=bearer(host))
            assert r.status_code == 200, r.text
        finally:
            for v in viewers:
                await v.aclose(delete=False)
            await pub.aclose(delete=False)
