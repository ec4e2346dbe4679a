"""``jangteo bench churn``: WHEP viewers joining and leaving in waves; does the server give back
what they took?

A ``jangteo serve`` process on a private Redis, a publisher (WHIP, a stamped pattern), one probe
viewer that stays, and ``--waves`` waves of load viewers (other processes: real ICE and DTLS) that
join together, watch ``wave`` seconds and vanish without a DELETE (the server finds them gone by
their DTLS close or ICE consent). Between waves the server's RSS, open file descriptors, asyncio
tasks and viewer sessions are read (/proc and /metrics); the start is after one warm-up wave (what
the first viewers allocate for good: codec contexts, pools), the end once the last wave's sessions
are all gone. Prints one JSON line; media_tests/test_churn.py runs a short version.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from core.redisproc import RedisServer

from .output import prints_json
from .procstat import open_fds, rss_mb

ADMIN = "churn-admin-key"


def _gauge(text: str, name: str) -> float:
    found = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.M)
    return float(found.group(1)) if found else -1.0


async def _wave(url: str, token: str, viewers: int, seconds: float, procs: int) -> int:
    """``viewers`` joining at once (in ``procs`` processes), gone after ``seconds``; how many
    connected."""
    start_at = time.time() + 2.0 + 0.05 * viewers
    per = [viewers // procs + (1 if i < viewers % procs else 0) for i in range(procs)]
    loads = [
        subprocess.Popen(  # noqa: ASYNC220 - benchmark harness
            [sys.executable, "-m", "jangteo.bench.load", "--url", url, "--token", token,
             "--viewers", str(n), "--start-at", str(start_at),
             "--stop-at", str(start_at + seconds)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for n in per if n
    ]  # fmt: skip
    connected = 0
    for p in loads:
        out, _ = await asyncio.to_thread(p.communicate)
        lines = out.strip().splitlines()
        connected += json.loads(lines[-1])["connected"] if lines else 0
    return connected


async def churn(viewers: int, waves: int, wave_s: float, procs: int = 2) -> dict[str, Any]:
    """The run (see the module); ``viewers`` in all, spread over ``waves`` (plus a warm-up)."""
    from jangteo.testkit.clients import WhepClient, WhipClient
    from jangteo.testkit.server import start_serve_process, stop_process
    from stream.deliver.rtc import configure_host_addresses
    from stream.ingest.synthetic import PatternTrack, ToneTrack

    configure_host_addresses(["127.0.0.1"])
    per_wave = max(1, viewers // waves)
    with tempfile.TemporaryDirectory(prefix="jangteo-churn-") as tmp:
        redis = RedisServer(Path(tmp) / "redis", port=0, fsync="everysec")
        redis.start()
        env = {"REDIS_URL": redis.url, "JANGTEO_SECRET": "churn", "JANGTEO_ADMIN_KEY": ADMIN,
               "JANGTEO_ICE_HOST_ADDRESSES": "127.0.0.1", "JANGTEO_VIDEO_SIZE": "320x180",
               "JANGTEO_RECORD": "0", "JANGTEO_WHEP_PER_USER": "100000",
               "JANGTEO_WHEP_PER_ADDRESS": "100000", "JANGTEO_MAX_VIEWERS": "100000",
               "JANGTEO_CONNECT_TIMEOUT_S": "10"}  # fmt: skip
        server, base = await start_serve_process(env, f"{tmp}/serve.log")
        admin = {"Authorization": f"Bearer {ADMIN}"}
        samples: list[dict[str, float]] = []
        pub: WhipClient | None = None
        probe: WhepClient | None = None
        try:
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                doc = (await http.post("/api/broadcasts", json={"title": "churn"},
                                       headers=admin)).json()  # fmt: skip
                bid = doc["id"]
                pub = WhipClient(base, bid, doc["host_token"])
                await pub.publish(PatternTrack(320, 180, 30), ToneTrack(440))
                r = await http.post(f"/api/broadcasts/{bid}/tokens", headers=admin,
                                    json={"role": "viewer", "name": "churn"})  # fmt: skip
                token = r.json()["token"]
                probe = WhepClient(base, bid, token)
                await probe.play(audio=False)
                await probe.wait_frames(30, 30)

                async def sample(wave: int, connected: int) -> None:
                    deadline = time.monotonic() + 60
                    while True:  # until the wave's sessions are reaped (the probe stays)
                        text = (await http.get("/metrics", headers=admin)).text
                        left = _gauge(text, "jangteo_viewers")
                        if left <= 1 or time.monotonic() > deadline:
                            break
                        await asyncio.sleep(0.5)  # the server notices departures by itself
                    samples.append({"wave": wave, "connected": connected, "sessions_left": left,
                                    "rss_mb": round(rss_mb(server.pid), 1),
                                    "fds": open_fds(server.pid),
                                    "tasks": _gauge(text, "jangteo_tasks")})  # fmt: skip

                url = f"{base}/whep/{bid}"
                await sample(0, await _wave(url, token, per_wave, wave_s, procs))  # warm-up
                for w in range(1, waves + 1):
                    await sample(w, await _wave(url, token, per_wave, wave_s, procs))
                frames = len(probe.frames)
        finally:
            if probe is not None:
                await probe.aclose()
            if pub is not None:
                await pub.aclose()
            stop_process(server)
            redis.stop()
    start, end = samples[0], samples[-1]
    return {
        "viewers": per_wave * waves,
        "waves": waves,
        "per_wave": per_wave,
        "wave_s": wave_s,
        "connected": sum(s["connected"] for s in samples[1:]),
        "probe_frames": frames,
        "start": start,
        "end": end,
        "peak_rss_mb": max(s["rss_mb"] for s in samples),
        "rss_end_over_start": round(end["rss_mb"] / start["rss_mb"], 3),
        "fds_end_over_start": round(end["fds"] / start["fds"], 3),
        "tasks_end_minus_start": end["tasks"] - start["tasks"],
        "samples": samples,
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    result = await churn(args.viewers, args.waves, args.wave_seconds, args.load_procs)
    return {"bench": "churn", "goal": "RSS and fds within 10 % of the start, no task left"} | result


def add_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("churn", help="viewers joining and leaving in waves: memory, fds, tasks")
    p.add_argument("--viewers", type=int, default=1000, help="in all, over the waves")
    p.add_argument("--waves", type=int, default=10)
    p.add_argument("--wave-seconds", type=float, default=50.0, help="how long each wave watches")
    p.add_argument("--load-procs", type=int, default=2)
    prints_json(p, bench)
