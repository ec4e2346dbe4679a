"""``jangteo bench hls``: Low-Latency HLS latency and cost, with the WebRTC run beside it.

One server process (the fan-out bench's: the real app and a synthetic studio at 1280x720@30
with a stamped frame counter; three rungs), then, in order:

* ``latency``: a low-latency reader here (jangteo/bench/hls_client.py) follows the top rung part
  by part and decodes every picture: made (the studio's clock) → decoded, p50/p99;
* ``packaging``: the packager's own CPU per rendition (its thread time, as a share of a core);
* ``clients``: the server's CPU with ``--clients`` polling LL-HLS clients (blocking reload + each
  part, in another process) over its CPU with none: cores per 100 clients;
* ``webrtc``: the fan-out bench's fast run with as many WebRTC viewers, for comparison.
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
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from core.redisproc import RedisServer

from . import fanout
from .hls_client import PartReader
from .output import prints_json
from .procstat import cpu_seconds

WEBRTC_FIGURES = ("viewers", "server_cores", "fps_per_viewer", "latency_p50_ms", "latency_p99_ms")


async def _server(redis_url: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    server = subprocess.Popen(  # noqa: ASYNC220 - benchmark harness
        [sys.executable, "-m", "jangteo.bench.fanout_server", "--redis-url", redis_url,
         "--fanout", "fast", "--workers", "0"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert server.stdout is not None
    line = await asyncio.to_thread(server.stdout.readline)
    if not line:
        raise RuntimeError("bench server did not start")
    return server, json.loads(line)


async def hls_run(redis_url: str, seconds: float, clients: int) -> dict[str, Any]:
    server, info = await _server(redis_url)
    assert server.stdin is not None and server.stdout is not None
    base = f"{info['base_url']}/hls/{info['bid']}"
    started = time.monotonic()
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            r = await http.get(f"{base}/index.m3u8")  # starts the packager
            r.raise_for_status()
            rungs = [line.split("/")[0] for line in r.text.splitlines() if line.endswith(".m3u8")]
            for msn in range(3):  # a few segments made before anything is measured
                await http.get(f"{base}/{rungs[0]}/index.m3u8?_HLS_msn={msn}")
            reader = PartReader(http, f"{base}/{rungs[0]}", float(info["t0"]), int(info["fps"]))
            window = (time.time() + 1.0, time.time() + 1.0 + seconds)
            cpu0 = cpu_seconds(server.pid)
            await reader.play(seconds + 1.5, window)
            idle_cores = (cpu_seconds(server.pid) - cpu0) / (seconds + 1.5)
        start_at = time.time() + 3.0
        stop_at = start_at + seconds
        load = subprocess.Popen(  # noqa: ASYNC220
            [sys.executable, "-m", "jangteo.bench.hls_client", "--base", f"{base}/{rungs[1]}",
             "--clients", str(clients), "--start-at", str(start_at), "--stop-at", str(stop_at)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        await asyncio.sleep(max(0.0, start_at - time.time()))
        cpu0 = cpu_seconds(server.pid)
        await asyncio.sleep(max(0.0, stop_at - time.time()))
        busy_cores = (cpu_seconds(server.pid) - cpu0) / seconds
        out, _ = await asyncio.to_thread(load.communicate)
        polled = json.loads(out.strip().splitlines()[-1])
        server.stdin.close()
        tail = await asyncio.to_thread(server.stdout.read)
        stats = json.loads(tail.strip().splitlines()[-1])
        lifetime = time.monotonic() - started
    finally:
        with contextlib.suppress(Exception):
            server.stdin.close()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    lat = np.array(reader.latencies) * 1000 if reader.latencies else np.array([np.nan])
    return {
        "rungs": rungs,
        "latency_p50_ms": round(float(np.percentile(lat, 50))),
        "latency_p99_ms": round(float(np.percentile(lat, 99))),
        "latency_samples": len(reader.latencies),
        "reader_frames": reader.frames,
        "packaging_core_pct": {
            name: round(v["cpu_s"] * 100 / lifetime, 2) for name, v in stats.get("hls", {}).items()
        },
        "server_cores_idle": round(idle_cores, 3),
        "server_cores_with_clients": round(busy_cores, 3),
        "clients": clients,
        "cores_per_100_clients": round((busy_cores - idle_cores) * 100 / clients, 3),
        "parts_per_s": round(polled["parts"] / seconds),
        "playlists_per_s": round(polled["playlists"] / seconds),
        "load_cores": round(polled["cpu_s"] / seconds, 3),
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="jangteo-bench-") as tmp:
        redis = RedisServer(Path(tmp), port=0, fsync="everysec")
        redis.start()
        try:
            hls = await hls_run(redis.url, args.seconds, args.clients)
            webrtc = await fanout.run_one("fast", args.clients, args.seconds, redis.url, 2)
        finally:
            redis.stop()
    return {
        "bench": "hls",
        "cores": os.cpu_count(),
        "video": "1280x720@30, ladder 720p/360p/180p, H.264 + AAC",
        "hls": hls,
        "webrtc": {k: webrtc.get(k) for k in WEBRTC_FIGURES},
        "webrtc_cores_per_100_viewers": round(webrtc["server_cores"] * 100 / args.clients, 3),
    }


def add_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("hls", help="LL-HLS latency, packaging CPU, CPU per 100 clients")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--clients", type=int, default=100)

    prints_json(p, bench)
