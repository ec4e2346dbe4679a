"""``jangteo bench report``: the merchant's numbers.

1. The report of a 2-hour show with 10,000 orders (20 products, 40 pins, a timeline point per
   10 s, some orders paid, cancelled): ``commerce.report.build`` + CSV, median of runs, against
   the naive anchor (every order read whole, as ``GET …/orders`` does, and summed in Python).
   Goal: ≤ 1 s.
2. What counting costs the order path: the reserve script with collection on and off, in
   alternating rounds on one Redis (the same AOF setting as ``serve``): Redis's own time inside
   the script per call (``INFO commandstats``), Redis CPU per order and orders per second.
3. The forecast on the synthetic backtest (commerce/forecast.py): MAPE against the naive "same as
   last show", and the floor (the true rates and audience, known only to the generator).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from commerce import report
from commerce.catalog import Catalog, validate_product
from commerce.forecast import backtest, synthetic_history
from commerce.orders import OrderRules, Orders, public_order
from core.broadcasts import BroadcastStore, meta_key
from core.numbers import timeline_key
from core.pins import Pin, record_pin
from core.redisproc import RedisServer

from .output import prints_json
from .procstat import cpu_seconds

SHOW_MS = 2 * 3600 * 1000
# the order path's goal is throughput within 5 %; the reserve script is about a third of the
# path's CPU (the server's part is the rest), so counting may cost at most 15 % of the script
GOAL = {"report_s": 1.0, "script_overhead": 0.15}
OPEN = {"open_per_buyer": 10**9, "open_per_address": 10**9, "hold_s": 10**6}


async def _reserve_many(orders: Orders, bid: str, pid: str, n: int, t0: int, span: int,
                        tag: str) -> list[str]:  # fmt: skip
    gate = asyncio.Semaphore(64)

    async def one(i: int) -> str:
        async with gate:
            status, rest = await orders.reserve(
                bid, product_id=pid if pid else f"p{i % 20}", qty=1 + i % 3, option=None,
                buyer_id=f"u{i % 1000}", buyer_name=f"구매자{i % 1000}",
                idempotency_key=f"{tag}{i}", now_ms=t0 + i * span // max(1, n),
            )  # fmt: skip
            assert status == "ok", (status, rest)
            return str(json.loads(rest[0])["id"])

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def _show(redis: Redis, orders_n: int) -> dict[str, Any]:
    """A 2-hour show with ``orders_n`` orders; its public record and product names."""
    store, catalog = BroadcastStore(redis), Catalog(redis)
    b = await store.create("벤치 리포트 · bench report", host_user="u_host")
    await store.ensure_live(b.id)
    names = {}
    for i in range(20):
        product, stock = validate_product(f"p{i}", {"name": f"상품 {i}", "price": 10000 + i * 900,
                                                    "stock": 10_000_000})  # fmt: skip
        await catalog.put(b.id, product, stock)
        names[f"p{i}"] = product["name"]
    t0 = int(time.time() * 1000) - SHOW_MS
    await redis.hset(meta_key(b.id), "started_at", t0)  # the show began two hours ago
    orders = Orders(redis, OrderRules(**OPEN))  # type: ignore[arg-type]
    ids = await _reserve_many(orders, b.id, "", orders_n, t0, SHOW_MS, "r")
    for i, oid in enumerate(ids):
        if i % 10 < 3:
            await orders.move(oid, "paid")
        elif i % 10 == 3:
            await orders.move(oid, "cancelled")
    points = {str((t0 + k * 10_000) // 10_000): json.dumps(
        {"t": t0 + k * 10_000, "viewers": 200 + k % 50, "orders": k, "gmv": k * 1000})
        for k in range(SHOW_MS // 10_000)}  # fmt: skip
    await redis.hset(timeline_key(b.id), mapping=points)  # type: ignore[arg-type]
    for k in range(40):
        at = t0 + k * SHOW_MS // 40
        await record_pin(redis, b.id, Pin(at, f"p{k % 20}", names[f"p{k % 20}"], 10000))
    record = (await store.get(b.id)).public()
    return {"broadcast": record, "names": names}


def _naive(rows: list[dict[str, str]], start: int) -> dict[str, Any]:
    """What a report without the counters does: every order whole, summed in Python."""
    per: dict[str, list[int]] = {}
    minutes: dict[int, int] = {}
    for row in rows:
        o = public_order(row)
        if o["status"] not in ("reserved", "paid"):
            continue
        p = per.setdefault(o["product_id"], [0, 0, 0])
        p[0], p[1], p[2] = p[0] + 1, p[1] + o["qty"], p[2] + o["total"]
        m = (o["created_at"] - start) // 60_000
        minutes[m] = minutes.get(m, 0) + 1
    return {"per_product": per, "per_minute": minutes}


def _median_s(samples: list[float]) -> float:
    return round(statistics.median(samples), 4)


async def _report_part(redis: Redis, orders_n: int, runs: int) -> dict[str, Any]:
    show = await _show(redis, orders_n)
    b, names = show["broadcast"], show["names"]
    ours, csv_s, naive = [], [], []
    doc: dict[str, Any] = {}
    for _ in range(runs):
        t = time.perf_counter()
        doc = await report.build(redis, b, names, int(time.time() * 1000))
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        report.to_csv(doc)
        csv_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        _naive(await Orders(redis).all(b["id"]), b["started_at"])
        naive.append(time.perf_counter() - t)
    return {"orders": orders_n, "counted_orders": doc["orders"], "pins": len(doc["pins"]),
            "timeline_points": len(doc["timeline"]), "report_s": _median_s(ours),
            "csv_s": _median_s(csv_s), "naive_s": _median_s(naive),
            "ratio_vs_naive": round(statistics.median(naive) / statistics.median(ours), 2),
            }  # fmt: skip


async def _collection_part(redis: Redis, redis_pid: int, per_round: int, rounds: int) -> dict[
        str, Any]:  # fmt: skip
    store, catalog = BroadcastStore(redis), Catalog(redis)
    b = await store.create("bench collection", host_user="u_host")
    await store.ensure_live(b.id)
    product, stock = validate_product("x", {"name": "x", "price": 1000, "stock": 10_000_000})
    await catalog.put(b.id, product, stock)
    cpu: dict[bool, list[float]] = {True: [], False: []}
    rate: dict[bool, list[float]] = {True: [], False: []}
    warm = Orders(redis, OrderRules(**OPEN))  # type: ignore[arg-type]
    await _reserve_many(warm, b.id, "x", 500, int(time.time() * 1000), 1, "w")
    script: dict[bool, list[float]] = {True: [], False: []}
    for k in range(rounds):
        for on in (True, False) if k % 2 == 0 else (False, True):
            orders = Orders(redis, OrderRules(**OPEN, stats=on))  # type: ignore[arg-type]
            await redis.config_resetstat()
            c0, t0 = cpu_seconds(redis_pid), time.perf_counter()
            await _reserve_many(orders, b.id, "x", per_round, int(time.time() * 1000), 1,
                                f"c{k}{int(on)}-")  # fmt: skip
            c1, t1 = cpu_seconds(redis_pid), time.perf_counter()
            cpu[on].append((c1 - c0) / per_round * 1e6)
            rate[on].append(per_round / (t1 - t0))
            # Redis's own accounting of the reserve script: the time inside it, per call
            info: Any = await redis.info("commandstats")
            script[on].append(float(info["cmdstat_evalsha"]["usec_per_call"]))
    on_us, off_us = statistics.median(script[True]), statistics.median(script[False])
    on_cpu, off_cpu = statistics.median(cpu[True]), statistics.median(cpu[False])
    on_rate, off_rate = statistics.median(rate[True]), statistics.median(rate[False])
    return {"orders_per_round": per_round, "rounds": rounds,
            "script_us_on": round(on_us, 2), "script_us_off": round(off_us, 2),
            "script_overhead": round(on_us / off_us - 1, 4),
            "redis_cpu_us_per_order_on": round(on_cpu, 1),
            "redis_cpu_us_per_order_off": round(off_cpu, 1),
            "orders_per_s_on": round(on_rate), "orders_per_s_off": round(off_rate),
            "throughput_change": round(on_rate / off_rate - 1, 4)}  # fmt: skip


def _forecast_part(seeds: int) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    floor: list[float] = []
    for seed in range(seeds):
        shows, rates, _ = synthetic_history(12, seed=seed)
        results.append(backtest(shows))
        for i in range(3, len(shows)):
            vm = 6000.0 * (1 + 0.08 * i)  # the generator's true audience for show i
            floor.extend(abs(rates[p] * vm - a) / a for p, a in shows[i].units.items() if a > 0)
    ours = statistics.fmean(r["mape"] for r in results)
    naive = statistics.fmean(r["naive_mape"] for r in results)
    return {"histories": seeds, "shows_each": 12,
            "forecasts": sum(r["forecasts"] for r in results),
            "mape": round(ours, 4), "naive_mape": round(naive, 4),
            "ratio_vs_naive": round(naive / ours, 2),
            "floor_mape": round(statistics.fmean(floor), 4),
            "in_range": round(statistics.fmean(r["in_range"] for r in results), 3)}  # fmt: skip


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="jangteo-bench-report-") as tmp:
        server = RedisServer(Path(tmp) / "redis", port=None, fsync=args.fsync)
        server.start()
        assert server.proc is not None
        redis = Redis.from_url(server.url)
        try:
            rep = await _report_part(redis, args.orders, args.runs)
            col = await _collection_part(redis, server.proc.pid, args.per_round, args.rounds)
        finally:
            await redis.aclose()
            server.stop()
    fc = _forecast_part(args.seeds)
    return {
        "bench": "report", "cores": os.cpu_count(), "redis_appendfsync": args.fsync,
        "report": rep, "collection": col, "forecast": fc, "goal": GOAL,
        "meets_goal": rep["report_s"] <= GOAL["report_s"]
        and col["script_overhead"] <= GOAL["script_overhead"]
        and fc["mape"] < fc["naive_mape"],
        "bench_wall_s": round(time.monotonic() - started, 1),
    }  # fmt: skip


def add_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("report", help="the merchant's numbers: report time, collection cost, "
                       "forecast error")  # fmt: skip
    p.add_argument("--orders", type=int, default=10_000, help="orders in the 2-hour show")
    p.add_argument("--runs", type=int, default=5, help="report builds timed (median)")
    p.add_argument("--per-round", type=int, default=3000, help="orders per collection round")
    p.add_argument("--rounds", type=int, default=6, help="collection rounds (on and off each)")
    p.add_argument("--seeds", type=int, default=20, help="synthetic histories backtested")
    p.add_argument("--fsync", choices=["always", "everysec", "no"], default="always")

    prints_json(p, bench)
