"""A show's replay over HTTP (API.md, "Replay").

``GET /api/broadcasts/{bid}/replay``: its status (``none``, ``recording``, ``ready``), length,
where to play it and its chapters (the pins, at their moments). ``/vod/{bid}/index.m3u8`` is
the VOD playlist once ready, ``/vod/{bid}/chapters.vtt`` the chapters as WebVTT, and
``/vod/{bid}/<init, segment or replay.mp4>`` the files (HTTP Range: 206).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from core.broadcasts import BroadcastStore
from core.config import Settings
from core.pins import pins
from core.problems import Conflict, NotFound
from core.web import bind

from ..hls.playlist import VodSegment, pin_ranges, vod
from .chapters import chapters, webvtt
from .recorder import read_meta, recording_dir
from .vod import MP4, duration_s

_FILE = re.compile(r"init\d{1,4}\.mp4|seg\d{1,9}\.m4s|" + re.escape(MP4))
_IMMUTABLE = {"Cache-Control": "public, max-age=86400", "Access-Control-Allow-Origin": "*"}


class ReplayHub(Protocol):
    settings: Settings
    finishing: dict[str, Path]


class ReplayApp(Protocol):
    redis: Redis
    store: BroadcastStore

    @property
    def hub(self) -> ReplayHub: ...


class NotReady(Conflict):
    default_code = "replay_not_ready"


async def _meta(app: ReplayApp, bid: str) -> tuple[Path, dict[str, Any] | None]:
    await app.store.get(bid)  # 404 for a broadcast that does not exist
    root = recording_dir(app.hub.settings.data_dir, bid)
    return root, await asyncio.to_thread(read_meta, root)


def _ready(meta: dict[str, Any] | None) -> bool:
    return bool(meta and meta.get("complete") and meta.get("segments"))


async def replay(request: Request, app: ReplayApp) -> JSONResponse:
    bid = request.path_params["bid"]
    _, meta = await _meta(app, bid)
    if meta is None or not meta.get("segments"):
        status = "recording" if meta is not None and not meta.get("complete") else "none"
        empty: dict[str, Any] = {"status": status, "duration_s": 0, "hls": None, "mp4": None,
                                 "chapters": []}  # fmt: skip
        if meta and meta.get("stopped"):
            empty["stopped"] = meta["stopped"]
        return JSONResponse(empty)
    ready = _ready(meta) and bid not in app.hub.finishing
    body: dict[str, Any] = {
        "status": "ready" if ready else "recording",
        "duration_s": round(duration_s(meta), 3),
        "started_at": int(float(meta["started_at"]) * 1000),
        "hls": f"/vod/{bid}/index.m3u8" if ready else None,
        "mp4": f"/vod/{bid}/{MP4}" if ready and meta.get("mp4") else None,
        "chapters_vtt": f"/vod/{bid}/chapters.vtt" if ready else None,
        "chapters": chapters(meta, await pins(app.redis, bid)),
    }
    if meta.get("stopped"):
        body["stopped"] = meta["stopped"]
    return JSONResponse(body)


async def _ready_meta(app: ReplayApp, bid: str) -> dict[str, Any]:
    _, meta = await _meta(app, bid)
    if not _ready(meta) or bid in app.hub.finishing:
        raise NotReady("the replay is not ready yet", headers={"Retry-After": "5"})
    assert meta is not None
    return meta


async def vod_playlist(request: Request, app: ReplayApp) -> Response:
    bid = request.path_params["bid"]
    meta = await _ready_meta(app, bid)
    segments = [VodSegment(s["uri"], float(s["duration"]), s["init"], float(s["started_at"]))
                for s in meta["segments"]]  # fmt: skip
    body = vod(segments, pin_ranges(await pins(app.redis, bid)))
    return Response(body, media_type="application/vnd.apple.mpegurl", headers=_IMMUTABLE)


async def vod_chapters(request: Request, app: ReplayApp) -> Response:
    bid = request.path_params["bid"]
    meta = await _ready_meta(app, bid)
    found = chapters(meta, await pins(app.redis, bid))
    return Response(webvtt(found, duration_s(meta)), media_type="text/vtt; charset=utf-8",
                    headers=_IMMUTABLE)  # fmt: skip


async def vod_file(request: Request, app: ReplayApp) -> Response:
    bid, name = request.path_params["bid"], request.path_params["file"]
    if not _FILE.fullmatch(name):
        raise NotFound(f"no file {name!r}")
    await _ready_meta(app, bid)
    path = recording_dir(app.hub.settings.data_dir, bid) / name
    if not path.is_file():
        raise NotFound(f"no file {name!r}")
    kind = "video/mp4" if name.endswith(".mp4") else "video/iso.segment"
    return FileResponse(path, media_type=kind, headers=_IMMUTABLE)


def routes(app: Callable[[], ReplayApp]) -> list[BaseRoute]:
    return [
        Route("/api/broadcasts/{bid}/replay", bind(replay, app), methods=["GET"]),
        Route("/vod/{bid}/index.m3u8", bind(vod_playlist, app), methods=["GET"]),
        Route("/vod/{bid}/chapters.vtt", bind(vod_chapters, app), methods=["GET"]),
        Route("/vod/{bid}/{file}", bind(vod_file, app), methods=["GET"]),
    ]
