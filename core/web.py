"""What every HTTP handler of the packages needs from a request, without the app.

The access table (jangteo/access.py) runs before every handler and leaves its verdict in the
request's scope: :func:`mark_caller` records who called (the operator, or the verified claims of
a token), and :func:`claims` / :func:`is_admin` / :func:`admin_or` read it. The client's address
honours the proxies the app trusts (``app.state.trusted_proxies``). Bodies are read size- and
type-checked; JSON bodies must be objects.

The handlers themselves get what they work on as an argument (:func:`bind`): nothing here knows
the app.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from .problems import (
    BadRequest,
    PayloadTooLarge,
    Unauthorized,
    Unprocessable,
    UnsupportedMediaType,
)
from .tokens import Claims, Role

MAX_JSON = 16 * 1024
MAX_JSON_DEPTH = 16  # our request bodies nest 3 levels at most (options in a product)
_CLAIMS, _ADMIN = "jangteo.claims", "jangteo.admin"

A = TypeVar("A")
Handler = Callable[[Request], Awaitable[Response]]


def bind(handler: Callable[[Request, A], Awaitable[Response]], app: Callable[[], A]) -> Handler:
    """``handler(request, app())`` as a Starlette endpoint (a plain function, as Route wants).

    ``app`` gives the parts the handler works on once the app has started them."""

    async def endpoint(request: Request) -> Response:
        return await handler(request, app())

    endpoint.__name__, endpoint.__doc__ = handler.__name__, handler.__doc__
    endpoint.__qualname__ = handler.__qualname__
    return endpoint


def bind_socket(
    handler: Callable[[WebSocket, A], Awaitable[None]], app: Callable[[], A]
) -> Callable[[WebSocket], Awaitable[None]]:
    async def endpoint(websocket: WebSocket) -> None:
        await handler(websocket, app())

    endpoint.__name__, endpoint.__qualname__ = handler.__name__, handler.__qualname__
    return endpoint


def bearer(conn: HTTPConnection, query: bool = False) -> str | None:
    """The request's token: ``Authorization: Bearer``, else ``?token=`` on a WebSocket or where
    ``query`` allows it (a page opened from a link)."""
    header = conn.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if conn.scope["type"] == "websocket" or query:
        return conn.query_params.get("token") or None
    return None


def mark_caller(conn: HTTPConnection, claims: Claims | None, *, admin: bool = False) -> None:
    """Record the access check's verdict for the handler (jangteo/access.py)."""
    conn.scope[_CLAIMS] = claims
    conn.scope[_ADMIN] = admin


def is_admin(conn: HTTPConnection) -> bool:
    return bool(conn.scope.get(_ADMIN))


def caller(conn: HTTPConnection) -> Claims:
    """Verified claims of the request's token, whichever broadcast it belongs to (routes not
    about one broadcast check what they need themselves)."""
    c: Claims | None = conn.scope.get(_CLAIMS)
    if c is None:
        raise Unauthorized("send a token: Authorization: Bearer <token>")
    return c


def claims(conn: HTTPConnection, bid: str) -> Claims:
    """Verified claims of the request's token, scoped to broadcast ``bid``."""
    c: Claims | None = conn.scope.get(_CLAIMS)
    if c is None:
        raise Unauthorized("send a token: Authorization: Bearer <token>")
    c.require_broadcast(bid)
    return c


def admin_or(conn: HTTPConnection, *roles: Role) -> Claims | None:
    """The operator (None) or a token of one of ``roles`` (default: host) for the broadcast in
    the path; 401/403 otherwise."""
    if is_admin(conn):
        return None
    c = claims(conn, conn.path_params["bid"])
    c.require_role(*(roles or (Role.HOST,)))
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
    trusted: tuple[str, ...] = getattr(conn.app.state, "trusted_proxies", ())
    return forwarded_address(peer, conn.headers.get("x-forwarded-for", ""), trusted)


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


async def json_body(request: Request) -> dict[str, Any]:
    return parse_json_object(await read_body(request, MAX_JSON, ("application/json",)))


def parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body is not valid JSON", code="bad_json") from None
    except RecursionError:  # nested past the parser's stack: deeper than anything we take
        raise _too_deep() from None
    if not isinstance(doc, dict):
        raise BadRequest("the body must be a JSON object", code="bad_json")
    if json_depth(doc) > MAX_JSON_DEPTH:
        raise _too_deep()
    return doc


def json_depth(doc: object) -> int:
    """How deeply arrays and objects nest in ``doc`` (a scalar is 0), without recursion."""
    deepest, todo = 0, [(doc, 1)]
    while todo:
        node, depth = todo.pop()
        children: Iterable[object]
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, depth)
        todo.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return deepest


def _too_deep() -> Unprocessable:
    return Unprocessable(f"the body nests deeper than {MAX_JSON_DEPTH} levels", code="too_deep")
