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
from collections.abc import Callable

from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from core.broadcasts import cohost_can_pin, cohost_key
from core.events import publish
from core.keys import key, text
from core.problems import BadRequest
from core.web import admin_or, bind, json_body
from stream.compose.layout import DEFAULT_LAYOUT, LAYOUTS

from .http import MediaApp


def layout_key(bid: str) -> str:
    return key(bid, "layout")


async def load_layout(redis: Redis, bid: str) -> str:
    """The broadcast's stored layout (the default when none, or an unknown one, is stored)."""
    raw = await redis.get(layout_key(bid))
    value = text(raw) if raw is not None else DEFAULT_LAYOUT
    return value if value in LAYOUTS else DEFAULT_LAYOUT


async def get_layout(request: Request, app: MediaApp) -> JSONResponse:
    bid = request.path_params["bid"]
    await app.store.get(bid)
    return JSONResponse({"layout": await load_layout(app.redis, bid)})


async def put_layout(request: Request, app: MediaApp) -> JSONResponse:
    admin_or(request)
    bid = request.path_params["bid"]
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


async def get_cohost(request: Request, app: MediaApp) -> JSONResponse:
    bid = request.path_params["bid"]
    await app.store.get(bid)
    return JSONResponse({"can_pin": await cohost_can_pin(app.redis, bid)})


async def put_cohost(request: Request, app: MediaApp) -> JSONResponse:
    admin_or(request)
    bid = request.path_params["bid"]
    await app.store.get(bid)
    can_pin = (await json_body(request)).get("can_pin")
    if not isinstance(can_pin, bool):
        raise BadRequest("can_pin must be true or false", code="bad_can_pin")
    await app.redis.hset(cohost_key(bid), "can_pin", "1" if can_pin else "0")
    return JSONResponse({"can_pin": can_pin})


def routes(app: Callable[[], MediaApp]) -> list[BaseRoute]:
    return [
        Route("/api/broadcasts/{bid}/layout", bind(get_layout, app), methods=["GET"]),
        Route("/api/broadcasts/{bid}/layout", bind(put_layout, app), methods=["PUT"]),
        Route("/api/broadcasts/{bid}/cohost", bind(get_cohost, app), methods=["GET"]),
        Route("/api/broadcasts/{bid}/cohost", bind(put_cohost, app), methods=["PUT"]),
    ]
