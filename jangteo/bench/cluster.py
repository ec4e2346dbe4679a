"""``jangteo bench cluster``: what one edge hop costs.

Two ``jangteo serve`` processes on one Redis, as two nodes: the publisher (a synthetic pattern
with a frame counter, over WHIP) goes live on the origin; a probe viewer on the origin and one on
the edge decode the counter, so each frame's arrival at both is known (the latency one hop adds,
p50/p99); ``--viewers`` load viewers (other processes: real ICE and DTLS, RTP counted and dropped)
watch on the edge. Measured:

* ``hop_p50_ms``/``hop_p99_ms``: edge arrival minus origin arrival of the same frame;
* ``origin_core_pct_per_edge``: the origin's CPU feeding the edge (its relay feed, read from
  ``jangteo_relay_feed_cpu_seconds_total``), against the anchor: the origin serving the same
  viewers itself (``direct_core_pct``, the edge's measured CPU per viewer times their number);
* ``edge_viewers_per_core``: viewers one edge core carries at 30 fps (its CPU per viewer, from
  /proc, above its cost with the probe alone).

``--tls``: the relay over TLS (``JANGTEO_RELAY_TLS_CERT``…), encryption counted in the feed.

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from core.redisproc import RedisServer, free_port
from stream.deliver.rtc import configure_host_addresses

from .output import prints_json
from .procstat import cpu_seconds

ADMIN = "bench-admin-key"
SIZE = (640, 360)


def _metric(text: str, name: str) -> float:
    found = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


async def _node(
    redis_url: str, name: str, log: str, tls: dict[str, str]
) -> tuple[subprocess.Popen[bytes], str]:
    from jangteo.testkit.server import start_serve_process

    return await start_serve_process(tls | {
        "REDIS_URL": redis_url, "JANGTEO_NODE_ID": name, "JANGTEO_RELAY_PORT": str(free_port()),
        "JANGTEO_SECRET": "bench-secret", "JANGTEO_ADMIN_KEY": ADMIN,
        "JANGTEO_ICE_HOST_ADDRESSES": "127.0.0.1", "JANGTEO_VIDEO_SIZE": "x".join(map(str, SIZE)),
        "JANGTEO_RECORD": "0", "JANGTEO_LADDER": f"{SIZE[1]}p:1500k", "JANGTEO_ABR": "0",
        "JANGTEO_WHEP_PER_USER": "100000", "JANGTEO_WHEP_PER_ADDRESS": "100000",
    }, log)  # fmt: skip


async def run(args: argparse.Namespace, redis_url: str, tmp: str) -> dict[str, Any]:
    from av.video.frame import VideoFrame

    from jangteo.testkit.clients import WhepClient, WhipClient
    from jangteo.testkit.server import stop_process
    from stream.ingest import pattern
    from stream.ingest.synthetic import PatternTrack, ToneTrack

    configure_host_addresses(["127.0.0.1"])
    tls: dict[str, str] = {}
    if args.tls:  # the relay over TLS, under a CA made for the run
        from jangteo.testkit.tls import tls_files

        ca, cert, key = tls_files(Path(tmp), "127.0.0.1")
        tls = {"JANGTEO_RELAY_TLS_CERT": str(cert), "JANGTEO_RELAY_TLS_KEY": str(key),
               "JANGTEO_RELAY_CA_FILE": str(ca)}  # fmt: skip
    origin, origin_url = await _node(redis_url, "origin", f"{tmp}/origin.log", tls)
    edge, edge_url = await _node(redis_url, "edge", f"{tmp}/edge.log", tls)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    clients: list[WhepClient] = []
    loads: list[subprocess.Popen[str]] = []
    async with httpx.AsyncClient(timeout=20) as http:
        try:
            r = await http.post(f"{origin_url}/api/broadcasts", json={"title": "bench"},
                                headers=admin)  # fmt: skip
            bid, host = r.json()["id"], r.json()["host_token"]
            pub = WhipClient(origin_url, bid, host)
            await pub.publish(PatternTrack(*SIZE, 30), ToneTrack(440))
            await pub.connected()
            r = await http.post(f"{edge_url}/api/broadcasts/{bid}/tokens", headers=admin,
                                json={"role": "viewer", "name": "bench"})  # fmt: skip
            token = r.json()["token"]
            arrivals: list[dict[int, float]] = [{}, {}]

            def probe(i: int) -> Any:
                def on_frame(frame: VideoFrame, now: float) -> None:
                    y = np.asarray(frame.to_ndarray(), np.uint8)[: frame.height]
                    counter = pattern.read_counter(y)
                    if counter is not None:
                        arrivals[i].setdefault(counter, now)

                return on_frame

            for i, base in enumerate((origin_url, edge_url)):
                c = WhepClient(base, bid, token, on_frame=probe(i))
                await c.play(audio=False, video_codec="vp8")
                clients.append(c)
            await asyncio.gather(*(c.wait_frames(30, 30) for c in clients))
            edge_base = cpu_seconds(edge.pid)
            await asyncio.sleep(3.0)  # the edge with the probe alone: its base CPU
            edge_base = (cpu_seconds(edge.pid) - edge_base) / 3.0
            start_at = time.time() + 3.0 + 0.1 * args.viewers
            stop_at = start_at + args.seconds
            per = [args.viewers // 2, args.viewers - args.viewers // 2]
            for n in filter(None, per):
                loads.append(subprocess.Popen(  # noqa: ASYNC220 - benchmark harness
                    [sys.executable, "-m", "jangteo.bench.load", "--url",
                     f"{edge_url}/whep/{bid}", "--token", token, "--viewers", str(n),
                     "--start-at", str(start_at), "--stop-at", str(stop_at)],
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))  # fmt: skip
            await asyncio.sleep(max(0.0, start_at - time.time()))
            m0 = (await http.get(f"{origin_url}/metrics", headers=admin)).text
            e0, mark = cpu_seconds(edge.pid), [dict(a) for a in arrivals]
            await asyncio.sleep(max(0.0, stop_at - time.time()))
            m1 = (await http.get(f"{origin_url}/metrics", headers=admin)).text
            e1 = cpu_seconds(edge.pid)
            results = []
            for p in loads:
                out, _ = await asyncio.to_thread(p.communicate)
                results.append(json.loads(out.strip().splitlines()[-1]))
            await pub.aclose()
        finally:
            for c in clients:
                await c.aclose()
            for p in loads:
                if p.poll() is None:
                    p.kill()
            stop_process(edge)
            stop_process(origin)
    seconds = args.seconds
    feed = "jangteo_relay_feed_cpu_seconds_total"
    feed_pct = (_metric(m1, feed) - _metric(m0, feed)) * 100 / seconds
    relayed = _metric(m1, "jangteo_relay_bytes_out_total") - _metric(
        m0, "jangteo_relay_bytes_out_total"
    )
    connected = sum(r["connected"] for r in results)
    edge_cores = (e1 - e0) / seconds
    per_viewer = max(edge_cores - edge_base, 1e-6) / max(1, connected)
    hops = [arrivals[1][c] - t for c, t in arrivals[0].items()
            if c in arrivals[1] and c not in mark[0]]  # fmt: skip
    hop = np.array(hops) * 1000 if hops else np.array([np.nan])
    fps = sum(r["frames"] for r in results) / max(1, connected) / seconds
    return {
        "relay": "tls" if args.tls else "tcp",
        "viewers": args.viewers,
        "connected": connected,
        "fps_per_viewer": round(fps, 1),
        "hop_p50_ms": round(float(np.percentile(hop, 50)), 1),
        "hop_p99_ms": round(float(np.percentile(hop, 99)), 1),
        "hop_samples": len(hops),
        "origin_core_pct_per_edge": round(feed_pct, 3),
        "relay_mbit_s": round(relayed * 8 / seconds / 1e6, 2),
        "edge_cores": round(edge_cores, 3),
        "edge_base_cores": round(edge_base, 3),
        "edge_ms_per_viewer_s": round(per_viewer * 1000, 2),
        "edge_viewers_per_core": round(1 / per_viewer),
        # the anchor: the origin serving these viewers itself, at the edge's cost per viewer
        "direct_core_pct": round(per_viewer * connected * 100, 2),
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="jangteo-bench-") as tmp:
        redis = RedisServer(Path(tmp) / "redis", port=0, fsync="everysec")
        redis.start()
        try:
            result = await run(args, redis.url, tmp)
        finally:
            redis.stop()
    direct, per_edge = result["direct_core_pct"], result["origin_core_pct_per_edge"]
    return {"bench": "cluster", "seconds": args.seconds, "cores": os.cpu_count(),
            "video": f"{SIZE[0]}x{SIZE[1]}@30 VP8 1.5 Mbps", **result,
            "direct_over_edge_origin_cpu": round(direct / per_edge, 1) if per_edge else None,
            "goals": {"hop_p50_ms": 15, "origin_core_pct_per_edge": 2}}  # fmt: skip


def add_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("cluster", help="an edge hop: added latency, origin CPU per edge")
    p.add_argument("--viewers", type=int, default=50, help="load viewers on the edge")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--tls", action="store_true", help="the relay over TLS (a CA made for the run)")
    prints_json(p, bench)
