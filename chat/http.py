"""Chat moderation and history over HTTP (contract: ../shared/API.md, Chat)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from core.broadcasts import BroadcastStore
from core.config import Settings
from core.events import publish, stream_key
from core.problems import BadRequest, Forbidden, NotFound, Unprocessable
from core.tokens import Claims
from core.web import bind, claims, json_body

from .entries import decode_entry, id_key
from .hub import HISTORY
from .normalize import TextRejected, check_text
from .roles import Action, outranks, require
from .store import ChatSettings, ChatStore

MIN_TIMEOUT_S = 10
MAX_TIMEOUT_S = 14 * 24 * 3600
MAX_SLOW_MODE_S = 3600
MAX_BANNED_WORDS = 500


class ChatApp(Protocol):
    """What the chat routes work on (the app's context satisfies it)."""

    settings: Settings
    redis: Redis
    store: BroadcastStore
    chat_store: ChatStore


def _staff(request: Request, action: Action) -> Claims:
    bid = request.path_params["bid"]
    c = claims(request, bid)
    require(c.role, action)
    return c


async def history(request: Request, app: ChatApp) -> JSONResponse:
    bid = request.path_params["bid"]
    c = claims(request, bid)
    after = request.query_params.get("after")
    try:
        limit = min(500, max(1, int(request.query_params.get("limit", HISTORY))))
        if after:
            id_key(after)
    except ValueError:
        raise BadRequest("after must be a stream id and limit an integer") from None
    if after:
        raw: Any = await app.redis.xrange(stream_key(bid), f"({after}", "+", count=limit)
        events = [decode_entry(i, f) for i, f in raw]
    else:
        raw = await app.redis.xrevrange(stream_key(bid), count=limit)
        events = [decode_entry(i, f) for i, f in reversed(raw)]
    events = [e for e in events if e.get("to") in (None, c.user_id)]
    gone = await app.chat_store.deleted(bid, [e["sid"] for e in events if e["type"] == "chat"])
    out = [{k: v for k, v in e.items() if k != "to"} for e in events if e["sid"] not in gone]
    return JSONResponse({"events": out, "deleted": sorted(gone)})


async def delete_message(request: Request, app: ChatApp) -> Response:
    _staff(request, Action.DELETE)
    bid, mid = request.path_params["bid"], request.path_params["id"]
    try:
        id_key(mid)
    except ValueError:
        raise NotFound(f"no chat message {mid!r}") from None
    if not await app.chat_store.mark_deleted(bid, mid):
        if mid in await app.chat_store.deleted(bid, [mid]):
            return Response(status_code=204)  # already deleted: idempotent
        raise NotFound(f"no chat message {mid!r} in history")
    await publish(app.redis, bid, {"type": "deleted", "id": mid, "ts": _now()})
    return Response(status_code=204)


async def ban(request: Request, app: ChatApp) -> JSONResponse:
    c = _staff(request, Action.BAN)
    bid = request.path_params["bid"]
    doc = await json_body(request)
    uid = doc.get("user_id")
    if not isinstance(uid, str) or not uid or len(uid) > 64:
        raise BadRequest("user_id must be a string", code="bad_user_id")
    if uid == c.user_id:
        raise Unprocessable("you cannot ban yourself", code="self_ban")
    target = await app.store.role_of(bid, uid)
    if not outranks(c.role, target):
        raise Forbidden(f"a {c.role.value} cannot ban the {target.value}", code="cannot_ban_staff")
    duration = doc.get("duration_s")
    if duration is not None and (
        not isinstance(duration, int)
        or isinstance(duration, bool)
        or not MIN_TIMEOUT_S <= duration <= MAX_TIMEOUT_S
    ):
        raise Unprocessable(
            f"duration_s must be {MIN_TIMEOUT_S}..{MAX_TIMEOUT_S} s (or absent for a ban)",
            code="bad_duration",
        )
    await app.chat_store.ban(bid, uid, duration)
    text = f"{duration}초 동안 채팅이 제한되었습니다" if duration else "채팅이 금지되었습니다"
    await publish(app.redis, bid, {"type": "system", "text": text, "to": uid, "ts": _now()})
    return JSONResponse({"user_id": uid, "duration_s": duration}, status_code=201)


async def unban(request: Request, app: ChatApp) -> Response:
    _staff(request, Action.BAN)
    await app.chat_store.unban(request.path_params["bid"], request.path_params["uid"])
    return Response(status_code=204)


async def put_settings(request: Request, app: ChatApp) -> JSONResponse:
    _staff(request, Action.SETTINGS)
    bid = request.path_params["bid"]
    doc = await json_body(request)
    current = await app.chat_store.settings(bid)
    slow = doc.get("slow_mode_s", current.slow_mode_s)
    frozen = doc.get("frozen", current.frozen)
    words = doc.get("banned_words", list(current.banned_words))
    if not isinstance(slow, int) or isinstance(slow, bool) or not 0 <= slow <= MAX_SLOW_MODE_S:
        raise Unprocessable(f"slow_mode_s must be 0..{MAX_SLOW_MODE_S}", code="bad_slow_mode")
    if not isinstance(frozen, bool):
        raise BadRequest("frozen must be true or false", code="bad_frozen")
    if (
        not isinstance(words, list)
        or len(words) > MAX_BANNED_WORDS
        or not all(isinstance(w, str) and 0 < len(w.strip()) <= 50 for w in words)
    ):
        raise BadRequest(
            f"banned_words must be a list of at most {MAX_BANNED_WORDS} words", code="bad_words"
        )
    new = ChatSettings(slow, frozen, tuple(w.strip() for w in words), current.announcement)
    await app.chat_store.put_settings(bid, new)
    await publish(app.redis, bid, {"type": "settings", **new.public(), "ts": _now()})
    return JSONResponse(new.public() | {"banned_words": list(new.banned_words)})


async def put_announcement(request: Request, app: ChatApp) -> JSONResponse:
    _staff(request, Action.ANNOUNCE)
    bid = request.path_params["bid"]
    doc = await json_body(request)
    text = doc.get("text")
    if text is None:
        announcement = None
    else:
        if not isinstance(text, str):
            raise BadRequest("text must be a string", code="bad_text")
        try:
            announcement = check_text(text, app.settings.chat_max_chars)
        except TextRejected as exc:
            raise BadRequest(exc.detail, code=exc.code) from None
    current = await app.chat_store.settings(bid)
    new = ChatSettings(current.slow_mode_s, current.frozen, current.banned_words, announcement)
    await app.chat_store.put_settings(bid, new)
    await publish(app.redis, bid, {"type": "announcement", "text": announcement, "ts": _now()})
    return JSONResponse({"text": announcement})


def _now() -> int:
    return int(time.time() * 1000)


def routes(app: Callable[[], ChatApp]) -> list[BaseRoute]:
    return [
        Route("/api/broadcasts/{bid}/chat", bind(history, app), methods=["GET"]),
        Route("/api/broadcasts/{bid}/chat/settings", bind(put_settings, app), methods=["PUT"]),
        Route(
            "/api/broadcasts/{bid}/chat/announcement", bind(put_announcement, app), methods=["PUT"]
        ),
        Route("/api/broadcasts/{bid}/chat/{id}", bind(delete_message, app), methods=["DELETE"]),
        Route("/api/broadcasts/{bid}/bans", bind(ban, app), methods=["POST"]),
        Route("/api/broadcasts/{bid}/bans/{uid}", bind(unban, app), methods=["DELETE"]),
    ]
