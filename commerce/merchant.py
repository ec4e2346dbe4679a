"""A merchant's shows as the forecast reads them (ended broadcasts with the same ``merchant_id``:
their counted units per product, their viewer-minutes and GMV per hour from the timeline), the
forecast route, and a way to put a history in (the demo's and the benchmark's past shows)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from core.broadcasts import Status, meta_key
from core.keys import text
from core.numbers import stats_key, timeline_key
from core.problems import Forbidden, NotFound
from core.tokens import Role
from core.web import bind, caller, is_admin

from .catalog import validate_product
from .forecast import Show, forecast, kst_hour
from .shop import ShopApp
from .stats import STEP_MS, parse_timeline

SHOW_MINUTES = 60  # a stored history's shows last an hour


async def past_shows(app: ShopApp, merchant_id: str) -> list[Show]:
    bids = await app.store.of_merchant(merchant_id)
    shows = await asyncio.gather(*(_past_show(app, bid) for bid in bids))
    return [s for s in shows if s is not None]


async def _past_show(app: ShopApp, bid: str) -> Show | None:
    """One ended show as the forecast reads it (None: not ended, or gone)."""
    try:
        b = await app.store.get(bid)
    except NotFound:
        return None  # deleted since
    if b.status is not Status.ENDED or not b.started_at:
        return None
    async with app.redis.pipeline(transaction=False) as pipe:  # one slot: one round trip
        pipe.hgetall(stats_key(bid))
        pipe.hgetall(timeline_key(bid))
        raw_stats, raw_points = await pipe.execute()
    stats = {text(k): text(v) for k, v in raw_stats.items()}
    units = {f[2:]: int(n) for f, n in stats.items() if f.startswith("u:")}
    points = parse_timeline(bid, raw_points)
    hourly: dict[int, int] = {}
    before = 0
    for p in points:
        hour = kst_hour(p["t"])
        hourly[hour] = hourly.get(hour, 0) + p["gmv"] - before
        before = p["gmv"]
    minutes = sum(p["viewers"] for p in points) * STEP_MS / 60_000
    return Show(bid, b.started_at, minutes, units, await app.catalog.names(bid), hourly)


async def get_forecast(request: Request, app: ShopApp) -> JSONResponse:
    """The operator, or the host of any broadcast of that merchant."""
    mid = request.path_params["mid"]
    if not is_admin(request):
        c = caller(request)
        c.require_role(Role.HOST)
        if (await app.store.get(c.broadcast_id)).public()["merchant_id"] != mid:
            raise Forbidden("a host of this merchant's shows only", code="not_your_merchant")
    doc = forecast(await past_shows(app, mid))
    return JSONResponse({"merchant_id": mid, **doc}, headers={"Cache-Control": "no-store"})


def routes(app: Callable[[], ShopApp]) -> list[BaseRoute]:
    return [Route("/api/merchants/{mid}/forecast", bind(get_forecast, app), methods=["GET"])]


async def store_show(
    app: ShopApp, merchant_id: str, show: Show, prices: dict[str, int], title: str
) -> str:
    """Write ``show`` as an ended broadcast of ``merchant_id`` (products, counted units and GMV,
    a timeline over SHOW_MINUTES with the GMV spread evenly); its id."""
    redis = app.redis
    b = await app.store.create(title, host_user="u_history", merchant_id=merchant_id)
    end = show.started_at + SHOW_MINUTES * 60_000
    ended = {"status": Status.ENDED.value, "started_at": show.started_at, "ended_at": end}
    await redis.hset(meta_key(b.id), mapping=ended)  # type: ignore[arg-type]
    for pid in show.units:
        product, stock = validate_product(pid, {"name": show.names.get(pid, pid),
                                                "price": prices[pid], "stock": 0})  # fmt: skip
        await app.catalog.put(b.id, product, stock)
    gmv = sum(n * prices[p] for p, n in show.units.items())
    orders = sum(show.units.values())  # one unit an order
    stats: dict[str, int] = {}
    for pid, n in show.units.items():
        stats |= {f"{paid}{f}:{pid}": v for paid in ("", "p")
                  for f, v in (("o", n), ("u", n), ("g", n * prices[pid]))}  # fmt: skip
    await redis.hset(stats_key(b.id), mapping=stats)  # type: ignore[arg-type]
    steps = SHOW_MINUTES * 60_000 // STEP_MS
    viewers = round(show.viewer_minutes / SHOW_MINUTES)
    points = {}
    for k in range(steps):
        t = show.started_at + k * STEP_MS
        point = {"t": t, "viewers": viewers, "orders": orders * (k + 1) // steps,
                 "gmv": gmv * (k + 1) // steps}  # fmt: skip
        points[str(t // STEP_MS)] = json.dumps(point)
    await redis.hset(timeline_key(b.id), mapping=points)  # type: ignore[arg-type]
    return b.id
