"""Broadcast and token routes (``/api/broadcasts``)."""

from __future__ import annotations

import json
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .broadcasts import Status
from .context import bearer, claims, ctx, is_admin, read_body, require_admin
from .problems import BadRequest, Forbidden
from .tokens import Role, parse_role

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
    host_name = _text(doc, "host_name", "Host", limit=60)
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


async def issue_token(request: Request) -> JSONResponse:
    bid = request.path_params["bid"]
    app = ctx(request)
    await app.store.get(bid)  # 404 for unknown broadcasts
    doc = await json_body(request)
    role = parse_role(doc.get("role", "viewer"))
    name = _text(doc, "name", "Guest", limit=60)
    if role is not Role.VIEWER and not is_admin(request):
        # host, cohost and moderator tokens come from the host (or the operator)
        if bearer(request) is None:
            raise Forbidden(f"a {role.value} token needs the host's token", code="wrong_role")
        claims(request, bid).require_role(Role.HOST)
    token, c = app.signer.issue(bid, role, name)
    if role is not Role.VIEWER:
        await app.store.add_staff(bid, c.user_id, role)
    return JSONResponse(
        {"token": token, "role": role.value, "user_id": c.user_id, "name": name,
         "expires_at": c.expires_at * 1000},
        status_code=201,
    )  # fmt: skip


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
