"""``jangteo bench fanout``: what one broadcast costs the server per viewer.

Runs, in one harness, the anchor (``naive``: every viewer's sender encodes the composed frames,
as aiortc's examples do with MediaRelay) and ours (``once``: one encoder per codec, the same
encoded frames to every viewer). Each run starts a fresh server process (the real app plus a
synthetic studio at 1280x720@30), load viewers in other processes (they depacketize and count,
no decoding), and two probe viewers here that decode and read the frame counter stamped into the
pattern for glass-to-glass latency. Prints one JSON line.
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

import numpy as np

from jangteo.redisproc import RedisServer
from stream.rtc import configure_host_addresses

from .procstat import cpu_seconds, rss_mb

PROBES = 2


async def _probes(base: str, path: str, bid: str, token: str, info: dict[str, Any], n: int,
                  start_at: float, stop_at: float) -> dict[str, Any]:  # fmt: skip
    from av.video.frame import VideoFrame

    from stream import pattern
    from stream.clients import WhepClient

    configure_host_addresses(["127.0.0.1"])
    latencies: list[float] = []
    frames = [0]
    t0, fps = float(info["t0"]), int(info["fps"])

    def on_frame(frame: VideoFrame, now: float) -> None:
        if not start_at <= now <= stop_at:
            return
        frames[0] += 1
        y = np.asarray(frame.to_ndarray(), np.uint8)[: frame.height]
        counter = pattern.read_counter(y)
        if counter is None:
            return
        # the counter wraps at 65536 frames (36 min at 30 fps): unwrap against the clock
        made = t0 + counter / fps
        while now - made > 65536 / fps / 2:
            made += 65536 / fps
        latencies.append(now - made)

    clients = []
    for _ in range(n):
        c = WhepClient(base, bid, token, on_frame=on_frame)
        c.url = f"{base}/{path}/{bid}"
        await c.play(audio=False)
        clients.append(c)
    await asyncio.sleep(max(0.0, stop_at - time.time()) + 0.2)
    for c in clients:
        await c.aclose(delete=path == "whep")
    lat = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {
        "frames": frames[0],
        "latency_p50_ms": round(float(np.percentile(lat, 50)), 1),
        "latency_p99_ms": round(float(np.percentile(lat, 99)), 1),
        "latency_samples": len(latencies),
    }


async def run_one(mode: str, viewers: int, seconds: float, redis_url: str,
                  load_procs: int) -> dict[str, Any]:  # fmt: skip
    server = subprocess.Popen(  # noqa: ASYNC220 - benchmark harness
        [sys.executable, "-m", "jangteo.bench.fanout_server", "--redis-url", redis_url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert server.stdout is not None and server.stdin is not None
    try:
        line = await asyncio.to_thread(server.stdout.readline)
        if not line:
            raise RuntimeError("bench server did not start")
        info = json.loads(line)
        path = "whep" if mode == "once" else "naive/whep"
        probes = min(PROBES, viewers)
        load = viewers - probes
        setup = 4.0 + 0.12 * viewers
        start_at = time.time() + setup
        stop_at = start_at + seconds
        procs = []
        per = [load // load_procs + (1 if i < load % load_procs else 0) for i in range(load_procs)]
        for n in per:
            if n == 0:
                continue
            procs.append(
                subprocess.Popen(  # noqa: ASYNC220
                    [sys.executable, "-m", "jangteo.bench.load",
                     "--url", f"{info['base_url']}/{path}/{info['bid']}",
                     "--token", info["token"], "--viewers", str(n),
                     "--start-at", str(start_at), "--stop-at", str(stop_at)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                )
            )  # fmt: skip
        probe_task = asyncio.create_task(
            _probes(info["base_url"], path, info["bid"], info["token"], info, probes,
                    start_at, stop_at)
        )  # fmt: skip
        await asyncio.sleep(max(0.0, start_at - time.time()))
        cpu0 = cpu_seconds(server.pid)
        await asyncio.sleep(max(0.0, stop_at - time.time()))
        cpu1 = cpu_seconds(server.pid)
        rss = rss_mb(server.pid)
        probe = await probe_task
        loads = []
        for p in procs:
            out, _ = await asyncio.to_thread(p.communicate)
            loads.append(json.loads(out.strip().splitlines()[-1]))
        frames = sum(x["frames"] for x in loads) + probe["frames"]
        packets = sum(x["packets"] for x in loads)
        cpu = cpu1 - cpu0
        return {
            "mode": mode,
            "viewers": viewers,
            "connected": sum(x["connected"] for x in loads) + probes,
            "server_cores": round(cpu / seconds, 3),
            "cpu_ms_per_viewer_s": round(cpu * 1000 / (viewers * seconds), 2),
            "fps_per_viewer": round(frames / viewers / seconds, 1),
            "packets_per_s": round(packets / seconds * viewers / max(1, load)) if load else None,
            "latency_p50_ms": probe["latency_p50_ms"],
            "latency_p99_ms": probe["latency_p99_ms"],
            "server_rss_mb": round(rss, 1),
            "load_cores": round(sum(x["cpu_s"] for x in loads) / seconds, 3),
        }
    finally:
        with contextlib.suppress(Exception):
            server.stdin.close()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="jangteo-bench-") as tmp:
        redis = RedisServer(Path(tmp), port=0, fsync="everysec")
        redis.start()
        try:
            plan: list[tuple[str, int]] = []
            if args.mode in ("naive", "both"):
                plan.append(("naive", args.naive_viewers))
            if args.mode in ("once", "both"):
                if args.mode == "both" and args.naive_viewers != args.viewers:
                    plan.append(("once", args.naive_viewers))
                plan.append(("once", args.viewers))
            runs = [
                await run_one(mode, n, args.seconds, redis.url, args.load_procs) for mode, n in plan
            ]
        finally:
            redis.stop()
    result: dict[str, Any] = {"bench": "fanout", "seconds": args.seconds,
                              "video": "1280x720@30 VP8 2.5 Mbps", "cores": os.cpu_count(),
                              "runs": runs}  # fmt: skip
    naive = [r for r in runs if r["mode"] == "naive"]
    once = [r for r in runs if r["mode"] == "once"]
    if naive and once:
        result["naive_over_once_cpu_per_viewer"] = round(
            naive[0]["cpu_ms_per_viewer_s"] / once[-1]["cpu_ms_per_viewer_s"], 1
        )
    return result


def add_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("fanout", help="server CPU per viewer: encode-once vs per-viewer encoding")
    p.add_argument("--viewers", type=int, default=50)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--mode", choices=["once", "naive", "both"], default="both")
    p.add_argument("--naive-viewers", type=int, default=5)
    p.add_argument("--load-procs", type=int, default=2)

    def run(args: argparse.Namespace) -> int:
        print(json.dumps(asyncio.run(bench(args))), flush=True)
        return 0

    p.set_defaults(run=run)
