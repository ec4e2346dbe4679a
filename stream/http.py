"""WHIP (RFC 9725) ingest and WHEP playback endpoints.

``POST /whip/{bid}`` and ``POST /whep/{bid}`` take an SDP offer and answer 201 with the SDP answer
and ``Location`` of the session; ``DELETE`` on the session ends it (same token only); ``PATCH`` is
405 (no trickle ICE: our answers carry every candidate); ``OPTIONS`` answers CORS preflights.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from core import nodes
from core.broadcasts import BroadcastStore, Status
from core.events import publish
from core.origin import claim, claim_if, origin_of
from core.problems import Forbidden, MethodNotAllowed, Unavailable
from core.tokens import Role
from core.web import bind, claims, client_address, read_body
from stream.deliver.rtc import MAX_SDP_BYTES, check_offer

from .audience import Audience
from .errors import BroadcastEnded, NotLive, OriginElsewhere
from .hub import MediaHub
from .media import BroadcastMedia

log = logging.getLogger(__name__)

SDP = "application/sdp"


class MediaApp(Protocol):
    """What the media routes work on (the app's context satisfies it)."""

    redis: Redis
    store: BroadcastStore
    hub: MediaHub
    node_id: str


_PREFLIGHT_HEADERS = {
    "Accept-Post": SDP,
    "Allow": "OPTIONS, POST, DELETE, PATCH",
}


async def _offer(request: Request) -> str:
    body = await read_body(request, MAX_SDP_BYTES, (SDP,))
    try:
        return body.decode("utf-8").replace("\r\n", "\n").replace("\n", "\r\n")
    except UnicodeDecodeError:
        from .errors import BadSdp

        raise BadSdp("the SDP offer is not UTF-8") from None


def _created(kind: str, bid: str, sid: str, answer: str) -> Response:
    return Response(
        answer,
        status_code=201,
        media_type=SDP,
        headers={"Location": f"/{kind}/{bid}/{sid}", "ETag": f'"{sid}"'},
    )


def _open_to_new_sessions(app: MediaApp) -> None:
    if app.hub.draining:  # the pages go to another node (GET /api/broadcasts/{bid} `nodes`)
        raise Unavailable("this node is draining: use another node", code="draining",
                          headers={"Retry-After": "1"})  # fmt: skip


async def whip_post(request: Request, app: MediaApp) -> Response:
    bid = request.path_params["bid"]
    c = claims(request, bid)
    c.require_role(Role.HOST, Role.COHOST)
    _open_to_new_sessions(app)
    broadcast = await app.store.get(bid)
    if broadcast.status is Status.ENDED:
        raise BroadcastEnded("the broadcast has ended")
    offer = await _offer(request)
    check_offer(offer, need_send=True)
    host = c.role is Role.HOST
    seen = None if host else await _to_the_origin(app, bid)
    with app.hub.publisher_joining(bid):  # the lease may still name where the host came from
        async with app.hub.session_scope(bid, broadcast.portrait) as media:
            mine = {p.id for p in media.publishers.values() if p.claims.user_id == c.user_id}
            publisher, answer = await media.add_publisher(c, offer)
        try:
            if host:
                await claim(app.redis, bid, app.node_id)  # this node carries the show now
            elif not await claim_if(app.redis, bid, app.node_id, seen):
                await _to_the_origin(app, bid)  # the host claimed it elsewhere meanwhile
                raise Unavailable("the broadcast's origin moved; try again",
                                  headers={"Retry-After": "1"})  # fmt: skip
            if (edge := app.hub.edges.get(bid)) is not None:  # its viewers here: fed from it now
                edge.relocate()
            if host:
                await app.store.ensure_live(bid)
        except BaseException:
            await media.remove_publisher(publisher.id)
            raise
    for sid in mine - media.publishers.keys():  # the same person's older session, replaced
        await tell_replaced(app.redis, bid, c.user_id, sid)
    return _created("whip", bid, publisher.id, answer)


async def tell_replaced(redis: Redis, bid: str, user_id: str, sid: str) -> None:
    """Tell the person (on their chat) that WHIP session ``sid`` was replaced by a newer one of
    theirs: a studio still holding it (another tab, another device) stops instead of taking the
    show back. Best effort: the replacement stands either way."""
    event = {"type": "session_replaced", "kind": "whip", "session": sid, "to": user_id,
             "ts": int(time.time() * 1000)}  # fmt: skip
    try:
        await publish(redis, bid, event)
    except (RedisError, OSError) as exc:
        log.warning("could not tell %s its session %s was replaced: %s", user_id, sid, exc)


async def _to_the_origin(app: MediaApp, bid: str) -> str | None:
    """One compositor per show: a co-host publishes where the host's media is composed. With
    another live node as the origin, the request is refused with where to go (the studio goes
    there); with none (the host not on air yet, or its node dead or draining), this node may
    start it. Returns the lease's holder as read (for :func:`core.origin.claim_if`)."""
    if app.hub.relay is None:  # the only node
        return None
    seen = await origin_of(app.redis, bid)
    if seen is None or seen == app.node_id:
        return seen
    record = await nodes.node(app.redis, seen)  # None: that node is dead
    url = str(record.get("url") or "") if record else ""
    if record and url and not record.get("draining"):
        raise OriginElsewhere(
            f"the broadcast is composed on node {seen}: publish there",
            origin={"node": seen, "url": url},
            headers={"Location": f"{url}/whip/{bid}"},
        )
    return seen


async def whep_post(request: Request, app: MediaApp) -> Response:
    bid = request.path_params["bid"]
    c = claims(request, bid)
    _open_to_new_sessions(app)
    broadcast = await app.store.get(bid)
    if broadcast.status is Status.ENDED:
        raise BroadcastEnded("the broadcast has ended")
    rendition = request.query_params.get("rendition", "")
    if rendition:
        app.hub.check_rendition(rendition)
    offer = await _offer(request)
    check_offer(offer, need_send=False)
    if broadcast.status is not Status.LIVE:  # nothing is started for a show not on air yet
        raise NotLive("the broadcast has not started yet", headers={"Retry-After": "5"})
    async with app.hub.viewer_scope(bid, broadcast.portrait) as media:
        viewer, answer = await media.add_viewer(c, offer, client_address(request), rendition)
    ended = (await app.store.get(bid)).status is Status.ENDED
    if ended or media not in (app.hub.get(bid), app.hub.edges.get(bid)):  # while we negotiated
        await viewer.aclose()
        if ended:
            await app.hub.end(bid)
            raise BroadcastEnded("the broadcast has ended")
        retry = {"Retry-After": "1"}
        raise Unavailable("the broadcast's media restarted; try again", headers=retry)
    return _created("whep", bid, viewer.id, answer)


def _media_of(request: Request, app: MediaApp, kind: str) -> Audience:
    from .errors import SessionNotFound

    bid, sid = request.path_params["bid"], request.path_params["sid"]
    media = app.hub.get(bid) if kind == "whip" else app.hub.audience_of(bid, sid)
    if media is None:
        raise SessionNotFound("no media session on this broadcast")
    return media


async def session_delete(request: Request, app: MediaApp) -> Response:
    kind = request.url.path.split("/")[1]
    bid, sid = request.path_params["bid"], request.path_params["sid"]
    c = claims(request, bid)
    media = _media_of(request, app, kind)
    session = media.session(kind, sid)
    if session.claims.user_id != c.user_id and c.role is not Role.HOST:
        raise Forbidden("this session belongs to someone else", code="not_your_session")
    if isinstance(media, BroadcastMedia) and kind == "whip":
        await media.remove_publisher(sid)
    else:
        await media.remove_viewer(sid)
    return Response(status_code=200)


async def session_patch(request: Request) -> Response:
    raise MethodNotAllowed(
        "trickle ICE and ICE restarts are not supported: the answer carries every candidate",
        headers={"Allow": "OPTIONS, DELETE"},
    )


async def preflight(request: Request) -> Response:
    return Response(status_code=204, headers=_PREFLIGHT_HEADERS)


def routes(app: Callable[[], MediaApp]) -> list[BaseRoute]:
    return [
        Route("/whip/{bid}", bind(whip_post, app), methods=["POST"]),
        Route("/whep/{bid}", bind(whep_post, app), methods=["POST"]),
        Route("/whip/{bid}", preflight, methods=["OPTIONS"]),
        Route("/whep/{bid}", preflight, methods=["OPTIONS"]),
        Route("/whip/{bid}/{sid}", bind(session_delete, app), methods=["DELETE"]),
        Route("/whep/{bid}/{sid}", bind(session_delete, app), methods=["DELETE"]),
        Route("/whip/{bid}/{sid}", session_patch, methods=["PATCH"]),
        Route("/whep/{bid}/{sid}", session_patch, methods=["PATCH"]),
        Route("/whip/{bid}/{sid}", preflight, methods=["OPTIONS"]),
        Route("/whep/{bid}/{sid}", preflight, methods=["OPTIONS"]),
    ]
