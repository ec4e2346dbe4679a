"""``jangteo bench abr``: what the rendition ladder and loss cost, and how fast viewers switch.

Three parts, one JSON line:

* ``encode``: compose + overlay + scale + encode of one 1280x720@30 broadcast, in this process,
  on the compositor's own code: the top rung alone (single rung) against the whole default
  ladder (720p 2.5 Mbps, 360p 800 kbps, 180p 256 kbps, H.264), CPU per frame and the ratio.
* ``loss``: the fan-out bench's harness (``jangteo bench fanout``: a real server process, load
  viewers in other processes) with every load viewer lossless, then reporting ``--loss`` of the
  packets it receives as lost (NACK, as on a lossy link): CPU per packet sent for the fast path
  and for stock aiortc senders, each lossy over lossless; retransmissions and keyframes forced.
* ``switch``: a capped viewer on a real shaped link (two network namespaces, an HTB class at
  ``--cap`` kbit/s on the server's egress; jangteo/testkit/shaped.py): seconds until it decodes
  the lower rung, its fps there, seconds until it is back on top after the cap is lifted. Needs
  root inside ``scripts/netns-run``; elsewhere the part says why it was skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from core.redisproc import RedisServer
from stream.compose.compositor import Compositor
from stream.encode.encoders import Codec
from stream.encode.ladder import default_ladder
from stream.ingest.synthetic import pattern_frame

from . import fanout

FIGURES = ("fps_per_viewer", "packets_per_s", "loop_us_per_packet", "fanout_us_per_packet",
           "nacked", "retransmissions")  # fmt: skip


def encode_cost(frames: int) -> dict[str, Any]:
    ladder = default_ladder(1280, 720, 2_500_000)
    c = Compositor("bench", 1280, 720, 30, 2_500_000, ladder)
    everything = [(Codec.H264, r.name) for r in ladder]
    out: dict[str, Any] = {"ladder": [r.public() for r in ladder]}
    try:
        for label, wanted in (("single", everything[:1]), ("ladder", everything)):
            c._encoders.clear()
            pictures = [pattern_frame(n, 1280, 720, texture=True) for n in range(30)]
            c._compose_and_encode([pictures[0]], 0, wanted, set())  # encoders made, keyframe
            t0 = time.thread_time()
            octets = 0
            for n in range(1, frames + 1):
                encoded = c._compose_and_encode([pictures[n % 30]], n, wanted, set())
                octets += sum(len(f.data) for fs in encoded.values() for f in fs)
            cpu = time.thread_time() - t0
            out[f"{label}_ms_per_frame"] = round(cpu * 1000 / frames, 2)
            out[f"{label}_kbit_s"] = round(octets * 8 * 30 / frames / 1000)
    finally:
        asyncio.run(c.aclose())
    out["ladder_over_single"] = round(out["ladder_ms_per_frame"] / out["single_ms_per_frame"], 2)
    return out


async def loss_cost(viewers: int, seconds: float, loss: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="jangteo-bench-") as tmp:
        redis = RedisServer(Path(tmp), port=0, fsync="everysec")
        redis.start()
        try:
            runs = {
                (mode, share): await fanout.run_one(
                    mode, viewers, seconds, redis.url, 2, nack_share=share
                )
                for mode in ("fast", "aiortc")
                for share in (0.0, loss)
            }
        finally:
            redis.stop()
    out: dict[str, Any] = {"viewers": viewers, "loss": loss}
    for (mode, share), r in runs.items():
        key = f"{mode}_{'lossy' if share else 'lossless'}"
        minutes = r["server_lifetime_s"] / 60
        out[key] = {k: r.get(k) for k in FIGURES}
        if r.get("keyframes_forced") is not None:
            out[key]["keyframes_forced_per_min"] = round(r["keyframes_forced"] / minutes, 1)
    for mode in ("fast", "aiortc"):
        a, b = out[f"{mode}_lossy"], out[f"{mode}_lossless"]
        for figure in ("loop_us_per_packet", "fanout_us_per_packet"):
            if a.get(figure) and b.get(figure):
                out[f"{mode}_{figure}_lossy_over_lossless"] = round(a[figure] / b[figure], 2)
    return out


async def switch_times(cap: int) -> dict[str, Any]:
    from jangteo.testkit import netns, shaped

    why_not = netns.available()
    if why_not:
        return {"skipped": f"a shaped link {why_not}"}
    with tempfile.TemporaryDirectory(prefix="jangteo-shaped-") as tmp:
        async with shaped.shaped_server(Path(tmp)) as net:
            return await shaped.capped_viewer(net, cap_kbit=cap)


def add_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("abr", help="ladder encode cost, loss cost, switch times")
    p.add_argument("--frames", type=int, default=150, help="frames encoded per variant")
    p.add_argument("--viewers", type=int, default=50)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--loss", type=float, default=0.02)
    p.add_argument("--cap", type=int, default=700, help="kbit/s of the capped viewer's link")
    p.add_argument("--parts", default="encode,loss,switch")

    def run(args: argparse.Namespace) -> int:
        parts = set(args.parts.split(","))
        result: dict[str, Any] = {"bench": "abr", "cores": os.cpu_count()}
        if "encode" in parts:
            result["encode"] = encode_cost(args.frames)
        if "loss" in parts:
            result["loss"] = asyncio.run(loss_cost(args.viewers, args.seconds, args.loss))
        if "switch" in parts:
            result["switch"] = asyncio.run(switch_times(args.cap))
        print(json.dumps(result), flush=True)
        return 0

    p.set_defaults(run=run)
