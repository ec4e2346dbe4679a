"""What every request handler needs, hung on ``app.state.ctx``."""

from __future__ import annotations

import dataclasses
import hmac

from redis.asyncio import Redis
from starlette.requests import HTTPConnection, Request

from chat.hub import ChatHub
from chat.store import ChatStore
from commerce.catalog import Catalog
from commerce.orders import Orders
from stream.hub import MediaHub

from .broadcasts import BroadcastStore
from .config import Settings
from .problems import BadRequest, PayloadTooLarge, Unauthorized, UnsupportedMediaType
from .redislimit import RedisBuckets
from .revocation import Revocations
from .tokens import Claims, Role, TokenSigner


@dataclasses.dataclass
class AppContext:
    settings: Settings
    redis: Redis
    store: BroadcastStore
    signer: TokenSigner
    hub: MediaHub
    chat: ChatHub
    chat_store: ChatStore
    catalog: Catalog
    orders: Orders
    buckets: RedisBuckets
    revocations: Revocations


def ctx(conn: HTTPConnection) -> AppContext:
    context: AppContext = conn.app.state.ctx
    return context


def bearer(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return conn.query_params.get("token") if conn.scope["type"] == "websocket" else None


def is_admin(conn: HTTPConnection) -> bool:
    token = bearer(conn)
    key = ctx(conn).settings.admin_key
    return bool(token and key and hmac.compare_digest(token.encode(), key.encode()))


def require_admin(conn: HTTPConnection) -> None:
    if bearer(conn) is None:
        raise Unauthorized("send the admin key as a Bearer token")
    if not is_admin(conn):
        raise Unauthorized("the admin key does not match", code="bad_token")


def claims(conn: HTTPConnection, bid: str) -> Claims:
    """Verified claims of the request's token, scoped to broadcast ``bid``."""
    token = bearer(conn)
    if token is None:
        raise Unauthorized("send a token: Authorization: Bearer <token>")
    c = ctx(conn).signer.verify(token)
    c.require_broadcast(bid)
    return c


def forwarded_address(peer: str, forwarded_for: str, trusted: tuple[str, ...]) -> str:
    """The client's address: the TCP peer, or -- when the peer is a trusted proxy -- the last
    X-Forwarded-For hop that is not one of our proxies (earlier hops are the client's to forge)."""
    if peer not in trusted:
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    while hops and hops[-1] in trusted:
        hops.pop()
    return hops[-1] if hops else peer


def client_address(conn: HTTPConnection) -> str:
    peer = conn.client.host if conn.client else ""
    trusted = ctx(conn).settings.trusted_proxies
    return forwarded_address(peer, conn.headers.get("x-forwarded-for", ""), trusted)


def admin_or(conn: HTTPConnection, *roles: Role) -> Claims | None:
    """The operator (None) or a token of one of ``roles`` (default: host) for the broadcast in
    the path; 401/403 otherwise."""
    if is_admin(conn):
        return None
    c = claims(conn, conn.path_params["bid"])
    c.require_role(*(roles or (Role.HOST,)))
    return c


async def read_body(request: HTTPConnection, limit: int, content_types: tuple[str, ...]) -> bytes:
    assert isinstance(request, Request)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in content_types:
        raise UnsupportedMediaType(f"send Content-Type: {' or '.join(content_types)}")
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise PayloadTooLarge(f"body over {limit} bytes")
        except ValueError:
            raise BadRequest("bad Content-Length") from None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"body over {limit} bytes")
    return bytes(body)
