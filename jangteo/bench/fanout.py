"""``jangteo bench fanout``: what one broadcast costs the server per viewer and per packet.

Modes, run in one harness (``--mode all``, the default, runs naive then aiortc then fast):

* ``naive`` (the anchor of issue 2): every viewer's sender encodes the composed frames, as
  aiortc's examples do with MediaRelay (at ``--naive-viewers``, default 5);
* ``aiortc``: one encoder per codec, the same encoded frames to every viewer, each viewer's
  aiortc ``RTCRtpSender`` packetizing and sending (``JANGTEO_FANOUT=aiortc``);
* ``fast``: one encoder, frames packetized once, per viewer only header + SRTP + send
  (stream/deliver/rtpsend.py, the default).

Each run starts a fresh server process (the real app plus a synthetic studio at 1280x720@30),
load viewers in other processes (real ICE and DTLS; RTP counted and dropped on arrival, so they
cost far less than the server), and two probe viewers here that decode and read the frame
counter stamped into the pattern for glass-to-glass latency. CPU is read from /proc for the whole
server and for its event-loop thread (where all per-packet work happens; compose and encode run
in their own threads). Prints one JSON line.
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

from core.config import parse_workers
from core.redisproc import RedisServer
from stream.deliver.rtc import configure_host_addresses

from .output import prints_json
from .procstat import cpu_seconds, rss_mb, thread_cpu_seconds

PROBES = 2


async def _probes(base: str, path: str, bid: str, token: str, info: dict[str, Any], n: int,
                  window: list[float], ready: asyncio.Event) -> dict[str, Any]:  # fmt: skip
    from av.video.frame import VideoFrame

    from jangteo.testkit.clients import WhepClient
    from stream.ingest import pattern

    configure_host_addresses(["127.0.0.1"])
    latencies: list[float] = []
    frames = [0]
    t0, fps = float(info["t0"]), int(info["fps"])

    def on_frame(frame: VideoFrame, now: float) -> None:
        ready.set()
        if not window or not window[0] <= now <= window[1]:
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
        await c.play(audio=False, video_codec="vp8")  # as the load viewers
        clients.append(c)
    while not window:  # noqa: ASYNC110 - set by the harness once the load is scheduled
        await asyncio.sleep(0.1)
    await asyncio.sleep(max(0.0, window[1] - time.time()) + 0.2)
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
                  load_procs: int, workers: int = 0,
                  nack_share: float = 0.0) -> dict[str, Any]:  # fmt: skip
    """One server process under ``viewers``; with ``nack_share`` each load viewer reports that
    share of the packets it receives as lost (NACK), as viewers on lossy links do."""
    fanout = "fast" if mode == "fast" else "aiortc"
    cmd = [sys.executable, "-m", "jangteo.bench.fanout_server", "--redis-url", redis_url]
    started = time.monotonic()
    server = subprocess.Popen(  # noqa: ASYNC220 - benchmark harness
        [*cmd, "--fanout", fanout, "--workers", str(workers)],
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
        path = "naive/whep" if mode == "naive" else "whep"
        probes = min(PROBES, viewers)
        load = viewers - probes
        # the probes first: the server's memory with them playing is the base of RSS per viewer
        window: list[float] = []
        ready = asyncio.Event()
        probe_task = asyncio.create_task(
            _probes(info["base_url"], path, info["bid"], info["token"], info, probes,
                    window, ready)
        )  # fmt: skip
        await asyncio.wait_for(ready.wait(), 30)
        await asyncio.sleep(1.0)  # let the encoder and buffers settle
        rss0 = rss_mb(server.pid)
        setup = 4.0 + 0.12 * load
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
                     "--start-at", str(start_at), "--stop-at", str(stop_at),
                     "--nack-share", str(nack_share)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                )
            )  # fmt: skip
        window += [start_at, stop_at]
        await asyncio.sleep(max(0.0, start_at - time.time()))
        pids = [int(p) for p in info.get("workers", [])]
        cpu0, loop0 = cpu_seconds(server.pid), thread_cpu_seconds(server.pid, server.pid)
        wcpu0 = [cpu_seconds(p) for p in pids]
        await asyncio.sleep(max(0.0, stop_at - time.time()))
        cpu1, loop1 = cpu_seconds(server.pid), thread_cpu_seconds(server.pid, server.pid)
        wcpu1 = [cpu_seconds(p) for p in pids]
        wrss = sum(rss_mb(p) for p in pids)
        rss = rss_mb(server.pid)
        probe = await probe_task
        loads = []
        for p in procs:
            out, _ = await asyncio.to_thread(p.communicate)
            loads.append(json.loads(out.strip().splitlines()[-1]))
        frames = sum(x["frames"] for x in loads) + probe["frames"]
        packets = sum(x["packets"] for x in loads)
        # probes decode rather than count: they get what an average load viewer got
        sent = packets * viewers / max(1, load) if load else 0
        cpu, loop_cpu = cpu1 - cpu0, loop1 - loop0
        server.stdin.close()
        tail = await asyncio.to_thread(server.stdout.read)
        stats = json.loads(tail.strip().splitlines()[-1]) if tail.strip() else {}
        lifetime = time.monotonic() - started
        worker_cpu = [b - a for a, b in zip(wcpu0, wcpu1, strict=True)]
        spreads = stats.get("keyframe_spreads_ms") or [float("nan")]
        per_worker: dict[str, Any] = {}
        if pids:
            per_worker = {
                "worker_cores": [round(c / seconds, 3) for c in worker_cpu],
                "worker_us_per_packet": round(sum(worker_cpu) * 1e6 / sent, 2) if sent else None,
                "origin_feed_core_pct_per_worker": [
                    round(c * 100 / lifetime, 3) for c in stats.get("feed_cpu_s", [])
                ],
                "workers_rss_mb": round(wrss, 1),
            }
        return per_worker | {
            "mode": mode if not pids else f"{mode}+{len(pids)}w",
            "workers": len(pids),
            "viewers": viewers,
            "connected": sum(x["connected"] for x in loads) + probes,
            "server_cores": round(cpu / seconds, 3),
            "loop_cores": round(loop_cpu / seconds, 3),
            "cpu_ms_per_viewer_s": round(cpu * 1000 / (viewers * seconds), 2),
            "fps_per_viewer": round(frames / viewers / seconds, 1),
            "packets_per_s": round(sent / seconds),
            "us_per_packet": round(cpu * 1e6 / sent, 2) if sent else None,
            "loop_us_per_packet": round(loop_cpu * 1e6 / sent, 2) if sent else None,
            "packets_per_loop_core_s": round(sent / loop_cpu) if loop_cpu else None,
            # the fan-out's own CPU per packet (header, SRTP, send), whole run
            "fanout_us_per_packet": round(stats["fanout_cpu_s"] * 1e6 / stats["fanout_packets"], 2)
            if stats.get("fanout_packets")
            else None,
            "keyframe_spread_p50_ms": round(float(np.median(spreads)), 2),
            "keyframe_spread_max_ms": round(float(np.max(spreads)), 2),
            "latency_p50_ms": probe["latency_p50_ms"],
            "latency_p99_ms": probe["latency_p99_ms"],
            "server_rss_mb": round(rss, 1),
            "rss_kb_per_viewer": round((rss - rss0) * 1024 / load, 1)
            if load and not pids
            else None,
            "load_cores": round(sum(x["cpu_s"] for x in loads) / seconds, 3),
            "nack_share": nack_share,
            "nacked": sum(x.get("nacked", 0) for x in loads),
            "retransmissions": stats.get("retransmissions"),
            "keyframes_forced": stats.get("keyframes_forced"),
            "server_lifetime_s": round(lifetime, 1),
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
            if args.mode in ("naive", "all"):
                plan.append(("naive", args.naive_viewers))
            if args.mode in ("aiortc", "all"):
                n = args.aiortc_viewers or args.viewers
                if args.mode == "all":  # a second load level: the per-packet cost at the margin
                    plan.append(("aiortc", n // 2))
                plan.append(("aiortc", n))
            if args.mode in ("fast", "all"):
                if args.mode == "all" and args.aiortc_viewers not in (None, args.viewers):
                    plan.append(("fast", args.aiortc_viewers))  # the same load as aiortc's run
                plan.append(("fast", args.viewers))
            runs = [
                await run_one(mode, n, args.seconds, redis.url, args.load_procs) for mode, n in plan
            ]
            if args.mode in ("fast", "all"):
                for w in parse_worker_counts(args.workers):
                    runs.append(await run_one("fast", args.viewers, args.seconds, redis.url,
                                              args.load_procs, workers=w))  # fmt: skip
        finally:
            redis.stop()
    result: dict[str, Any] = {"bench": "fanout", "seconds": args.seconds,
                              "video": "1280x720@30 VP8 2.5 Mbps", "cores": os.cpu_count(),
                              "runs": runs}  # fmt: skip
    by = {r["mode"]: r for r in runs}  # the last run of each mode
    for mode in ("aiortc", "fast"):
        pts = sorted((r["packets_per_s"], r["loop_cores"]) for r in runs if r["mode"] == mode)
        if len(pts) >= 2 and pts[-1][0] > pts[0][0]:
            (p0, c0), (p1, c1) = pts[0], pts[-1]
            result[f"{mode}_marginal_us_per_packet"] = round((c1 - c0) * 1e6 / (p1 - p0), 2)
    if "aiortc_marginal_us_per_packet" in result and "fast_marginal_us_per_packet" in result:
        result["aiortc_over_fast_marginal"] = round(
            result["aiortc_marginal_us_per_packet"] / result["fast_marginal_us_per_packet"], 2
        )
    # fast at the aiortc run's viewer count (50 by default): the same load for both comparisons
    same = [r for r in runs if r["mode"] == "fast" and "aiortc" in by
            and r["viewers"] == by["aiortc"]["viewers"]]  # fmt: skip
    if "naive" in by and same:
        result["naive_over_fast_cpu_per_viewer"] = round(
            by["naive"]["cpu_ms_per_viewer_s"] / same[0]["cpu_ms_per_viewer_s"], 1
        )
    if same and same[0]["loop_us_per_packet"] and by["aiortc"]["loop_us_per_packet"]:
        result["aiortc_over_fast_loop_us_per_packet"] = round(
            by["aiortc"]["loop_us_per_packet"] / same[0]["loop_us_per_packet"], 2
        )
    return result


def parse_worker_counts(value: str) -> list[int]:
    """``--workers``: comma-separated counts of worker processes (``auto``: one per core); 0 is
    the single-process run, always made."""
    counts: list[int] = []
    for part in filter(None, (p.strip() for p in value.split(","))):
        n = parse_workers(part)
        if n > 0 and n not in counts:
            counts.append(n)
    return counts


def add_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("fanout", help="server CPU per viewer and per packet: fast/aiortc/naive")
    p.add_argument("--viewers", type=int, default=50)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--mode", choices=["fast", "aiortc", "naive", "all"], default="all")
    p.add_argument("--naive-viewers", type=int, default=5)
    p.add_argument(
        "--aiortc-viewers",
        type=int,
        default=50,
        help="viewers of the aiortc run (it saturates long before 200)",
    )
    p.add_argument(
        "--workers", default="", help="also run fast with these worker counts, e.g. 1,2 or auto"
    )
    p.add_argument("--load-procs", type=int, default=2)

    prints_json(p, bench)
