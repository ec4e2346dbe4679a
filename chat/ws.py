"""``WS /ws/{bid}?token=…[&last_id=…]``: the chat socket.

Handshake: a valid token for this broadcast and an allowed ``Origin``, else the upgrade is refused
(HTTP 403). Client → server: ``{"type":"chat","text":…}``, ``{"type":"heart","count":n}``. Bad
input gets an ``error`` event; frames over 4 KiB close the socket with 1009 (the server's limit).

Inbound limits per socket: FRAME_RATE frames a second (FRAME_BURST banked; staff five times as
many), beyond that the
socket is closed with 4029 and a reason; hearts count HEART_RATE taps a second (HEART_BURST
banked) and the rest are dropped. At most ``chat_sockets_per_user`` sockets per person and
``chat_sockets_per_address`` per client address on one process (4029 on the next). A Redis
failure closes the socket with 1011 and a reason (core/storage.py); clients resume with last_id.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from redis.exceptions import RedisError
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from core.problems import Problem
from core.ratelimit import TokenBucket
from core.revocation import Verifier
from core.storage import unavailable
from core.tokens import Claims, Role
from core.web import client_address

from .client import Client
from .frames import BadFrame, Hearts, error_event, parse
from .http import ChatApp
from .hub import BroadcastChat, ChatHub
from .normalize import TextRejected, banned_hit, check_text
from .roles import Action, may
from .wire import writer_of

log = logging.getLogger(__name__)


class SocketApp(ChatApp, Protocol):
    """What the chat socket works on, beyond the chat routes' parts."""

    chat: ChatHub
    verifier: Verifier


CLOSE_POLICY = 1008
CLOSE_UNAVAILABLE = 1011  # storage trouble (core/storage.py): reconnect with last_id
CLOSE_RATE_LIMITED = 4029
CLOSE_TRY_LATER = 1013  # this node is draining (jangteo/drain.py)
FRAME_RATE, FRAME_BURST = 10.0, 30.0  # a viewer's; staff (host, co-host, moderator) get 5x
STAFF_FRAME_FACTOR = 5
HEART_RATE, HEART_BURST = 20.0, 100.0


def _origin_allowed(origin: str | None, allowed: tuple[str, ...], host: str) -> bool:
    """Non-browser clients send no Origin; browsers may connect from our own pages (the same
    host), from the configured origins (``JANGTEO_CORS_ORIGINS``, default none) and from the
    deployment's nodes (jangteo/api.py NodeOrigins)."""
    if origin is None or "*" in allowed or origin in allowed:
        return True
    return bool(host) and origin in (f"https://{host}", f"http://{host}")


async def chat_socket(websocket: WebSocket, app: SocketApp) -> None:
    bid = websocket.path_params["bid"]
    origin, host = websocket.headers.get("origin"), websocket.headers.get("host", "")
    # the deployment's other nodes' pages too (their viewers move here when their node dies)
    nodes = getattr(websocket.app.state, "node_origins", None)
    allowed = app.settings.cors_origins + (tuple(nodes.allowed) if nodes is not None else ())
    if not _origin_allowed(origin, allowed, host):
        await websocket.close(CLOSE_POLICY, "origin not allowed")
        return
    drain = getattr(websocket.app.state, "drain", None)  # jangteo/drain.py
    if drain is not None and drain.active:  # come back through another node
        await websocket.accept()
        await websocket.close(CLOSE_TRY_LATER, "node draining")
        return
    token = websocket.query_params.get("token")
    try:
        if not token:
            raise Problem("a token is required")
        claims = await app.verifier.claims(token, bid)
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
    except RedisError as exc:  # the client reconnects with its last id: nothing is lost
        if websocket.application_state is not WebSocketState.DISCONNECTED:
            await websocket.close(CLOSE_UNAVAILABLE, unavailable(exc, websocket.url.path).detail)
    finally:
        app.chat.connections.leave(claims.user_id, address)


async def _serve(
    app: SocketApp, websocket: WebSocket, bid: str, claims: Claims, address: str
) -> None:
    chat = await app.chat.join(bid)

    async def send(frame: str) -> None:
        await websocket.send_text(frame)

    async def close(code: int, reason: str) -> None:
        if websocket.application_state is not WebSocketState.DISCONNECTED:
            await websocket.close(code, reason)

    # the protocol behind the socket (uvicorn passes its own bound receive; send may be wrapped)
    wire = writer_of(getattr(websocket, "_receive", None)) if app.settings.chat_wire else None
    client = Client(claims, send, close, wire)
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
                    client.offer(error_event("bad_utf8", "the frame is not valid UTF-8"))
                    continue
            await _handle(app, chat, client, text, hearts, address)
    except WebSocketDisconnect:
        pass
    finally:
        await chat.detach(client)
        app.chat.release(bid)


async def _handle(
    app: SocketApp, chat: BroadcastChat, client: Client, text: str, hearts: TokenBucket,
    address: str,
) -> None:  # fmt: skip
    try:
        frame = parse(text)
    except BadFrame as exc:
        client.offer(error_event(exc.code, exc.detail))
        return
    if isinstance(frame, Hearts):
        if hearts.take(time.monotonic(), frame.count):  # taps beyond a person's pace are dropped
            chat.tap(frame.count)
        return
    try:
        body = check_text(frame.text, app.settings.chat_max_chars)
    except TextRejected as exc:
        client.offer(error_event(exc.code, exc.detail))
        return
    await _say(app, chat, client, body, address)


async def _say(
    app: SocketApp, chat: BroadcastChat, client: Client, body: str, address: str
) -> None:
    role = client.claims.role
    settings = await app.chat_store.settings(chat.bid, max_age=1.0)
    if banned_hit(body, list(settings.banned_words)):
        client.offer(
            error_event("banned_word", "the message contains a word this chat does not allow")
        )
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
        # a line like "구매 2" may also be an order (commerce registers the hook)
        if app.chat.on_line is not None:
            await app.chat.on_line(chat.bid, c, body, address)
        return
    if not result.ok:
        detail = {
            "banned": "you cannot chat in this broadcast right now",
            "frozen": "chat is frozen",
            "slow_mode": "slow mode: wait before sending again",
            "rate_limited": "too many messages: wait a moment",
        }.get(result.code or "", "rejected")
        client.offer(error_event(result.code or "rejected", detail, retry_ms=result.retry_ms))
