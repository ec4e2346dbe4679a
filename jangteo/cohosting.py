"""What the host decides about co-hosting: the layout of the publishers' pictures and whether
co-hosts may pin products.

Both live in Redis so any process answers and a compositor created later starts from them:
``jt:{bid}:layout`` (a string: ``solo``, ``side_by_side`` or ``pip``; absent = the default) and
the hash ``jt:{bid}:cohost`` (field ``can_pin``: ``1``/``0``; absent = co-hosts may not pin).
A layout change is announced to everyone as ``{"type": "layout", "layout", "ts"}`` and applied to
the broadcast's compositor when its media runs on this process.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from chat.publish import publish
from stream.layout import DEFAULT_LAYOUT, LAYOUTS

from .context import admin_or, ctx
from .jsonbody import json_body
from .keys import key, text
from .problems import BadRequest, Forbidden
from .tokens import Claims, Role


def layout_key(bid: str) -> str:
    return key(bid, "layout")


def cohost_key(bid: str) -> str:
    return key(bid, "cohost")


async def load_layout(redis: Redis, bid: str) -> str:
    """The broadcast's stored layout (the default when none, or an unknown one, is stored)."""
    raw = await redis.get(layout_key(bid))
    value = text(raw) if raw is not None else DEFAULT_LAYOUT
    return value if value in LAYOUTS else DEFAULT_LAYOUT


async def cohost_can_pin(redis: Redis, bid: str) -> bool:
    return text(await redis.hget(cohost_key(bid), "can_pin") or b"0") == "1"


async def check_pin_allowed(redis: Redis, bid: str, who: Claims | None) -> None:
    """A co-host pins and unpins only when the host allowed it (403 ``cohost_not_allowed``)."""
    if who is not None and who.role is Role.COHOST and not await cohost_can_pin(redis, bid):
        raise Forbidden("the host has not allowed co-hosts to pin", code="cohost_not_allowed")


async def get_layout(request: Request) -> JSONResponse:
    bid = request.path_params["bid"]
    app = ctx(request)
    await app.store.get(bid)
    return JSONResponse({"layout": await load_layout(app.redis, bid)})


async def put_layout(request: Request) -> JSONResponse:
    admin_or(request)
    bid = request.path_params["bid"]
    app = ctx(request)
    await app.store.get(bid)
    layout = (await json_body(request)).get("layout")
    if not isinstance(layout, str) or layout not in LAYOUTS:
        raise BadRequest(f"layout must be one of {', '.join(LAYOUTS)}", code="unknown_layout")
    await app.redis.set(layout_key(bid), layout)
    media = app.hub.get(bid)
    if media is not None:
        media.compositor.layout = layout
    event = {"type": "layout", "layout": layout, "ts": int(time.time() * 1000)}
    await publish(app.redis, bid, event)
    return JSONResponse({"layout": layout})


async def get_cohost(request: Request) -> JSONResponse:
    bid = request.path_params["bid"]
    app = ctx(request)
    await app.store.get(bid)
    return JSONResponse({"can_pin": await cohost_can_pin(app.redis, bid)})


async def put_cohost(request: Request) -> JSONResponse:
    admin_or(request)
    bid = request.path_params["bid"]
    app = ctx(request)
    await app.store.get(bid)
    can_pin = (await json_body(request)).get("can_pin")
    if not isinstance(can_pin, bool):
        raise BadRequest("can_pin must be true or false", code="bad_can_pin")
    await app.redis.hset(cohost_key(bid), "can_pin", "1" if can_pin else "0")
    return JSONResponse({"can_pin": can_pin})


routes = [
    Route("/api/broadcasts/{bid}/layout", get_layout, methods=["GET"]),
    Route("/api/broadcasts/{bid}/layout", put_layout, methods=["PUT"]),
    Route("/api/broadcasts/{bid}/cohost", get_cohost, methods=["GET"]),
    Route("/api/broadcasts/{bid}/cohost", put_cohost, methods=["PUT"]),
]
