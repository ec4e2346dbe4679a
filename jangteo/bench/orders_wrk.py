"""The wrk side of ``jangteo bench orders``: the load script, running wrk, and the anchor run.

``lua_script`` writes the wrk script (a prelude with CONF and TOKENS, then ``LUA``): it rotates
buyer tokens, sends a fresh ``Idempotency-Key`` per request except every ``replay_every``-th, which
re-sends the previous one, counts answers by status and problem code, keeps the id of every 201 and
prints its summary after ``TAG`` from ``done()``; ``run_wrk`` runs wrk with a script and reads that
line back; ``run_anchor`` puts the same kind of load on the bare endpoint of
``jangteo/bench/orders_anchor.py`` (one Lua reserve script) for the ratio against our server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from core.redisproc import free_port
from jangteo.testkit.server import stop_process

from . import procstat
from .orders_client import JSON_CT, Call, call_many

TAG = "JANGTEO_ORDERS_RESULT "
T = TypeVar("T")


@dataclass
class Env:
    args: argparse.Namespace
    tmp: Path
    server_pid: int
    redis_pid: int


# The wrk script after its generated prelude (CONF and TOKENS). Each wrk thread has its own Lua
# state; globals are what ``thread:get`` reads back in ``done()``, which runs in the main state.
LUA = r"""
local threads = {}
local nsetup = 0

function setup(thread)
  nsetup = nsetup + 1
  thread:set("tid", nsetup)
  table.insert(threads, thread)
end

i, n, fresh, replays, nids, nsamples = 0, 0, 0, 0, 0, 0
counts, ids, samples = {}, {}, {}
local last = nil
local ntok = #TOKENS

function request()
  i = i + 1
  if CONF.replay_every > 0 and i % CONF.replay_every == 0 and last ~= nil then
    replays = replays + 1
    return last
  end
  n = n + 1
  fresh = fresh + 1
  local tok = TOKENS[((n - 1) * CONF.nthreads + (tid - 1)) % ntok + 1]
  local qty = 1
  if CONF.qty_alt then qty = 1 + n % 2 end
  last = wrk.format("POST", CONF.path, {
    ["Authorization"] = "Bearer " .. tok,
    ["Idempotency-Key"] = CONF.prefix .. "-" .. tid .. "-" .. n,
    ["Content-Type"] = "application/json",
  }, '{"product_id":"' .. CONF.product .. '","qty":' .. qty .. '}')
  return last
end

function response(status, headers, body)
  local key
  if status == 201 then
    local id = string.match(body, '"id"%s*:%s*"([^"]*)"') or string.match(body, '"id"%s*:%s*(%d+)')
    nids = nids + 1
    ids[nids] = id or "?"
    key = "201"
  else
    local code = body and string.match(body, '"code"%s*:%s*"([^"]*)"')
    key = tostring(status) .. ":" .. (code or "")
    if status ~= 409 and status ~= 422 and nsamples < 3 then
      nsamples = nsamples + 1
      samples[nsamples] = tostring(status) .. " " .. string.sub(body or "", 1, 300)
    end
  end
  counts[key] = (counts[key] or 0) + 1
end

local function enc(v)
  local t = type(v)
  if t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return "null" end
    return string.format("%.17g", v)
  elseif t == "string" then
    local s = string.gsub(v, '[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end)
    return '"' .. s .. '"'
  elseif t == "boolean" then
    return tostring(v)
  elseif t == "table" then
    local parts = {}
    if #v > 0 then
      for _, x in ipairs(v) do parts[#parts + 1] = enc(x) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    for k, x in pairs(v) do parts[#parts + 1] = enc(tostring(k)) .. ":" .. enc(x) end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  return "null"
end

function done(summary, latency, requests)
  local all, per, smp = {}, {}, {}
  local f = assert(io.open(CONF.ids_file, "w"))
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("counts") or {}) do all[k] = (all[k] or 0) + v end
    per[#per + 1] = {tid = t:get("tid"), n = t:get("n"), fresh = t:get("fresh"),
                     replays = t:get("replays")}
    for _, id in ipairs(t:get("ids") or {}) do f:write(id, "\n") end
    for _, s in ipairs(t:get("samples") or {}) do smp[#smp + 1] = s end
  end
  f:close()
  local pct = {}
  for _, p in ipairs({50, 90, 99, 99.9}) do pct[tostring(p)] = latency:percentile(p) end
  io.write(CONF.tag, enc({
    duration_us = summary.duration, requests = summary.requests, errors = summary.errors,
    latency_us = pct, latency_mean_us = latency.mean, latency_max_us = latency.max,
    counts = all, threads = per, samples = smp,
  }), "\n")
end
"""


def _lua_str(s: str) -> str:
    if not s.isascii() or any(c in s for c in '"\\\n\r'):
        raise ValueError(f"not a plain ASCII string: {s!r}")
    return f'"{s}"'


def lua_script(conf: dict[str, str | int | bool], tokens: Sequence[str]) -> str:
    items = []
    for k, v in conf.items():
        if isinstance(v, bool):
            val = "true" if v else "false"
        elif isinstance(v, int):
            val = str(v)
        else:
            val = _lua_str(v)
        items.append(f"  {k} = {val},")
    toks = ",\n".join(f"  {_lua_str(t)}" for t in tokens)
    return "CONF = {\n" + "\n".join(items) + "\n}\nTOKENS = {\n" + toks + "\n}\n" + LUA


ANCHOR_LUA = r"""
wrk.method = "POST"
wrk.body = '{"qty":1}'
wrk.headers["Content-Type"] = "application/json"
function done(summary, latency, requests)
  local fmt = '{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"errors":%d}'
  io.write(TAG, string.format(fmt,
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout),
    "\n")
end
"""


async def run_wrk(
    args: argparse.Namespace, script: Path, url: str, seconds: int, sample: Callable[[], T]
) -> tuple[dict[str, Any], T, T]:
    """wrk with ``script`` against ``url``: what the script printed after ``TAG``, and
    ``sample()`` taken right before and right after the load."""
    cmd = ["wrk", "-t", str(args.threads), "-c", str(args.connections), "-d", f"{seconds}s",
           "--timeout", "5s", "-s", str(script), url]  # fmt: skip
    before = sample()
    wrk = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await wrk.communicate()
    after = sample()
    lines = [ln for ln in out.decode().splitlines() if ln.startswith(TAG)]
    if wrk.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed on {url} ({wrk.returncode}): {err.decode()[-500:]}")
    return json.loads(lines[-1][len(TAG) :]), before, after


async def run_anchor(redis_url: str, env: Env, seconds: int) -> dict[str, Any]:
    """The same wrk load on a bare Starlette endpoint running one Lua reserve script."""
    args, tmp = env.args, env.tmp
    port = free_port()
    proc = subprocess.Popen(  # noqa: ASYNC220 - benchmark harness
        [sys.executable, "-m", "jangteo.bench.orders_anchor", str(port), redis_url],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp / "anchor.log", "ab"),  # noqa: SIM115, ASYNC230
    )
    try:
        for _ in range(400):
            with contextlib.suppress(OSError, ValueError, IndexError):
                put = Call("PUT", "/stock?n=1000000000", {})
                if (await call_many("127.0.0.1", port, [put], 1))[0][0] == 200:
                    break
            if proc.poll() is not None:
                raise RuntimeError(f"anchor server did not start (see {tmp / 'anchor.log'})")
            await asyncio.sleep(0.05)
        warm = [Call("POST", "/reserve", JSON_CT, b'{"qty":1}') for _ in range(300)]
        await call_many("127.0.0.1", port, warm)
        script = tmp / "anchor.lua"
        script.write_text(f"local TAG = {_lua_str(TAG)}\n" + ANCHOR_LUA)

        def sample() -> tuple[tuple[float, float], float]:
            return procstat.cpu(proc.pid), procstat.cpu_seconds(env.redis_pid)

        url = f"http://127.0.0.1:{port}/reserve"
        w, ((u0, s0), rcpu0), ((u1, s1), rcpu1) = await run_wrk(args, script, url, seconds, sample)
    finally:
        stop_process(proc)
    cpu = (u1 - u0) + (s1 - s0)
    wall = w["duration_us"] / 1e6
    return {
        "run": "anchor: bare Starlette + one Lua script (no auth, validation, record, events)",
        "orders_per_s": round(w["requests"] / wall),
        "orders_per_core_s": round(w["requests"] / max(cpu, 1e-9)),
        "server_us_per_order": round(cpu * 1e6 / max(1, w["requests"]), 1),
        "server_cores": round(cpu / wall, 3),
        "redis_cores": round((rcpu1 - rcpu0) / wall, 3),
        "p50_ms": round(w["p50_us"] / 1000, 2),
        "p99_ms": round(w["p99_us"] / 1000, 2),
        "errors": w["errors"],
    }
