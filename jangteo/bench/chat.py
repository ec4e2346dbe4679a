"""``jangteo bench chat``: chat deliveries per server core, batched vs one frame per event.

Each run starts a fresh ``jangteo serve`` process on a private Redis; load clients in other
processes hold the sockets and time every stamped message; a host client sends ``--rate``
messages a second; ``--slow`` extra sockets never read (they must be cut, not slow anyone down).
Modes: ``wire`` (the default server: each batch's frame built once and written to every socket's
transport, chat/wire.py), ``batched`` (the same batches, one ``send_text`` per socket through the
ASGI stack, as before chat/wire.py) and the anchor ``naive`` (each event its own frame, one
``send_text`` per message per socket). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from websockets.asyncio.client import connect

from core.redisproc import RedisServer
from jangteo.testkit.server import start_serve_process, stop_process

from .output import prints_json
from .procstat import cpu_seconds, rss_mb

SECRET = "bench-chat-secret"
ADMIN = "bench-chat-admin"


async def _server(redis_url: str, batch_ms: int, wire: bool) -> tuple[subprocess.Popen[bytes], str]:
    env = {
        "JANGTEO_CHAT_WIRE": "1" if wire else "0",
        "REDIS_URL": redis_url,
        "JANGTEO_SECRET": SECRET,
        "JANGTEO_ADMIN_KEY": ADMIN,
        "JANGTEO_CHAT_BATCH_MS": str(batch_ms),
        "JANGTEO_CHAT_RATE_MESSAGES": "1000000",  # the senders are load, not spammers
        # a thousand sockets of one token from one address: load, not one person
        "JANGTEO_CHAT_SOCKETS_PER_USER": "100000",
        "JANGTEO_CHAT_SOCKETS_PER_ADDRESS": "100000",
        "JANGTEO_LOG_LEVEL": "warning",
    }
    return await start_serve_process(env, os.environ.get("JANGTEO_BENCH_SERVER_LOG", os.devnull))


async def _drain(ws: Any) -> None:
    with contextlib.suppress(Exception):
        async for _ in ws:
            pass


async def _metric(http: httpx.AsyncClient, name: str) -> float:
    text = (await http.get("/metrics", headers={"Authorization": f"Bearer {ADMIN}"})).text
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def _on_uvloop(pid: int) -> bool:
    """Whether the server process has uvloop loaded (``jangteo serve`` runs on it when it is
    installed, core/loop.py): the transports the wire path writes to are uvloop's."""
    try:
        return "/uvloop/" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


async def run_one(mode: str, args: argparse.Namespace, redis_url: str) -> dict[str, Any]:
    proc, base = await _server(redis_url, 0 if mode == "naive" else 50, wire=mode == "wire")
    http = httpx.AsyncClient(base_url=base, timeout=30)
    loads: list[subprocess.Popen[str]] = []
    slow: list[asyncio.StreamWriter] = []
    try:
        auth = {"Authorization": f"Bearer {ADMIN}"}
        b = (await http.post("/api/broadcasts", json={"title": "bench"}, headers=auth)).json()
        bid = b["id"]
        viewer = (
            await http.post(f"/api/broadcasts/{bid}/tokens", json={"role": "viewer", "name": "v"})
        ).json()["token"]
        ws = base.replace("http://", "ws://") + f"/ws/{bid}"
        setup = 3.0 + args.clients * 0.004
        start_at = time.time() + setup
        stop_at = start_at + args.seconds
        per = [args.clients // args.load_procs + (i < args.clients % args.load_procs)
               for i in range(args.load_procs)]  # fmt: skip
        for n in per:
            loads.append(
                subprocess.Popen(  # noqa: ASYNC220 - benchmark harness
                    [sys.executable, "-m", "jangteo.bench.chat_load", "--url",
                     f"{ws}?token={viewer}", "--clients", str(n),
                     "--start-at", str(start_at), "--stop-at", str(stop_at)],
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                )
            )  # fmt: skip
        host_port = base.split("//")[1]
        h, p = host_port.split(":")
        for _ in range(args.slow):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # stalls within seconds
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, (h, int(p)))
            reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
            writer.write(
                f"GET /ws/{bid}?token={viewer} HTTP/1.1\r\nHost: {host_port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                .encode()
            )  # fmt: skip
            await reader.readexactly(12)
            slow.append(writer)
        filler = "가" * 60
        senders = [
            await connect(f"{ws}?token={viewer}", ping_interval=None, max_queue=None)
            for _ in range(args.senders)
        ]
        drains = [asyncio.create_task(_drain(s)) for s in senders]
        marks: dict[str, float] = {}

        async def send_loop(i: int) -> None:
            # sender i sends rate/senders messages a second, staggered against the others
            period = args.senders / args.rate
            t = start_at - 1.0 + i * period / args.senders
            while t < stop_at:
                await asyncio.sleep(max(0.0, t - time.time()))
                now = time.time()
                text = f"t={now * 1000:.1f} {filler}"
                await senders[i].send(json.dumps({"type": "chat", "text": text}))
                t += period

        async def meter() -> None:
            await asyncio.sleep(max(0.0, start_at - time.time()))
            marks["cpu0"] = cpu_seconds(proc.pid)
            marks["sent0"] = await _metric(http, "jangteo_chat_deliveries_total")
            await asyncio.sleep(max(0.0, stop_at - time.time()))
            marks["cpu1"] = cpu_seconds(proc.pid)
            marks["rss"] = rss_mb(proc.pid)
            marks["sent1"] = await _metric(http, "jangteo_chat_deliveries_total")

        await asyncio.gather(meter(), *(send_loop(i) for i in range(args.senders)))
        for s in senders:
            await s.close()
        for d in drains:
            d.cancel()
        cpu0, cpu1, rss0 = marks["cpu0"], marks["cpu1"], marks["rss"]
        sent0, sent1 = marks["sent0"], marks["sent1"]
        dropped = await _metric(http, "jangteo_chat_dropped_slow_total")
        results = []
        for lp in loads:
            out, _ = await asyncio.to_thread(lp.communicate)
            results.append(json.loads(out.strip().splitlines()[-1]))
        deliveries = sum(r["deliveries"] for r in results)
        lat = np.array([x for r in results for x in r["latencies"]] or [np.nan])
        cpu = cpu1 - cpu0
        return {
            "mode": mode,
            "clients": args.clients,
            "rate": args.rate,
            "deliveries_per_s": round(deliveries / args.seconds),
            "expected_per_s": args.clients * args.rate,
            "server_deliveries_per_s": round((sent1 - sent0) / args.seconds),
            "p50_ms": round(float(np.percentile(lat, 50)), 1),
            "p99_ms": round(float(np.percentile(lat, 99)), 1),
            "server_cores": round(cpu / args.seconds, 3),
            "server_us_per_delivery": round(cpu * 1e6 / max(1, deliveries), 2),
            "deliveries_per_core_s": round(deliveries / max(cpu, 1e-9)),
            "slow_clients": args.slow,
            "dropped_slow": int(dropped),
            "clients_closed": sum(r["closed"] for r in results),
            "client_errors": sorted({e for r in results for e in r.get("errors", [])})[:3],
            "load_cores": round(sum(r["cpu_s"] for r in results) / args.seconds, 3),
            # sockets still connecting when the window opened miss its start (a loaded machine)
            "load_connect_s": max(r["connect_s"] for r in results),
            "load_late_s": max(r["late_s"] for r in results),
            "server_rss_mb": round(rss0 or 0, 1),
            "server_uvloop": _on_uvloop(proc.pid),
        }
    finally:
        for w in slow:
            w.close()
        for lp in loads:
            if lp.poll() is None:
                lp.kill()
        await http.aclose()
        stop_process(proc)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="jangteo-bench-chat-") as tmp:
        redis = RedisServer(Path(tmp), port=0, fsync="everysec")
        redis.start()
        try:
            modes = ["wire", "batched", "naive"] if args.mode == "all" else [args.mode]
            runs = [await run_one(m, args, redis.url) for m in modes]
        finally:
            redis.stop()
    out: dict[str, Any] = {"bench": "chat", "seconds": args.seconds, "cores": os.cpu_count(),
                           "runs": runs}  # fmt: skip
    per = {r["mode"]: r["deliveries_per_core_s"] for r in runs if "mode" in r}
    if "naive" in per:
        for m in ("wire", "batched"):
            if m in per:
                out[f"{m}_over_naive_per_core"] = round(per[m] / max(1, per["naive"]), 2)
    if "wire" in per and "batched" in per:
        out["wire_over_batched_per_core"] = round(per["wire"] / max(1, per["batched"]), 2)
    return out


def add_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("chat", help="chat deliveries per server core: written once, batched, "
                       "and one frame each")  # fmt: skip
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--rate", type=float, default=100.0, help="messages per second")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--slow", type=int, default=5, help="sockets that never read")
    p.add_argument("--mode", choices=["wire", "batched", "naive", "all"], default="all")
    p.add_argument("--load-procs", type=int, default=2)
    p.add_argument("--senders", type=int, default=20, help="sockets the messages are sent from")

    prints_json(p, bench)
