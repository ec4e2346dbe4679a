"""``/api/broadcasts/{bid}/destinations``: the host's restream destinations (API.md, "Restream").

Add (201; a 6th → 409; not rtmp:// or rtmps:// → 422 ``bad_destination_url``; a host that
resolves to a loopback or private address → 422 ``private_destination`` unless allowed), list
with each push's live status, delete (204; the push stops). Answers never carry the stream key.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from core.broadcasts import BroadcastStore
from core.config import Settings
from core.problems import NotFound
from core.tokens import Role
from core.web import admin_or, bind, json_body
from stream.encode.ladder import Rung

from .destinations import BadDestination, DestinationStore, parse, resolve
from .restreamer import Restreamer


class RestreamMedia(Protocol):
    restreamer: Restreamer | None


class RestreamHub(Protocol):
    settings: Settings
    restream: DestinationStore | None

    @property
    def ladder(self) -> tuple[Rung, ...]: ...

    def get(self, bid: str) -> RestreamMedia | None: ...


class RestreamApp(Protocol):
    store: BroadcastStore

    @property
    def hub(self) -> RestreamHub: ...


def _store(app: RestreamApp) -> DestinationStore:
    if app.hub.restream is None:
        raise NotFound("restreaming is not set up on this server")
    return app.hub.restream


async def _synced(app: RestreamApp, bid: str) -> None:
    media = app.hub.get(bid)
    if media is not None and media.restreamer is not None:
        await media.restreamer.sync()


async def add(request: Request, app: RestreamApp) -> JSONResponse:
    admin_or(request, Role.HOST)
    bid = request.path_params["bid"]
    await app.store.get(bid)
    doc = await json_body(request)
    name = doc.get("name")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= 60:
        raise BadDestination("name: 1-60 characters", code="bad_destination_name")
    url = doc.get("url")
    if not isinstance(url, str):
        raise BadDestination("url must be a string")
    target = parse(url)
    s = app.hub.settings
    ladder = [r.name for r in app.hub.ladder]
    rendition = doc.get("rendition") or ladder[0]
    if rendition not in ladder:
        raise BadDestination(f"rendition: one of {', '.join(ladder)}", code="bad_rendition")
    await resolve(target, s.restream_allow_private)
    destination = await _store(app).add(bid, name.strip(), target.url, rendition)
    await _synced(app, bid)
    where = {"Location": f"/api/broadcasts/{bid}/destinations/{destination.id}"}
    return JSONResponse(destination.public(), status_code=201, headers=where)


async def listing(request: Request, app: RestreamApp) -> JSONResponse:
    admin_or(request, Role.HOST)
    bid = request.path_params["bid"]
    await app.store.get(bid)
    store = _store(app)
    statuses = {did: _current(s) for did, s in (await store.statuses(bid)).items()}
    media = app.hub.get(bid)
    if media is not None and media.restreamer is not None:  # pushed here: the latest figures
        statuses |= {did: p.snapshot() for did, p in media.restreamer.pushers.items()}
    out: list[dict[str, Any]] = [d.public(statuses.get(d.id)) for d in await store.all(bid)]
    return JSONResponse(out)


async def remove(request: Request, app: RestreamApp) -> Response:
    admin_or(request, Role.HOST)
    bid, did = request.path_params["bid"], request.path_params["did"]
    await app.store.get(bid)
    if not await _store(app).remove(bid, did):
        raise NotFound(f"no destination {did!r}")
    await _synced(app, bid)
    return Response(status_code=204)


STALE_MS = 30_000  # a pushing process refreshes its statuses every 5 s


def _current(status: dict[str, Any]) -> dict[str, Any]:
    """A kept status, or ``idle`` when whoever was pushing stopped refreshing it (its process
    ended): a push is never shown live after the fact."""
    updated = status.pop("updated", 0)
    active = status.get("status") in ("connecting", "live", "retrying")
    if active and time.time() * 1000 - updated > STALE_MS:
        return status | {"status": "idle"}
    return status


def routes(app: Callable[[], RestreamApp]) -> list[BaseRoute]:
    base = "/api/broadcasts/{bid}/destinations"
    return [
        Route(base, bind(add, app), methods=["POST"]),
        Route(base, bind(listing, app), methods=["GET"]),
        Route(base + "/{did}", bind(remove, app), methods=["DELETE"]),
    ]
