"""``GET /hls/{bid}/…``: Low-Latency HLS of a live broadcast (API.md, "HLS").

``index.m3u8`` is the multivariant playlist; ``{rung}/index.m3u8[?_HLS_msn=N[&_HLS_part=M]]``
a rendition's media playlist, held until that part exists (blocking reload); ``{rung}/init{k}.mp4``,
``seg{N}.m4s`` and ``part{N}.{M}.m4s`` the media, from memory (a request for the part being made
waits for it: the preload hint). Media is immutable (a CDN keeps it); playlists live a second.
Anyone may read it (the media is what guests watch anyway), from any origin; with
``JANGTEO_MEDIA_TOKENS=1`` every request needs ``?token=`` (any role of the broadcast), and the
playlists carry it into the URIs they list.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import quote

from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from core.broadcasts import BroadcastStore, Status
from core.config import Settings
from core.pins import pins
from core.problems import BadRequest, Elsewhere, NotFound, Unavailable
from core.revocation import Verifier
from core.web import bind
from stream.errors import NotLive, RenditionNotFound

from .packager import HlsPackager, Rendition
from .playlist import media, multivariant, pin_ranges
from .segmenter import SEGMENT_S

PLAYLIST = "application/vnd.apple.mpegurl"
MP4 = "video/mp4"
BLOCK_S = 3 * SEGMENT_S  # the longest a blocking request is held
_CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "Age, Date"}
_IMMUTABLE = {"Cache-Control": "public, max-age=31536000, immutable"} | _CORS
# ASCII digits only: ``\d`` alone also takes "٤٢" or "４２" (int() reads them as 42)
_FILE = re.compile(r"init(\d{1,4})\.mp4|seg(\d{1,9})\.m4s|part(\d{1,9})\.(\d{1,3})\.m4s", re.ASCII)
_NUMBER = re.compile(r"\d{1,9}", re.ASCII)
_URI = re.compile(r'URI="([^"?]+)"')


class HlsMedia(Protocol):
    def hls(self) -> HlsPackager: ...


class HlsHub(Protocol):
    settings: Settings

    def get(self, bid: str) -> HlsMedia | None: ...

    @property
    def find_origin(self) -> Callable[[str], Awaitable[Any]] | None:
        """Where a broadcast comes from when this node is one of several (stream/edge.py)."""


class HlsApp(Protocol):
    redis: Redis
    store: BroadcastStore
    verifier: Verifier

    @property
    def hub(self) -> HlsHub: ...


async def _packager(app: HlsApp, bid: str, request: Request) -> HlsPackager:
    if app.hub.settings.media_tokens:  # JANGTEO_MEDIA_TOKENS=1: a token of this broadcast
        await app.verifier.claims(request.query_params.get("token"), bid)
    broadcast = await app.store.get(bid)
    if broadcast.status is not Status.LIVE:
        raise NotLive("the broadcast is not live", headers={"Retry-After": "5"})
    found = app.hub.get(bid)
    if found is None and app.hub.find_origin is not None:  # one of several nodes
        route = await app.hub.find_origin(bid)
        if route is not None and route.url and route.local is None:  # HLS from its origin
            where = route.url.rstrip("/") + str(request.url.path)
            if request.url.query:
                where += "?" + request.url.query
            raise Elsewhere(f"served by node {route.node}", headers={"Location": where})
    if found is None:
        raise Unavailable("this broadcast's media is not on this server yet",
                          headers={"Retry-After": "2"})  # fmt: skip
    packager = found.hls()
    packager.touch()
    return packager


def _rendition(packager: HlsPackager, name: str) -> Rendition:
    r = packager.renditions.get(name)
    if r is None:
        names = ", ".join(packager.renditions)
        raise RenditionNotFound(f"no rendition {name!r} here (there are {names})")
    return r


def _with_token(playlist: str, request: Request) -> str:
    """With media tokens on, every URI in ``playlist`` carries the request's token."""
    token = request.query_params.get("token")
    if token is None:
        return playlist
    suffix = "?token=" + quote(token, safe="")
    lines = []
    # our playlists end their lines with LF alone; splitlines() would also cut a product's name
    # (a pin's EXT-X-DATERANGE) at a U+2028 or a CR and put the token in the middle of it
    for line in playlist.split("\n"):
        if line and not line.startswith("#"):
            line += suffix
        else:
            line = _URI.sub(lambda m: f'URI="{m.group(1)}{suffix}"', line)
        lines.append(line)
    return "\n".join(lines)


def _number(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not _NUMBER.fullmatch(raw):
        raise BadRequest(f"{name} must be a whole number", code="bad_hls_query")
    return int(raw)


async def master(request: Request, app: HlsApp) -> Response:
    packager = await _packager(app, request.path_params["bid"], request)
    codecs = await packager.codecs(BLOCK_S)
    if codecs is None:
        raise Unavailable("the renditions are starting", headers={"Retry-After": "1"})
    body = _with_token(multivariant(packager.ladder, codecs), request)
    return Response(body, media_type=PLAYLIST, headers={"Cache-Control": "max-age=5"} | _CORS)


async def media_playlist(request: Request, app: HlsApp) -> Response:
    bid = request.path_params["bid"]
    r = _rendition(await _packager(app, bid, request), request.path_params["rung"])
    msn, part = _number(request, "_HLS_msn"), _number(request, "_HLS_part")
    if part is not None and msn is None:
        raise BadRequest("_HLS_part needs _HLS_msn", code="bad_hls_query")
    if msn is not None:
        if msn > r.segmenter.next_msn + 1:  # RFC 8216bis 6.2.5.2: more than two ahead
            raise BadRequest(f"_HLS_msn {msn} is too far ahead", code="bad_hls_query")
        if not await r.wait(msn, part, BLOCK_S):
            raise Unavailable("that part is late", headers={"Retry-After": "1"})
    elif not r.segments() or not r.segments()[0].parts:
        await r.wait(r.segmenter.next_msn, 0, BLOCK_S)
    ranges = pin_ranges(await pins(app.redis, bid))
    body = _with_token(media(r.segments(), r.next_part(), ranges), request)
    cache = "max-age=6" if msn is not None else "max-age=1"  # a blocking answer stays right
    return Response(body, media_type=PLAYLIST, headers={"Cache-Control": cache} | _CORS)


async def media_file(request: Request, app: HlsApp) -> Response:
    bid, name = request.path_params["bid"], request.path_params["file"]
    m = _FILE.fullmatch(name)
    if m is None:
        raise NotFound(f"no file {name!r}")
    r = _rendition(await _packager(app, bid, request), request.path_params["rung"])
    data: bytes | None = None
    if m.group(1) is not None:
        k = int(m.group(1))
        data = r.segmenter.inits[k] if k < len(r.segmenter.inits) else None
    elif m.group(2) is not None:
        segment = r.segment(int(m.group(2)))
        data = segment.data if segment else None
    else:
        msn, index = int(m.group(3)), int(m.group(4))
        if r.part(msn, index) is None and r.next_part() == (msn, index):
            await r.wait(msn, index, BLOCK_S)  # the preload hint: held until it is made
        found = r.part(msn, index)
        data = found.data if found else None
    if data is None:
        raise NotFound(f"no {name} (it is not made yet, or it left the window)")
    return Response(data, media_type=MP4, headers=_IMMUTABLE)


def routes(app: Callable[[], HlsApp]) -> list[BaseRoute]:
    return [
        Route("/hls/{bid}/index.m3u8", bind(master, app), methods=["GET"]),
        Route("/hls/{bid}/{rung}/index.m3u8", bind(media_playlist, app), methods=["GET"]),
        Route("/hls/{bid}/{rung}/{file}", bind(media_file, app), methods=["GET"]),
    ]
