"""``jangteo bench restream``: what a restream destination costs the server, and how far behind
WebRTC its picture arrives, against the anchor that re-encodes per destination.

One server process (jangteo/bench/restream_server.py: the real app, a synthetic studio at
1280x720@30 with a stamped frame counter) and a real RTMP server (Debian's nginx with its RTMP
module, jangteo/testkit/rtmp.py), both on loopback. A WebRTC viewer watches the top rung the
whole time (the show is being watched: its encoder runs in every phase). In order:

* ``idle``: the server's CPU with no destination (before and after ``ours``, averaged);
* ``ours``: with ``--destinations`` pushes of the top rung (the packets already encoded): each
  push's own CPU (measured in it: its event-loop time, thread CPU), and the whole process's
  (ours - idle) / destinations as a cross-check (noisier: the rest of the server varies more);
* ``delay``: a player pulls one destination back from nginx and decodes every picture, beside
  the WebRTC viewer: made (the studio's clock) → decoded, p50/p99 of each, and the difference;
* ``anchor``: one destination that re-encodes (its own libx264 at the top rung's settings, as a
  restreamer that renders and encodes per destination does): (anchor - idle).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np

from core.redisproc import RedisServer
from jangteo.testkit import rtmp
from stream.ingest import pattern

from .output import prints_json
from .procstat import cpu_seconds


class Latency:
    """Made → decoded of stamped frames inside a window, from the studio's clock."""

    def __init__(self, t0: float, fps: int) -> None:
        self.t0, self.fps = t0, fps
        self.window = (0.0, 0.0)
        self.samples: list[float] = []
        self.lock = threading.Lock()

    def see(self, y: np.ndarray, now: float) -> None:
        if not self.window[0] <= now <= self.window[1]:
            return
        n = pattern.read_counter(y)
        if n is None:
            return
        made = self.t0 + n / self.fps
        while now - made > 65536 / self.fps / 2:  # the counter wraps
            made += 65536 / self.fps
        with self.lock:
            self.samples.append(now - made)

    def figures(self) -> dict[str, Any]:
        ms = np.array(self.samples or [np.nan]) * 1000
        p50, p99 = (round(float(np.percentile(ms, q))) for q in (50, 99))
        return {"p50_ms": p50, "p99_ms": p99, "samples": len(self.samples)}


def _pull(url: str, latency: Latency, stop: threading.Event) -> int:
    frames = 0
    with av.open(url, timeout=20) as c:
        c.streams.video[0].thread_type = "SLICE"
        for frame in c.decode(video=0):
            frames += 1
            y = np.asarray(frame.to_ndarray(format="gray"), np.uint8)
            latency.see(y, time.time())
            if stop.is_set():
                break
    return frames


async def _cpu_over(pid: int, seconds: float) -> float:
    c0, t0 = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    return (cpu_seconds(pid) - c0) / (time.monotonic() - t0)


async def _ask(server: subprocess.Popen[str], command: str) -> dict[str, Any]:
    """A command to the bench server (restream_server.py) and its one-line answer."""
    assert server.stdin is not None and server.stdout is not None
    server.stdin.write(command + "\n")
    server.stdin.flush()
    answer: dict[str, Any] = json.loads(await asyncio.to_thread(server.stdout.readline))
    return answer


async def _statuses(http: httpx.AsyncClient, path: str) -> dict[str, dict[str, Any]]:
    return {d["id"]: d for d in (await http.get(path)).json()}


async def run(redis_url: str, nginx: rtmp.NginxRtmp, seconds: float, n: int) -> dict[str, Any]:
    from jangteo.testkit.clients import WhepClient
    from stream.deliver.rtc import configure_host_addresses

    configure_host_addresses(["127.0.0.1"])
    server = subprocess.Popen(  # noqa: ASYNC220 - benchmark harness
        [sys.executable, "-m", "jangteo.bench.restream_server", "--redis-url", redis_url],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert server.stdin is not None and server.stdout is not None
    line = await asyncio.to_thread(server.stdout.readline)
    if not line:
        raise RuntimeError("bench server did not start")
    info = json.loads(line)
    pid, bid = int(info["pid"]), info["bid"]
    webrtc = Latency(float(info["t0"]), int(info["fps"]))
    pulled = Latency(float(info["t0"]), int(info["fps"]))
    path = f"/api/broadcasts/{bid}/destinations"
    auth = {"Authorization": f"Bearer {info['token']}"}

    def on_frame(frame: av.VideoFrame, now: float) -> None:
        webrtc.see(np.asarray(frame.to_ndarray(), np.uint8)[: frame.height], now)

    viewer = WhepClient(info["base_url"], bid, info["token"], on_frame=on_frame)
    try:
        async with httpx.AsyncClient(base_url=info["base_url"], headers=auth, timeout=30) as http:
            await viewer.play(audio=False, video_codec="h264")
            await viewer.wait_frames(60, timeout=30)
            idle = await _cpu_over(pid, seconds)
            ids = []
            for i in range(n):
                r = await http.post(path, json={"name": f"platform {i}", "url": nginx.url(f"k{i}")})
                r.raise_for_status()
                ids.append(r.json()["id"])
            deadline = time.monotonic() + 30
            while any(s["status"] != "live" for s in (await _statuses(http, path)).values()):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"not live: {await _statuses(http, path)}")
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.0)  # settled
            sent0 = sum(s["bytes_sent"] for s in (await _statuses(http, path)).values())
            t_sent = time.monotonic()
            own0 = await _ask(server, "stats")
            ours = await _cpu_over(pid, seconds)
            own1 = await _ask(server, "stats")
            pushing = sum(own1["cpu_s"].values()) - sum(own0["cpu_s"].values())
            pushing /= n * (time.monotonic() - t_sent)
            sent = sum(s["bytes_sent"] for s in (await _statuses(http, path)).values()) - sent0
            mbps = sent * 8 / (time.monotonic() - t_sent) / n / 1e6
            # delay: a player on one destination beside the WebRTC viewer
            stop = threading.Event()
            pulling = asyncio.ensure_future(asyncio.to_thread(_pull, nginx.url("k0"), pulled, stop))
            await asyncio.sleep(5.0)  # the player's probe, and catching up after it
            window = (time.time(), time.time() + seconds)
            webrtc.window = pulled.window = window
            await asyncio.sleep(seconds)
            stop.set()
            await pulling
            for did in ids:
                await http.delete(f"{path}/{did}")
            await asyncio.sleep(1.0)
            idle = (idle + await _cpu_over(pid, seconds)) / 2  # before and after
            await _ask(server, f"reencode {nginx.url('anchor')}")
            await asyncio.sleep(1.0)
            anchor = await _cpu_over(pid, seconds)
            await _ask(server, "stop-reencode")
    finally:
        await viewer.aclose()
        with contextlib.suppress(Exception):
            server.stdin.close()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    return {
        "server_cores_idle": round(idle, 3),
        "server_cores_with_destinations": round(ours, 3),
        # the pushes' own CPU (measured in them), and the whole process's difference (noisier)
        "destination_core_pct": round(pushing * 100, 3),
        "destination_core_pct_process": round((ours - idle) / n * 100, 2),
        "destination_mbps": round(mbps, 2),
        "anchor_core_pct": round((anchor - idle) * 100, 1),
        "anchor_over_ours": round((anchor - idle) / pushing) if pushing > 0 else None,
        "rtmp_latency": pulled.figures(),
        "webrtc_latency": webrtc.figures(),
        "added_delay_ms": pulled.figures()["p50_ms"] - webrtc.figures()["p50_ms"],
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    why = rtmp.available()
    if why:
        raise SystemExit(f"jangteo bench restream {why}")
    with tempfile.TemporaryDirectory(prefix="jangteo-bench-") as tmp:
        redis = RedisServer(Path(tmp), port=0, fsync="everysec")
        nginx = rtmp.NginxRtmp(Path(tmp) / "nginx")
        redis.start()
        nginx.start()
        try:
            figures = await run(redis.url, nginx, args.seconds, args.destinations)
        finally:
            nginx.stop()
            redis.stop()
    return {"bench": "restream", "cores": os.cpu_count(),
            "video": "1280x720@30 H.264 2.5 Mbps + AAC, pushed to nginx-rtmp on loopback",
            "destinations": args.destinations} | figures  # fmt: skip


def add_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("restream", help="CPU per RTMP destination vs re-encoding; added delay")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--destinations", type=int, default=3)

    prints_json(p, bench)
