"""The anchor of ``jangteo bench orders``: a bare Starlette endpoint running one Lua reserve script.

No token, no validation, no idempotency, no order record, no events: ``POST /reserve`` takes
``{"qty": n}``, decrements a stock counter in one script and answers JSON. Served like
``jangteo serve`` (uvicorn, uvloop + httptools, redis-py's asyncio client on the same Redis), so
the ratio between the two runs is what our full order logic costs over the floor of the stack.

Run as ``python -m jangteo.bench.orders_anchor PORT REDIS_URL``.
"""

from __future__ import annotations

import json
import sys

import uvicorn
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

STOCK_KEY = "jt:{anchor}:stock"
RESERVE = """
local left = tonumber(redis.call('GET', KEYS[1]) or '0')
local qty = tonumber(ARGV[1])
if left < qty then return {0, left} end
return {1, redis.call('DECRBY', KEYS[1], qty)}
"""


def make_app(redis_url: str) -> Starlette:
    redis = Redis.from_url(redis_url)
    script = redis.register_script(RESERVE)

    async def reserve(request: Request) -> Response:
        qty = int(json.loads(await request.body())["qty"])
        ok, left = await script(keys=[STOCK_KEY], args=[qty])
        status = 201 if ok else 409
        return Response(json.dumps({"ok": bool(ok), "left": int(left)}), status,
                        media_type="application/json")  # fmt: skip

    async def stock(request: Request) -> Response:
        await redis.set(STOCK_KEY, int(request.query_params["n"]))
        return Response("{}", media_type="application/json")

    return Starlette(routes=[Route("/reserve", reserve, methods=["POST"]),
                             Route("/stock", stock, methods=["PUT"])])  # fmt: skip


def main() -> None:
    port, redis_url = int(sys.argv[1]), sys.argv[2]
    uvicorn.run(make_app(redis_url), host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                log_level="warning", access_log=False)  # fmt: skip


if __name__ == "__main__":
    main()
