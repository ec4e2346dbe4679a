"""``WS /ws/{bid}?token=…[&last_id=…]``: the chat socket.

Handshake: a valid token for this broadcast and an allowed ``Origin``, else the upgrade is refused
(HTTP 403). Client → server: ``{"type":"chat","text":…}``, ``{"type":"heart","count":n}``. Bad
input gets an ``error`` event; frames over 4 KiB close the socket with 1009 (the server's limit).

Inbound limits per socket: FRAME_RATE frames a second (FRAME_BURST banked; staff five times as
many), beyond that the
socket is closed with 4029 and a reason; hearts count HEART_RATE taps a second (HEART_BURST
banked) and the rest are dropped. At most ``chat_sockets_per_user`` sockets per person and
``chat_sockets_per_address`` per client address on one process (4029 on the next).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from commerce.chat_orders import try_order
from jangteo.context import client_address, ctx
from jangteo.problems import Problem
from jangteo.ratelimit import TokenBucket
from jangteo.tokens import Claims, Role

from .hub import Client
from .normalize import TextRejected, banned_hit, check_text
from .roles import Action, may

log = logging.getLogger(__name__)

MAX_HEART_TAPS = 50
CLOSE_POLICY = 1008
CLOSE_RATE_LIMITED = 4029
FRAME_RATE, FRAME_BURST = 10.0, 30.0  # a viewer's; staff (host, co-host, moderator) get 5x
STAFF_FRAME_FACTOR = 5
HEART_RATE, HEART_BURST = 20.0, 100.0


def _origin_allowed(origin: str | None, allowed: tuple[str, ...], host: str) -> bool:
    """Non-browser clients send no Origin; browsers may connect from our own pages (the same
    host) and from the configured origins (``JANGTEO_CORS_ORIGINS``, default none)."""
    if origin is None or "*" in allowed or origin in allowed:
        return True
    return bool(host) and origin in (f"https://{host}", f"http://{host}")


async def chat_socket(websocket: WebSocket) -> None:
    app = ctx(websocket)
    bid = websocket.path_params["bid"]
    origin, host = websocket.headers.get("origin"), websocket.headers.get("host", "")
    if not _origin_allowed(origin, app.settings.cors_origins, host):
        await websocket.close(CLOSE_POLICY, "origin not allowed")
        return
    token = websocket.query_params.get("token")
    try:
        if not token:
            raise Problem("a token is required")
        claims = app.signer.verify(token)
        claims.require_broadcast(bid)
        await app.revocations.check(claims)
        await app.store.get(bid)
    except Problem as exc:
        await websocket.close(CLOSE_POLICY, exc.detail[:120])
        return
    await websocket.accept()
    address = client_address(websocket)
    crowded = app.chat.connections.admit(claims.user_id, address)
    if crowded:
        await websocket.close(CLOSE_RATE_LIMITED, crowded)
        return
    try:
        await _serve(app, websocket, bid, claims, address)
    finally:
        app.chat.connections.leave(claims.user_id, address)


async def _serve(app: Any, websocket: WebSocket, bid: str, claims: Claims, address: str) -> None:
    chat = await app.chat.join(bid)

    async def send(frame: str) -> None:
        await websocket.send_text(frame)

    async def close(code: int, reason: str) -> None:
        if websocket.application_state is not WebSocketState.DISCONNECTED:
            await websocket.close(code, reason)

    client = Client(claims, send, close)
    k = 1 if claims.role is Role.VIEWER else STAFF_FRAME_FACTOR
    frames = TokenBucket(FRAME_RATE * k, FRAME_BURST * k)
    hearts = TokenBucket(HEART_RATE, HEART_BURST)
    try:
        await chat.attach(client, websocket.query_params.get("last_id"))
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            if not frames.take(time.monotonic()):
                await websocket.close(CLOSE_RATE_LIMITED, "too many messages: slow down")
                break
            text = message.get("text")
            if text is None:
                raw = message.get("bytes") or b""
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    client.offer(_error("bad_utf8", "the frame is not valid UTF-8"))
                    continue
            await _handle(app, chat, client, text, hearts, address)
    except WebSocketDisconnect:
        pass
    finally:
        await chat.detach(client)
        app.chat.release(bid)


def _error(code: str, detail: str, **extra: Any) -> str:
    return json.dumps(
        {"type": "error", "code": code, "detail": detail, **extra}, ensure_ascii=False
    )


async def _handle(
    app: Any, chat: Any, client: Client, text: str, hearts: TokenBucket, address: str
) -> None:
    try:
        msg = json.loads(text)
    except ValueError:
        client.offer(_error("bad_json", "send a JSON object"))
        return
    if not isinstance(msg, dict):
        client.offer(_error("bad_json", "send a JSON object"))
        return
    kind = msg.get("type")
    role = client.claims.role
    if kind == "heart":
        count = msg.get("count", 1)
        if (
            not isinstance(count, int)
            or isinstance(count, bool)
            or not 1 <= count <= MAX_HEART_TAPS
        ):
            client.offer(_error("bad_count", f"count must be 1..{MAX_HEART_TAPS}"))
            return
        if hearts.take(time.monotonic(), count):  # taps beyond a person's pace are dropped
            chat.tap(count)
        return
    if kind != "chat":
        client.offer(_error("bad_type", "type must be chat or heart"))
        return
    raw = msg.get("text")
    if not isinstance(raw, str):
        client.offer(_error("bad_text", "text must be a string"))
        return
    try:
        body = check_text(raw, app.settings.chat_max_chars)
    except TextRejected as exc:
        client.offer(_error(exc.code, exc.detail))
        return
    settings = await app.chat_store.settings(chat.bid, max_age=1.0)
    if banned_hit(body, list(settings.banned_words)):
        client.offer(_error("banned_word", "the message contains a word this chat does not allow"))
        return
    c = client.claims
    event = {
        "type": "chat",
        "user": {"id": c.user_id, "name": c.name, "role": c.role.value},
        "text": body,
        "ts": int(time.time() * 1000),
    }
    result = await app.chat_store.send(
        chat.bid,
        c.user_id,
        event,
        bypass_freeze=may(role, Action.BYPASS_FREEZE),
        bypass_slow=may(role, Action.BYPASS_SLOW_MODE),
        bypass_rate=may(role, Action.BYPASS_RATE_LIMIT),
    )
    if result.ok:
        # a line like "구매 2" is also an order: reserved now, confirmed by the buyer in one tap
        await try_order(app, chat.bid, c, body, address)
        return
    if not result.ok:
        detail = {
            "banned": "you cannot chat in this broadcast right now",
            "frozen": "chat is frozen",
            "slow_mode": "slow mode: wait before sending again",
            "rate_limited": "too many messages: wait a moment",
        }.get(result.code or "", "rejected")
        client.offer(_error(result.code or "rejected", detail, retry_ms=result.retry_ms))
