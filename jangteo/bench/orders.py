"""``jangteo bench orders``: flash-sale orders per server core, with oversell and duplicate checks.

One fresh ``jangteo serve`` process on a private Redis with AOF ``appendfsync always``; load from
``wrk`` (Debian package) driven by a Lua script written at run time: it rotates through ``--buyers``
viewer tokens, gives every request a fresh ``Idempotency-Key`` except every ``--replay-every``-th,
which re-sends the thread's previous request unchanged (usually while the original is still in
flight on another connection), counts answers by status and problem code, keeps the id of every
201, and prints wrk's latency percentiles from ``done()``.

Two runs on one broadcast:

* ``throughput``: a product with ``--stock`` (huge) units and no practical per-buyer limit, for
  ``--seconds``: orders/s, latency, server CPU per order.
* ``oversell``: ``--check-stock`` units (e.g. 100), ``--check-buyers`` buyers with a limit of
  ``--check-limit`` each and quantities of 1 and 2, for ``--check-seconds``: it sells out at
  once, then the same load meets ``sold_out``/``limit_exceeded``.

Then the anchor (``jangteo/bench/orders_anchor.py``, skipped with ``--no-anchor``): the same wrk
load on a bare Starlette endpoint that runs one Lua reserve script on the same Redis -- no token,
validation, idempotency, record or events -- for ``ratio_vs_anchor`` (ours / anchor, per core).

After each run every fresh key is sent once more (a raw keep-alive client here, so each answer is
matched to its key): each key's final answer says whether it owns an order. Then the orders
(``GET …/orders``) and the live stock (``GET …/products``) must agree: ``duplicates`` = orders
listed beyond one per key answered 201 (and no id handed out during the run that no key owns),
``oversold`` = units sold beyond the stock, ``stock_conserved`` = sold + left == stock, the units
of the keys answered 201 = units sold, and no buyer over the limit. Prints one JSON line; exits 1
when a check fails. ``orders_per_s`` counts 201 answers (replays included, as the brief defines
it); ``new_orders_per_s`` counts distinct order ids.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from core.redisproc import RedisServer, free_port
from jangteo.testkit.server import stop_process

from . import procstat
from .orders_client import JSON_CT, Call, Shop, call_many, expect_json, json_body
from .orders_wrk import TAG, Env, lua_script, run_anchor, run_wrk
from .procstat import rss_mb

SECRET = "bench-orders-secret"
ADMIN = "bench-orders-admin"
GOAL = {"orders_per_core_s": 5000, "p99_ms": 50, "connections": 64, "appendfsync": "always"}
MAX_LIMIT = 10_000  # the largest per_buyer_limit the catalog takes
INACTIVE = {"cancelled", "canceled", "expired", "failed", "refunded"}


async def _server(redis_url: str, log: str) -> tuple[subprocess.Popen[bytes], str, int]:
    port = free_port()
    env = os.environ | {
        "REDIS_URL": redis_url,
        "JANGTEO_SECRET": SECRET,
        "JANGTEO_ADMIN_KEY": ADMIN,
        "JANGTEO_LOG_LEVEL": "warning",
        # 1,000 buyers on one address each keep ordering without paying: the caps on open
        # orders are checked on every order (their cost is measured) but set out of reach
        "JANGTEO_OPEN_ORDERS_PER_BUYER": "1000000000",
        "JANGTEO_OPEN_ORDERS_PER_ADDRESS": "1000000000",
    }
    proc = subprocess.Popen(  # noqa: ASYNC220 - benchmark harness
        [sys.executable, "-m", "jangteo.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "ab"),  # noqa: SIM115, ASYNC230
    )
    for _ in range(400):
        with contextlib.suppress(OSError, ValueError, IndexError):
            st, _ = (await call_many("127.0.0.1", port, [Call("GET", "/healthz", {})], 1))[0]
            if st == 200:
                return proc, "127.0.0.1", port
        if proc.poll() is not None:
            break
        await asyncio.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"bench server did not start (see {log})")


def _loaded(pid: int) -> dict[str, bool]:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {"uvloop": "uvloop" in maps, "httptools": "httptools" in maps}


async def run_one(
    name: str,
    shop: Shop,
    env: Env,
    *,
    stock: int,
    limit: int,
    buyers: int,
    seconds: int,
    qty_alt: bool,
) -> dict[str, Any]:
    args, tmp, server_pid, redis_pid = env.args, env.tmp, env.server_pid, env.redis_pid
    pid = f"{name}-{secrets.token_hex(3)}"
    await shop.put_product(pid, stock, limit)
    tokens = shop.tokens[:buyers]
    prefix = f"{name}-{secrets.token_hex(4)}"
    ids_file = tmp / f"{name}.ids"
    conf: dict[str, str | int | bool] = {
        "path": f"/api/broadcasts/{shop.bid}/orders", "product": pid, "prefix": prefix,
        "nthreads": args.threads, "replay_every": args.replay_every, "qty_alt": qty_alt,
        "ids_file": str(ids_file), "tag": TAG,
    }  # fmt: skip
    script = tmp / f"{name}.lua"
    script.write_text(lua_script(conf, tokens))

    def sample() -> tuple[tuple[float, float], float, float, resource.struct_rusage]:
        return (procstat.cpu(server_pid), procstat.cpu_seconds(redis_pid), time.monotonic(),
                resource.getrusage(resource.RUSAGE_CHILDREN))  # fmt: skip

    w, before, after = await run_wrk(
        args, script, f"http://{shop.host}:{shop.port}/", seconds, sample
    )
    ((u0, s0), rcpu0, t0, ru0), ((u1, s1), rcpu1, t1, ru1) = before, after
    run_ids = [x for x in ids_file.read_text().split("\n") if x]

    # the final answer of every fresh key: sent once more, one at a time per connection
    await asyncio.sleep(0.5)  # let requests cut off when wrk stopped finish on the server
    keys: list[tuple[str, int, int]] = []  # key, token index, qty
    for th in w["threads"]:
        tid = int(th["tid"])
        for k in range(1, int(th["n"] or 0) + 1):
            tok = ((k - 1) * args.threads + (tid - 1)) % len(tokens)
            keys.append((f"{prefix}-{tid}-{k}", tok, 1 + k % 2 if qty_alt else 1))
    r0 = time.monotonic()
    answers = await call_many(
        shop.host, shop.port, [shop.order_call(pid, tokens[t], key, q) for key, t, q in keys]
    )
    replay_s = time.monotonic() - r0
    final_ids: list[str] = []
    sold_by_keys = 0
    final_status: Counter[str] = Counter()
    for (_, _, q), (st, body) in zip(keys, answers, strict=True):
        final_status[str(st)] += 1
        if st == 201:
            final_ids.append(str(json.loads(body)["id"]))
            sold_by_keys += q
    stock_left = await shop.stock(pid)
    listed = [o for o in await shop.orders() if str(o.get("product_id", pid)) == pid]
    active = [o for o in listed if str(o.get("status", "")) not in INACTIVE]
    sold = sum(int(o.get("qty", 0)) for o in active)
    per_buyer: Counter[str] = Counter()
    for o in active:
        buyer = o.get("user_id") or o.get("buyer_id") or o.get("buyer", {})
        if isinstance(buyer, dict):
            buyer = buyer.get("user_id") or buyer.get("id")
        per_buyer[str(buyer)] += int(o.get("qty", 0))
    listed_ids = {str(o.get("id")) for o in listed}
    final_set = set(final_ids)

    counts: dict[str, int] = w["counts"] or {}
    n201 = counts.get("201", 0)
    by_status: Counter[str] = Counter()
    for code, v in counts.items():
        s = code.split(":")[0]
        by_status[s if s in ("201", "409", "422") else "other"] += v
    dur = w["duration_us"] / 1e6
    cpu, rcpu = (u1 - u0) + (s1 - s0), rcpu1 - rcpu0
    wall = t1 - t0
    wrk_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    lat = w["latency_us"]
    errors = {k: v for k, v in (w["errors"] or {}).items() if v and k != "status"}
    return {
        "run": name,
        "stock": stock,
        "per_buyer_limit": limit,
        "buyers": buyers,
        "seconds": round(dur, 2),
        "orders_per_s": round(n201 / dur),
        "new_orders_per_s": round(len(set(run_ids)) / dur),
        "requests_per_s": round(w["requests"] / dur),
        "p50_ms": round(lat["50"] / 1000, 2),
        "p90_ms": round(lat["90"] / 1000, 2),
        "p99_ms": round(lat["99"] / 1000, 2),
        "p999_ms": round(lat["99.9"] / 1000, 2),
        "max_ms": round(w["latency_max_us"] / 1000, 1),
        "status": {s: by_status.get(s, 0) for s in ("201", "409", "422", "other")},
        "codes": dict(sorted(counts.items(), key=lambda kv: -kv[1])),
        "socket_errors": errors,
        "other_samples": w["samples"] or [],
        "server_cores": round(cpu / wall, 3),
        "server_us_per_order": round(cpu * 1e6 / max(1, n201), 1),
        "server_us_per_request": round(cpu * 1e6 / max(1, w["requests"]), 1),
        "server_sys_share": round((s1 - s0) / max(cpu, 1e-9), 2),
        "orders_per_core_s": round(n201 / max(cpu, 1e-9)),
        "redis_cores": round(rcpu / wall, 3),
        "wrk_cores": round(wrk_cpu / wall, 3),
        # checks
        "oversold": max(0, sold - stock),
        "sold": sold,
        "left": stock_left,
        "stock_conserved": stock_left is not None and sold + stock_left == stock,
        "sold_equals_201_qty": sold == sold_by_keys,
        "buyers_over_limit": sum(1 for v in per_buyer.values() if v > limit),
        "duplicates": max(0, len(listed) - len(final_set)),
        "run_ids_no_key_owns": len(set(run_ids) - final_set),
        "lost_orders": len(final_set - listed_ids),
        "orders_listed": len(listed),
        "keys_with_201": len(final_ids),
        "keys_sharing_an_order": len(final_ids) - len(final_set),
        "fresh_keys": len(keys),
        "replayed_in_run": sum(int(t["replays"] or 0) for t in w["threads"]),
        "final_check_status": dict(final_status),
        "final_check_s": round(replay_s, 2),
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: run scripts/bootstrap bench (or apt-get install -y wrk)")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="jangteo-bench-orders-") as tmp_s:
        tmp = Path(tmp_s)
        # a unix socket and AOF like `jangteo serve`'s embedded Redis
        redis = RedisServer(tmp / "redis", port=None, fsync=args.fsync)
        redis.start()
        assert redis.proc is not None
        log = os.environ.get("JANGTEO_BENCH_SERVER_LOG", str(tmp / "server.log"))
        proc: subprocess.Popen[bytes] | None = None
        try:
            proc, host, port = await _server(redis.url, log)
            st, body = (await call_many(host, port, [
                Call("POST", "/api/broadcasts", {"Authorization": f"Bearer {ADMIN}"} | JSON_CT,
                     json_body({"title": "bench orders"}))
            ], 1))[0]  # fmt: skip
            b = expect_json(st, body, 201)
            bid = b["id"]
            admin = {"Authorization": f"Bearer {ADMIN}"} | JSON_CT  # named buyers, not guests
            issued = await call_many(host, port, [
                Call("POST", f"/api/broadcasts/{bid}/tokens", admin,
                     json_body({"role": "viewer", "name": f"구매자{i}"}))
                for i in range(max(args.buyers, args.check_buyers))
            ])  # fmt: skip
            tokens = [expect_json(s, bd, 201)["token"] for s, bd in issued]
            shop = Shop(host, port, bid, b["host_token"], tokens)
            # warm up: code paths, Redis scripts and pools, before anything is measured
            await shop.put_product("warmup", 1_000_000, MAX_LIMIT)
            warm = await call_many(host, port, [
                shop.order_call("warmup", tokens[i % len(tokens)], f"warm-{i}", 1)
                for i in range(300)
            ])  # fmt: skip
            warm_status = Counter(s for s, _ in warm)
            env = Env(args, tmp, proc.pid, redis.proc.pid)
            runs = [
                await run_one("throughput", shop, env, stock=args.stock, limit=MAX_LIMIT,
                              buyers=args.buyers, seconds=args.seconds, qty_alt=False),
                await run_one("oversell", shop, env, stock=args.check_stock, limit=args.check_limit,
                              buyers=args.check_buyers, seconds=args.check_seconds,
                              qty_alt=True),
            ]  # fmt: skip
            loaded = _loaded(proc.pid)
            rss = rss_mb(proc.pid)
            anchor = await run_anchor(redis.url, env, args.seconds) if args.anchor else None
        finally:
            if proc is not None:
                stop_process(proc)
            redis.stop()
    t = runs[0]
    ok = all(r["oversold"] == 0 and r["duplicates"] == 0 and r["stock_conserved"]
             and r["sold_equals_201_qty"] and r["buyers_over_limit"] == 0
             and r["lost_orders"] == 0 and r["run_ids_no_key_owns"] == 0
             and r["keys_sharing_an_order"] == 0 for r in runs)  # fmt: skip
    return {
        "bench": "orders",
        "cores": os.cpu_count(),
        "connections": args.connections,
        "threads": args.threads,
        "replay_every": args.replay_every,
        "redis_appendfsync": args.fsync,
        "server_modules": loaded,
        "server_rss_mb": round(rss, 1),
        "warmup_status": {str(k): v for k, v in warm_status.items()},
        "orders_per_s": t["orders_per_s"],
        "orders_per_core_s": t["orders_per_core_s"],
        "server_us_per_order": t["server_us_per_order"],
        "server_cores": t["server_cores"],
        "p50_ms": t["p50_ms"],
        "p99_ms": t["p99_ms"],
        "oversold": sum(r["oversold"] for r in runs),
        "duplicates": sum(r["duplicates"] for r in runs),
        "checks_pass": ok,
        "anchor_orders_per_core_s": anchor["orders_per_core_s"] if anchor else None,
        "ratio_vs_anchor": round(t["orders_per_core_s"] / anchor["orders_per_core_s"], 2)
        if anchor
        else None,
        "goal": GOAL,
        "meets_goal": ok
        and args.fsync == "always"
        and t["orders_per_core_s"] >= GOAL["orders_per_core_s"]
        and t["p99_ms"] <= GOAL["p99_ms"],
        "runs": [*runs, anchor] if anchor else runs,
        "bench_wall_s": round(time.monotonic() - started, 1),
    }


def add_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("orders", help="flash-sale orders per server core; oversell/dup checks")
    p.add_argument("--buyers", type=int, default=1000, help="viewer tokens the load rotates")
    p.add_argument("--stock", type=int, default=10_000_000, help="stock of the throughput run")
    p.add_argument("--seconds", type=int, default=10, help="length of the throughput run")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument(
        "--replay-every", type=int, default=10,
        help="every n-th request re-sends the previous one, same key (0: never)",
    )  # fmt: skip
    p.add_argument("--fsync", choices=["always", "everysec", "no"], default="always",
                   help="Redis appendfsync (the goal is stated for always)")  # fmt: skip
    p.add_argument("--check-stock", type=int, default=100, help="stock of the oversell run")
    p.add_argument("--check-buyers", type=int, default=100)
    p.add_argument("--check-limit", type=int, default=3, help="per-buyer limit, oversell run")
    p.add_argument("--check-seconds", type=int, default=3)
    p.add_argument("--no-anchor", dest="anchor", action="store_false",
                   help="skip the anchor run (bare Starlette + one Lua script)")  # fmt: skip

    def run(args: argparse.Namespace) -> int:
        if args.connections < args.threads:
            p.error("--connections must be at least --threads")
        result = asyncio.run(bench(args))
        print(json.dumps(result, ensure_ascii=False), flush=True)
        return 0 if result["checks_pass"] else 1

    p.set_defaults(run=run)
