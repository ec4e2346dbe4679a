"""Per-viewer rung switching on a real shaped link: the server in one network namespace, the
viewers in another, the server's egress to one viewer capped with an HTB class (jangteo/testkit/
netns.py). The capped viewer moves down within 5 s and plays in real time there while an
uncapped one stays on the top rung; lifting the cap brings it back up within 20 s."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import ICE_ADDRESS
from jangteo.testkit import netns
from jangteo.testkit.clients import WhepClient, WhipClient
from jangteo.testkit.server import stop_process
from stream.deliver.rtc import configure_host_addresses
from stream.ingest.synthetic import PatternTrack

from .helpers import fps, is_pattern, wait_for_frame

pytestmark = [pytest.mark.netns, pytest.mark.timeout(180)]

WHY_NOT = netns.available()
ADMIN = "shaped-admin"
PORT = 18080  # the server's namespace is new: nothing else listens in it
BASE = f"http://{netns.SERVER_ADDRESS}:{PORT}"
CAP_KBIT = 700


@pytest.fixture
def split_net() -> Iterator[netns.SplitNet]:
    if WHY_NOT:
        pytest.skip(f"a shaped link {WHY_NOT}")
    net = netns.SplitNet()
    net.down()  # whatever an interrupted run left behind
    net.up()
    try:
        yield net
    finally:
        net.down()


@pytest.fixture
async def shaped(split_net: netns.SplitNet, tmp_path: Path) -> AsyncIterator[netns.SplitNet]:
    """``jangteo serve`` in the server's namespace (its own embedded Redis), the test in the
    clients' namespace, gathering only its address there."""
    env = os.environ | {
        "JANGTEO_ADMIN_KEY": ADMIN,
        "JANGTEO_SECRET": "shaped-secret",
        "JANGTEO_ICE_HOST_ADDRESSES": netns.SERVER_ADDRESS,
        "JANGTEO_VIDEO_SIZE": "640x360",
        # the top rung cannot get through 700 kbit/s; the low one easily can
        "JANGTEO_LADDER": "360p:1500k,180p:300k",
        "JANGTEO_DATA_DIR": str(tmp_path / "var"),
        "JANGTEO_LOG_LEVEL": "info",  # the rung switches are in serve.log
    }
    env.pop("REDIS_URL", None)
    with open(tmp_path / "serve.log", "wb") as log:  # noqa: ASYNC230 - once, before the run
        proc = split_net.exec(
            [sys.executable, "-m", "jangteo.cli", "serve", "--host", netns.SERVER_ADDRESS,
             "--port", str(PORT)],
            env=env, stdout=log, stderr=log,
        )  # fmt: skip
    try:
        with netns.entered(netns.CLIENT):
            configure_host_addresses([netns.CLIENT_ADDRESS])
            try:
                async with httpx.AsyncClient(base_url=BASE, timeout=5) as http:
                    await _healthy(http, proc, tmp_path / "serve.log")
                yield split_net
            finally:
                configure_host_addresses([ICE_ADDRESS])
    finally:
        stop_process(proc)


async def _healthy(http: httpx.AsyncClient, proc: Any, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if (await http.get("/healthz")).status_code == 200:
                return
        if proc.poll() is not None:
            break
        await asyncio.sleep(0.1)  # another process starting up: nothing to await
    raise RuntimeError(f"the server did not start: see {log}")


def _local_port(viewer: WhepClient) -> int:
    """The UDP port of the viewer's selected ICE pair (what the server sends to)."""
    (t,) = [t for t in viewer.pc.getTransceivers() if t.kind == "video"]
    ice: Any = t.receiver.transport.transport
    pair = ice._connection._nominated[1]
    return int(pair.local_candidate.port)


async def test_a_capped_viewer_moves_down_and_back_up(shaped: netns.SplitNet) -> None:
    async with httpx.AsyncClient(base_url=BASE, timeout=10) as http:
        admin = {"Authorization": f"Bearer {ADMIN}"}
        b = (await http.post("/api/broadcasts", json={"title": "좁은 길"}, headers=admin)).json()
        bid = b["id"]

        async def token(name: str) -> str:
            r = await http.post(f"/api/broadcasts/{bid}/tokens",
                                json={"role": "viewer", "name": name}, headers=admin)  # fmt: skip
            return str(r.json()["token"])

        pub = WhipClient(BASE, bid, b["host_token"])
        await pub.publish(PatternTrack(640, 360, 30, texture=True))
        await pub.connected()
        capped = WhepClient(BASE, bid, await token("좁은"), keep_images=40, sample_every=5,
                            skip_holes=True)  # fmt: skip
        free = WhepClient(BASE, bid, await token("넓은"), keep_images=10, sample_every=30,
                          skip_holes=True)  # fmt: skip
        try:
            await capped.play(audio=False)
            await free.play(audio=False)
            await capped.wait_frames(30, timeout=30)
            await free.wait_frames(30, timeout=30)
            assert capped.frames[-1].width == 640 and free.frames[-1].width == 640
            shaped.cap(_local_port(capped), CAP_KBIT)
            capped_at, start = time.monotonic(), len(capped.frames)
            low = await wait_for_frame(capped, lambda f: f.width == 320, timeout=5, start=start)
            down_s = time.monotonic() - capped_at
            i = capped.frames.index(low)
            # on the low rung: real time, clean pictures
            await capped.wait_frames(i + 1 + 135, timeout=15)
            played = capped.frames[i + 15 : i + 135]  # 0.5 s to 4.5 s after the switch
            assert all(f.width == 320 for f in played)
            assert fps(played) >= 25, f"{fps(played):.1f} fps on the low rung"
            kept = [f.image for f in played if f.image is not None]
            assert kept and sum(is_pattern(k, drawn_width=640) for k in kept) >= 0.9 * len(kept)
            # the uncapped viewer never left the top rung
            assert all(f.width == 640 for f in free.frames)
            assert fps(free.frames[-90:]) >= 25
            shaped.lift(_local_port(capped))
            lifted_at, start = time.monotonic(), len(capped.frames)
            await wait_for_frame(capped, lambda f: f.width == 640, timeout=20, start=start)
            up_s = time.monotonic() - lifted_at
            print(f"down in {down_s:.1f}s, up in {up_s:.1f}s")
        finally:
            await capped.aclose()
            await free.aclose()
            await pub.aclose()
