"""``POST /api/broadcasts/{bid}/orders`` without Starlette's middleware stack.

In a flash sale this one route carries almost all the load, and the framework around it (error
and exception middleware, CORS wrapper, router, Request and Response objects) cost more CPU than
the order itself. :class:`OrderFastPath` wraps the app as plain ASGI: it answers that route
through the same :func:`commerce.http.place_order` (same checks, same problem+json errors, same
CORS answer for browsers) and hands every other request to the app untouched.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from core import metrics
from core.problems import (
    PROBLEM_JSON,
    BadRequest,
    PayloadTooLarge,
    Problem,
    UnsupportedMediaType,
)
from core.storage import unavailable
from core.web import MAX_JSON, forwarded_address

from .http import place_order

log = logging.getLogger(__name__)

ORDER_PATH = re.compile(r"/api/broadcasts/([A-Za-z0-9_-]{1,40})/orders")
_EXPOSE = b"Location, ETag, Link, Accept-Post"


class OrderFastPath:
    def __init__(
        self, app: Starlette, origins: tuple[str, ...], trusted: tuple[str, ...] = ()
    ) -> None:
        self.app = app
        self.trusted = trusted  # proxies whose X-Forwarded-For names the client
        self.any_origin = "*" in origins
        self.origins = {o.encode() for o in origins}

    def __getattr__(self, name: str) -> Any:  # state, router, …: the app's
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        m = ORDER_PATH.fullmatch(scope["path"])
        if m is None:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        try:
            body = await _read(headers, receive)
            auth = headers.get(b"authorization", b"").decode("latin-1")
            scheme, _, token = auth.partition(" ")
            status, extra, content = await place_order(
                self.app.state.ctx,
                m.group(1),
                token.strip() if scheme.lower() == "bearer" and token.strip() else None,
                headers[b"idempotency-key"].decode("latin-1")
                if b"idempotency-key" in headers
                else None,
                body,
                forwarded_address(
                    scope["client"][0] if scope.get("client") else "",
                    headers.get(b"x-forwarded-for", b"").decode("latin-1"),
                    self.trusted,
                ),
            )
            ctype = b"application/json"
        except (Problem, RedisError) as exc:
            problem = exc if isinstance(exc, Problem) else unavailable(exc, scope["path"])
            status, extra, ctype = problem.status, problem.headers, PROBLEM_JSON.encode()
            metrics.PROBLEMS.inc(status=str(status), code=problem.code)
            content = json.dumps(problem.body(scope["path"]), ensure_ascii=False).encode()
        out = [(b"content-type", ctype), (b"content-length", str(len(content)).encode()),
               (b"x-content-type-options", b"nosniff")]  # fmt: skip
        out += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
        origin = headers.get(b"origin")
        if origin is not None and (self.any_origin or origin in self.origins):
            out += [
                (b"access-control-allow-origin", b"*" if self.any_origin else origin),
                (b"access-control-expose-headers", _EXPOSE),
            ]
            if not self.any_origin:
                out.append((b"vary", b"Origin"))
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": content})


async def _read(headers: dict[bytes, bytes], receive: Receive) -> bytes:
    ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    if ctype != b"application/json":
        raise UnsupportedMediaType("send Content-Type: application/json")
    declared = headers.get(b"content-length")
    if declared is not None:
        try:
            if int(declared) > MAX_JSON:
                raise PayloadTooLarge(f"body over {MAX_JSON} bytes")
        except ValueError:
            raise BadRequest("bad Content-Length") from None
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        if len(body) > MAX_JSON:
            raise PayloadTooLarge(f"body over {MAX_JSON} bytes")
        if not message.get("more_body", False):
            break
    return bytes(body)
