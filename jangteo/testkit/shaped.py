"""A capped viewer on a real shaped link, for the tests and ``jangteo bench abr``.

:func:`shaped_server` runs ``jangteo serve`` in the server's network namespace (its own embedded
Redis) and the caller in the clients' (jangteo/testkit/netns.py). :func:`capped_viewer` plays
the scenario: a broadcast of the test pattern, two viewers on the top rung, then one of them capped
at ``cap_kbit`` by an HTB class on the server's egress; it measures how long until that viewer
decodes the lower rung, how it plays there, and how long until it is back on top once the cap
is lifted -- while the other viewer stays on the top rung.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from stream.deliver.rtc import configure_host_addresses
from stream.ingest import pattern
from stream.ingest.synthetic import PatternTrack

from . import netns
from .clients import Received, WhepClient, WhipClient

ADMIN = "shaped-admin"
PORT = 18080  # the server's namespace is new: nothing else listens in it
BASE = f"http://{netns.SERVER_ADDRESS}:{PORT}"
# 640x360 at two rungs: the top one cannot get through 700 kbit/s, the low one easily can
LADDER = "360p:1500k,180p:300k"
TOP_WIDTH, LOW_WIDTH = 640, 320


@contextlib.asynccontextmanager
async def shaped_server(
    tmp: Path, restore_addresses: Sequence[str] = ()
) -> AsyncIterator[netns.SplitNet]:
    """The split network, a server in its server side, the caller in its client side."""
    net = netns.SplitNet()
    net.down()  # whatever an interrupted run left behind
    net.up()
    env = os.environ | {
        "JANGTEO_ADMIN_KEY": ADMIN,
        "JANGTEO_SECRET": "shaped-secret",
        "JANGTEO_ICE_HOST_ADDRESSES": netns.SERVER_ADDRESS,
        "JANGTEO_VIDEO_SIZE": "640x360",
        "JANGTEO_LADDER": LADDER,
        "JANGTEO_DATA_DIR": str(tmp / "var"),
        "JANGTEO_LOG_LEVEL": "info",  # the rung switches are in serve.log
    }
    env.pop("REDIS_URL", None)
    log = tmp / "serve.log"
    with open(log, "wb") as out:  # noqa: ASYNC230 - once, before the run
        proc = net.exec([sys.executable, "-m", "jangteo.cli", "serve", "--host",
                         netns.SERVER_ADDRESS, "--port", str(PORT)],
                        env=env, stdout=out, stderr=out)  # fmt: skip
    try:
        with netns.entered(netns.CLIENT):
            configure_host_addresses([netns.CLIENT_ADDRESS])
            try:
                await _healthy(proc, log)
                yield net
            finally:
                configure_host_addresses(list(restore_addresses))
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(proc.wait, 10)
        if proc.poll() is None:
            proc.kill()
        net.down()


async def _healthy(proc: subprocess.Popen[bytes], log: Path) -> None:
    async with httpx.AsyncClient(base_url=BASE, timeout=5) as http:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(httpx.TransportError):
                if (await http.get("/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)  # another process starting up: nothing to await
    raise RuntimeError(f"the server did not start: see {log}")


def local_port(viewer: WhepClient) -> int:
    """The UDP port of the viewer's selected ICE pair (what the server sends to)."""
    (t,) = [t for t in viewer.pc.getTransceivers() if t.kind == "video"]
    ice: Any = t.receiver.transport.transport
    return int(ice._connection._nominated[1].local_candidate.port)


async def _first(viewer: WhepClient, width: int, start: int, timeout: float) -> int:
    """The index of the first frame at ``start`` or later that is ``width`` wide."""
    deadline = time.monotonic() + timeout
    while True:
        for i in range(start, len(viewer.frames)):
            if viewer.frames[i].width == width:
                return i
        start = len(viewer.frames)
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no {width}-wide frame within {timeout}s")
        await viewer.wait_frames(start + 1, timeout=left)


def _fps(frames: Sequence[Received]) -> float:
    return (len(frames) - 1) / (frames[-1].at - frames[0].at) if len(frames) > 1 else 0.0


def _clean(img: Any) -> bool:
    n = pattern.read_counter(img)
    speed = 8 * img.shape[1] / TOP_WIDTH
    return n is not None and pattern.pattern_error(img, n, speed=speed) < 30


async def capped_viewer(net: netns.SplitNet, cap_kbit: int = 700) -> dict[str, Any]:
    """The scenario (see the module docstring); the figures it measured."""
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with httpx.AsyncClient(base_url=BASE, timeout=10) as http:
        b = (await http.post("/api/broadcasts", json={"title": "좁은 길"}, headers=admin)).json()
        bid = b["id"]

        async def token(name: str) -> str:
            r = await http.post(f"/api/broadcasts/{bid}/tokens",
                                json={"role": "viewer", "name": name}, headers=admin)  # fmt: skip
            return str(r.json()["token"])

        pub = WhipClient(BASE, bid, b["host_token"])
        capped = WhepClient(BASE, bid, await token("좁은"), keep_images=40, sample_every=5,
                            skip_holes=True)  # fmt: skip
        free = WhepClient(BASE, bid, await token("넓은"), keep_images=10, sample_every=30,
                          skip_holes=True)  # fmt: skip
        try:
            await pub.publish(PatternTrack(640, 360, 30, texture=True))
            await pub.connected()
            await capped.play(audio=False)
            await free.play(audio=False)
            await capped.wait_frames(30, timeout=30)
            await free.wait_frames(30, timeout=30)
            top_before = capped.frames[-1].width == TOP_WIDTH == free.frames[-1].width
            net.cap(local_port(capped), cap_kbit)
            capped_at = time.monotonic()
            low = await _first(capped, LOW_WIDTH, len(capped.frames), timeout=15)
            down_s = time.monotonic() - capped_at
            await capped.wait_frames(low + 1 + 135, timeout=15)
            played = capped.frames[low + 15 : low + 135]  # 0.5 s to 4.5 s after the switch
            kept = [f.image for f in played if f.image is not None]
            figures: dict[str, Any] = {
                "cap_kbit": cap_kbit,
                "top_before": top_before,
                "down_s": round(down_s, 2),
                "capped_fps": round(_fps(played), 1),
                "capped_widths": sorted({f.width for f in played}),
                "capped_clean": round(sum(map(_clean, kept)) / max(1, len(kept)), 3),
                "free_widths": sorted({f.width for f in free.frames}),
                "free_fps": round(_fps(free.frames[-90:]), 1),
            }
            net.lift(local_port(capped))
            lifted_at = time.monotonic()
            await _first(capped, TOP_WIDTH, len(capped.frames), timeout=30)
            figures["up_s"] = round(time.monotonic() - lifted_at, 2)
            return figures
        finally:
            await capped.aclose()
            await free.aclose()
            await pub.aclose()
