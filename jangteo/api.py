"""Broadcast and token routes (``/api/broadcasts``)."""

from __future__ import annotations

import json
import math
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from chat.normalize import TextRejected, check_text, fold

from .broadcasts import Status
from .context import bearer, claims, client_address, ctx, is_admin, read_body, require_admin
from .keys import key
from .problems import (
    BadRequest,
    Forbidden,
    Problem,
    TooManyRequests,
    Unauthorized,
    Unprocessable,
)
from .tokens import Guest, Role, parse_role

MAX_JSON = 16 * 1024


async def json_body(request: Request) -> dict[str, Any]:
    return parse_json_object(await read_body(request, MAX_JSON, ("application/json",)))


def parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body is not valid JSON", code="bad_json") from None
    if not isinstance(doc, dict):
        raise BadRequest("the body must be a JSON object", code="bad_json")
    return doc


def _text(doc: dict[str, Any], key: str, default: str, limit: int = 120) -> str:
    value = doc.get(key, default)
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"{key} must be a non-empty string", code=f"bad_{key}")
    value = value.strip()
    if len(value) > limit or any(ord(ch) < 32 for ch in value):
        raise BadRequest(f"{key}: at most {limit} printable characters", code=f"bad_{key}")
    return value


async def create_broadcast(request: Request) -> JSONResponse:
    require_admin(request)
    doc = await json_body(request)
    title = _text(doc, "title", "", limit=200)
    host_name = display_name({"name": doc.get("host_name", "Host")}, "Host", guest=False)
    app = ctx(request)
    host_user = "u_" + secrets.token_hex(6)
    broadcast = await app.store.create(title, host_user=host_user)
    host_token, _ = app.signer.issue(broadcast.id, Role.HOST, host_name, user_id=host_user)
    body = broadcast.public() | {"host_token": host_token}
    return JSONResponse(
        body, status_code=201, headers={"Location": f"/api/broadcasts/{broadcast.id}"}
    )


async def get_broadcast(request: Request) -> JSONResponse:
    bid = request.path_params["bid"]
    app = ctx(request)
    broadcast = await app.store.get(bid)
    media = app.hub.get(bid)
    body = broadcast.public() | {
        "viewers": media.audience() if media else 0,
        "publishers": len(media.publishers) if media else 0,
        "pinned": await app.catalog.pin(bid),
    }
    return JSONResponse(body)


# names a guest may not take: they would pass for the merchant's staff or the service itself
_STAFF_WORDS = ("admin", "moderator", "관리자", "운영자", "모더레이터", "공지", "official", "공식",
                "system", "시스템", "staff", "스태프", "jangteo")  # fmt: skip
_STAFF_NAMES = ("host", "호스트", "사장님", "장터", "판매자", "seller")


def display_name(doc: dict[str, Any], default: str, *, guest: bool) -> str:
    """A display name under the chat's text rules (no control, bidi or zero-width characters);
    a guest's may not look like staff."""
    value = doc.get("name", default)
    if not isinstance(value, str):
        raise BadRequest("name must be a string", code="bad_name")
    try:
        name = check_text(value, MAX_NAME)
    except TextRejected as exc:
        raise BadRequest(f"name: {exc.detail}", code="bad_name") from None
    key = fold(name)
    if guest and (key in _STAFF_NAMES or any(w in key for w in _STAFF_WORDS)):
        raise Unprocessable("that name is kept for the broadcast's staff", code="reserved_name")
    return name


MAX_NAME = 40


async def issue_token(request: Request) -> JSONResponse:
    """A token for this broadcast. Staff roles come from the host (or the operator); a viewer
    token for anyone: a guest presents the guest key they keep (same person, same user id) or
    gets a new identity, at most ``guest_identities_per_min`` a minute from one address."""
    bid = request.path_params["bid"]
    app = ctx(request)
    await app.store.get(bid)  # 404 for unknown broadcasts
    doc = await json_body(request)
    role = parse_role(doc.get("role", "viewer"))
    if role is not Role.VIEWER and not is_admin(request):
        # host, cohost and moderator tokens come from the host (or the operator)
        if bearer(request) is None:
            raise Forbidden(f"a {role.value} token needs the host's token", code="wrong_role")
        claims(request, bid).require_role(Role.HOST)
    named = is_admin(request) or _is_host(request, bid)  # else: a guest asks for themselves
    guest_key: str | None = None
    guest: Guest | None = None
    name = display_name(doc, "Guest", guest=not named)
    if not named:
        guest_key, guest = await _guest(request, bid, doc.get("guest"))
    token, c = app.signer.issue(bid, role, name, guest=guest)
    if role is not Role.VIEWER:
        await app.store.add_staff(bid, c.user_id, role)
    body = {"token": token, "role": role.value, "user_id": c.user_id, "name": name,
            "expires_at": c.expires_at * 1000}  # fmt: skip
    if guest_key is not None:
        body["guest"] = guest_key
    return JSONResponse(body, status_code=201)


def _is_host(request: Request, bid: str) -> bool:
    if bearer(request) is None:
        return False
    try:
        return claims(request, bid).role is Role.HOST
    except Problem:
        return False


async def _guest(request: Request, bid: str, presented: object) -> tuple[str, Guest]:
    """The guest's kept identity, or a new one within the per-address rate."""
    app = ctx(request)
    if isinstance(presented, str) and presented:
        try:
            return presented, app.signer.verify_guest(presented)
        except Unauthorized:
            pass  # not ours (another deployment, an old secret): a new identity, as if none
    s = app.settings
    per_min = s.guest_identities_per_min
    wait = await app.buckets.take(key(bid, f"guests:{client_address(request)}"), per_min, per_min)
    if wait:
        raise TooManyRequests(
            "too many new guests from your address; keep your guest key, or try again shortly",
            code="too_many_guests",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    fresh = app.signer.issue_guest()
    return fresh, app.signer.verify_guest(fresh)


async def end_broadcast(request: Request) -> JSONResponse:
    bid = request.path_params["bid"]
    if not is_admin(request):
        claims(request, bid).require_role(Role.HOST)
    app = ctx(request)
    broadcast = await app.store.move(bid, Status.ENDED)
    await app.hub.end(bid)
    return JSONResponse(broadcast.public())


routes = [
    Route("/api/broadcasts", create_broadcast, methods=["POST"]),
    Route("/api/broadcasts/{bid}", get_broadcast, methods=["GET"]),
    Route("/api/broadcasts/{bid}/tokens", issue_token, methods=["POST"]),
    Route("/api/broadcasts/{bid}/end", end_broadcast, methods=["POST"]),
]
