"""Broadcast and token routes (``/api/broadcasts``)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from chat.presence import watching
from core.broadcasts import ORIENTATIONS, Status
from core.nodes import node as node_record
from core.nodes import nodes, set_drain
from core.origin import clear as clear_origin
from core.origin import origin_of
from core.problems import BadRequest, Forbidden, NotFound, Problem
from core.tokens import Guest, Role, parse_role
from core.web import bearer, claims, is_admin, json_body

from .context import admin_key_matches, ctx, require_admin
from .guests import display_name, guest_identity

_MERCHANT = re.compile(r"[A-Za-z0-9_-]{1,40}")


def _text(doc: dict[str, Any], key: str, default: str, limit: int = 120) -> str:
    value = doc.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{key} must be a non-empty string", code=f"bad_{key}")
    value = value.strip()
    if len(value) > limit or any(ord(ch) < 32 for ch in value):
        raise BadRequest(f"{key}: at most {limit} printable characters", code=f"bad_{key}")
    return value


async def list_nodes(request: Request) -> JSONResponse:
    """The deployment's nodes heard from lately (the operator's view)."""
    require_admin(request)
    return JSONResponse({"nodes": await nodes(ctx(request).redis)},
                        headers={"Cache-Control": "no-store"})  # fmt: skip


async def drain_node(request: Request) -> JSONResponse:
    """Take a node out of service (jangteo/drain.py); asked of any node, the drained one sees it
    at its next heartbeat. 202: the drain goes on; ``GET /api/nodes`` says when it is done."""
    require_admin(request)
    return await _drain(request, True, 202)


async def undrain_node(request: Request) -> JSONResponse:
    """Put a drained node back in service."""
    require_admin(request)
    return await _drain(request, False, 200)


async def _drain(request: Request, on: bool, status: int) -> JSONResponse:
    node_id = request.path_params["node"]
    app = ctx(request)
    if on and await node_record(app.redis, node_id) is None:
        raise NotFound(f"no live node {node_id[:100]!r}", code="node_not_found")
    await set_drain(app.redis, node_id, on)
    if node_id == app.node_id:  # this node: at once
        request.app.state.drain.set(on)
    return JSONResponse({"node": node_id, "draining": on}, status_code=status)


async def create_broadcast(request: Request) -> JSONResponse:
    require_admin(request)
    doc = await json_body(request)
    title = _text(doc, "title", "", limit=200)
    host_name = display_name({"name": doc.get("host_name", "Host")}, "Host", guest=False)
    app = ctx(request)
    orientation = doc.get("orientation", app.settings.default_orientation)
    if orientation not in ORIENTATIONS:
        raise BadRequest(f"orientation: one of {', '.join(ORIENTATIONS)}", code="bad_orientation")
    merchant = doc.get("merchant_id")
    if merchant is not None and not (isinstance(merchant, str) and _MERCHANT.fullmatch(merchant)):
        raise BadRequest("merchant_id: 1-40 of A-Z a-z 0-9 _ -", code="bad_merchant_id")
    host_user = "u_" + secrets.token_hex(6)
    broadcast = await app.store.create(
        title, host_user=host_user, orientation=orientation, merchant_id=merchant
    )
    host_token, _ = app.signer.issue(broadcast.id, Role.HOST, host_name, user_id=host_user)
    body = broadcast.public() | {"host_token": host_token}
    return JSONResponse(
        body, status_code=201, headers={"Location": f"/api/broadcasts/{broadcast.id}"}
    )


async def _origin(redis: Redis, bid: str, live: list[dict[str, Any]]) -> dict[str, str] | None:
    """The node carrying the broadcast's media (its id and URL), while one does."""
    node_id = await origin_of(redis, bid)
    if node_id is None:
        return None
    url = next((str(r.get("url") or "") for r in live if r.get("id") == node_id), "")
    return {"node": node_id, "url": url}


def _publishers(
    bid: str, media: Any, origin: dict[str, str] | None, live: list[dict[str, Any]]
) -> int:
    """The show's publishers: this node's when it composes the show, else what the origin's
    last heartbeat said (every publisher of a show is on its origin)."""
    if media is not None and media.publishers:
        return len(media.publishers)
    record = next((r for r in live if origin and r.get("id") == origin["node"]), None)
    counts = record.get("publishers") if record else None
    return int(counts.get(bid, 0)) if isinstance(counts, dict) else 0


def web_origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL, as browsers send it in ``Origin`` ("" for none)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else ""


class NodeOrigins:
    """The browser origins a node accepts (CORS) besides the configured ones: its own pages' (the
    public and node URLs) and every node URL heard from in the registry since it started. Never
    forgets one: the page of a node that has since died moves its viewers to the others."""

    def __init__(self, own_urls: Iterable[str | None]) -> None:
        self.allowed = {o for o in (web_origin(u or "") for u in own_urls) if o}
        self.on_learn: list[Callable[[str], None]] = []  # told of each origin learnt

    def learn(self, records: Iterable[dict[str, Any]]) -> None:
        for record in records:
            found = web_origin(str(record.get("url") or ""))
            if found and found not in self.allowed:
                self.allowed.add(found)
                for tell in self.on_learn:
                    tell(found)


def node_origins(request: Request) -> NodeOrigins | None:
    found: NodeOrigins | None = getattr(request.app.state, "node_origins", None)
    return found


def node_urls(
    records: list[dict[str, Any]], own_id: str, own_url: str, draining: bool = False
) -> list[str]:
    """The live nodes' URLs, this node's first; [] for a deployment of one (a viewer page moves
    its WHEP session along this list when its node stops answering). Draining nodes are left
    out, this one too (``draining``)."""
    others = [r for r in records if r.get("id") != own_id and not r.get("draining")]
    mine = ([] if draining else [own_url]) + [str(r.get("url") or "") for r in others]
    urls = list(dict.fromkeys(u for u in mine if u))
    return urls if len(urls) > 1 or draining else []


async def get_broadcast(request: Request) -> JSONResponse:
    bid = request.path_params["bid"]
    app = ctx(request)
    broadcast = await app.store.get(bid)
    media = app.hub.get(bid)
    live_nodes = await nodes(app.redis)  # one SMEMBERS and one MGET
    origins = node_origins(request)
    if origins is not None:
        origins.learn(live_nodes)
    settings = app.settings
    own_url = settings.node_url or settings.base_url
    chat = app.chat.broadcasts.get(bid)
    here = max(len(chat.clients) if chat else 0, app.hub.audience(bid))
    origin = await _origin(app.redis, bid, live_nodes)
    body = broadcast.public() | {
        "viewers": await watching(app.chat.store, bid, app.chat.process, here),
        "publishers": _publishers(bid, media, origin, live_nodes),
        "pinned": await app.catalog.pin(bid),
        "renditions": [r.public() for r in app.hub.ladder_of(broadcast.portrait)],
        "origin": origin,
        "nodes": node_urls(live_nodes, app.node_id, own_url, app.hub.draining),
        "draining": app.hub.draining,  # the answering node: the pages move to one of `nodes`
    }
    return JSONResponse(body)


async def issue_token(request: Request) -> JSONResponse:
    """A token for this broadcast. Staff roles come from the host (or the operator); a viewer
    token for anyone: a guest presents the guest key they keep (same person, same user id) or
    gets a new identity, at most ``guest_identities_per_min`` a minute from one address."""
    bid = request.path_params["bid"]
    app = ctx(request)
    await app.store.get(bid)  # 404 for unknown broadcasts
    doc = await json_body(request)
    role = parse_role(doc.get("role", "viewer"))
    # a public route: who asks is checked here (the access table has no verdict for it)
    admin = admin_key_matches(request, app.settings.admin_key)
    if role is not Role.VIEWER and not admin:
        # host, cohost and moderator tokens come from the host (or the operator)
        if bearer(request) is None:
            raise Forbidden(f"a {role.value} token needs the host's token", code="wrong_role")
        (await app.verifier.claims(bearer(request), bid)).require_role(Role.HOST)
    named = admin or await _is_host(request, bid)  # else: a guest asks for themselves
    guest_key: str | None = None
    guest: Guest | None = None
    name = display_name(doc, "Guest", guest=not named)
    if not named:
        guest_key, guest = await guest_identity(request, bid, doc.get("guest"))
    generation = await app.revocations.generation(bid)
    token, c = app.signer.issue(bid, role, name, guest=guest, generation=generation)
    if role is not Role.VIEWER:
        await app.store.add_staff(bid, c.user_id, role)
    body = {"token": token, "role": role.value, "user_id": c.user_id, "name": name,
            "expires_at": c.expires_at * 1000}  # fmt: skip
    if guest_key is not None:
        body["guest"] = guest_key
    return JSONResponse(body, status_code=201)


async def _is_host(request: Request, bid: str) -> bool:
    if bearer(request) is None:
        return False
    try:
        return (await ctx(request).verifier.claims(bearer(request), bid)).role is Role.HOST
    except Problem:
        return False


async def revoke_tokens(request: Request) -> JSONResponse:
    """Every token of this broadcast issued so far stops working (within a few seconds on every
    process): a leaked host link, a moderator let go. The answer carries a fresh host token."""
    bid = request.path_params["bid"]
    app = ctx(request)
    broadcast = await app.store.get(bid)
    generation = await app.revocations.revoke(bid)
    host = claims(request, bid) if not is_admin(request) else None
    name = host.name if host else "Host"
    token, _ = app.signer.issue(bid, Role.HOST, name, user_id=broadcast.host_user,
                                generation=generation)  # fmt: skip
    return JSONResponse({"generation": generation, "host_token": token})


async def end_broadcast(request: Request) -> JSONResponse:
    bid = request.path_params["bid"]
    if not is_admin(request):
        claims(request, bid).require_role(Role.HOST)
    app = ctx(request)
    broadcast = await app.store.move(bid, Status.ENDED)
    await app.hub.end(bid)
    await clear_origin(app.redis, bid)
    return JSONResponse(broadcast.public())


routes = [
    Route("/api/nodes", list_nodes, methods=["GET"]),
    Route("/api/nodes/{node}/drain", drain_node, methods=["POST"]),
    Route("/api/nodes/{node}/drain", undrain_node, methods=["DELETE"]),
    Route("/api/broadcasts", create_broadcast, methods=["POST"]),
    Route("/api/broadcasts/{bid}", get_broadcast, methods=["GET"]),
    Route("/api/broadcasts/{bid}/tokens", issue_token, methods=["POST"]),
    Route("/api/broadcasts/{bid}/tokens/revoke", revoke_tokens, methods=["POST"]),
    Route("/api/broadcasts/{bid}/end", end_broadcast, methods=["POST"]),
]
