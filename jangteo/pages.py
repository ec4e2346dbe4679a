"""The pages (plain HTML from static/), served in the visitor's language where they have one:
``<html lang data-lang>`` is set from Accept-Language, which the pages' script follows unless
``?lang=`` or an earlier choice says otherwise (static/i18n.js).

And the headers every page goes out with. The pages run no inline script (each has its module,
static/<page>-page.js), so the Content-Security-Policy allows scripts from this origin only:

- ``connect-src``: this origin and the deployment's other nodes (http/https and ws/wss), read
  from the node registry as the page is served: a viewer page moves its WHEP session, API calls
  and chat socket to the nodes GET /api/broadcasts/{bid} lists (static/whip-whep.js). A node
  that joins after the page was loaded is not in its policy (a reload is);
- ``frame-ancestors``: the viewers' pages (watch, replay, screen) may be framed by this origin and
  by the operator's ``JANGTEO_EMBED_ORIGINS``; the studio and the merchant's report by nobody
  (with ``X-Frame-Options: DENY`` for old browsers);
- ``style-src 'unsafe-inline'``: each page keeps its ``<style>`` and a few ``style=""``;
  ``img-src https:``: a product's photo may be a URL on the merchant's own CDN;
- where hls.js plays (replay, screen) ``worker-src blob:``: it starts its transmuxing worker from
  a blob; and ``media-src data:``: it gives the text tracks it makes a ``data:,WEBVTT`` source.

:class:`SecurityHeaders` adds ``X-Content-Type-Options: nosniff`` to every answer that passes the
app's middleware (not the order route's fast path, commerce/fastpath.py, nor the 500 of an
unexpected error, which Starlette sends from outside it), and gives an HTML answer that came
without a policy (the report page, commerce/numbers_http.py) the strict one, unframed.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.nodes import nodes

from .api import node_origins

LANGS = ("ko", "en", "zh", "ja")
# pages and their scripts change with the server: browsers revalidate instead of keeping old copies
NO_CACHE = {"Cache-Control": "no-cache", "Referrer-Policy": "no-referrer"}
NOSNIFF = (b"x-content-type-options", b"nosniff")
# an origin as it may stand in a policy: nothing that could end a source list or a directive
_ORIGIN = re.compile(r"(https?)://[a-z0-9.\-\[\]:]+", re.IGNORECASE)
_SOURCES = (
    ("default-src", "'self'"),
    ("script-src", "'self'"),
    ("style-src", "'self' 'unsafe-inline'"),
    ("img-src", "'self' data: blob: https:"),
)
_LOCKED = (("object-src", "'none'"), ("base-uri", "'none'"), ("form-action", "'self'"))


def pick_language(header: str | None, default: str = "ko") -> str:
    """The best of :data:`LANGS` for an Accept-Language header (``zh-TW``, ``ja;q=0.8``, …):
    the highest weight, the first listed among equals; ``default`` when none is offered."""
    choices: list[tuple[float, int, str]] = []
    for i, part in enumerate((header or "").split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        base = tag.strip().lower().split("-")[0]
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        if base in LANGS and q > 0:
            choices.append((q, -i, base))
    return max(choices)[2] if choices else default


def connect_sources(origins: Iterable[str]) -> list[str]:
    """``'self'`` and each origin with its WebSocket form (``http://h:1`` and ``ws://h:1``),
    sorted; anything that is not a plain http(s) origin is left out."""
    found = set()
    for origin in origins:
        m = _ORIGIN.fullmatch(origin)
        if m:
            found.add(origin)
            found.add(("wss" if m.group(1).lower() == "https" else "ws") + origin[len(m[1]) :])
    return ["'self'", *sorted(found)]


def content_security_policy(
    connect: Iterable[str] = (), frame_ancestors: Iterable[str] | None = None, hls: bool = False
) -> str:
    """The policy of a page: scripts from this origin only; ``connect`` the other origins it may
    fetch from and open sockets to; ``frame_ancestors`` None for a page nobody may frame, else
    the origins besides this one that may; ``hls``: it plays HLS through hls.js."""
    framers = "'none'"
    if frame_ancestors is not None:
        allowed = sorted({o for o in frame_ancestors if _ORIGIN.fullmatch(o.replace("*.", ""))})
        framers = " ".join(["'self'", *allowed])
    directives = [
        *_SOURCES,
        ("media-src", "'self' blob: data:" if hls else "'self' blob:"),
        ("connect-src", " ".join(connect_sources(connect))),
        *([("worker-src", "'self' blob:")] if hls else []),
        *_LOCKED,
        ("frame-ancestors", framers),
    ]
    return "; ".join(f"{name} {value}" for name, value in directives)


STRICT_CSP = content_security_policy()
UNFRAMED = {"Content-Security-Policy": STRICT_CSP, "X-Frame-Options": "DENY"}
_UNFRAMED_RAW = [(k.lower().encode(), v.encode()) for k, v in UNFRAMED.items()]


async def _node_origins(request: Request) -> set[str]:
    """The deployment's nodes' origins, the registry read now (a node that came up a moment
    ago is in it); what the app knew already if Redis does not answer."""
    known = node_origins(request)
    if known is None:
        return set()
    context = getattr(request.app.state, "ctx", None)  # (set once the app has started)
    if context is not None:
        with contextlib.suppress(RedisError, OSError):
            known.learn(await nodes(context.redis))
    return set(known.allowed)


def page(
    path: Path, *, embed: Iterable[str] | None = None, hls: bool = False
) -> Callable[[Request], Awaitable[Response]]:
    """The handler of one page: its HTML, told which language the visitor's browser asks for,
    with its security headers. ``embed``: None for a page nobody may frame, else the origins
    besides this one that may frame it; ``hls``: it plays HLS through hls.js."""
    framers = None if embed is None else tuple(embed)

    async def handler(request: Request) -> Response:
        html = await asyncio.to_thread(path.read_text, "utf-8")
        lang = pick_language(request.headers.get("accept-language"))
        html = html.replace('<html lang="ko">', f'<html lang="{lang}" data-lang="{lang}">', 1)
        policy = content_security_policy(await _node_origins(request), framers, hls)
        headers = NO_CACHE | {"Vary": "Accept-Language", "Content-Security-Policy": policy}
        if framers is None:
            headers["X-Frame-Options"] = "DENY"
        return Response(html, media_type="text/html; charset=utf-8", headers=headers)

    return handler


class SecurityHeaders:
    """ASGI middleware: ``X-Content-Type-Options: nosniff`` on every HTTP answer; an HTML answer
    without a Content-Security-Policy of its own gets :data:`UNFRAMED` and no referrer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = secured(message.get("headers") or ())
            await send(message)

        await self.app(scope, receive, send_secured)


def secured(raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Response headers with nosniff, and an HTML answer's missing policy headers, added."""
    headers = list(raw)
    names = {name.lower(): value for name, value in headers}
    if b"x-content-type-options" not in names:
        headers.append(NOSNIFF)
    html = names.get(b"content-type", b"").lower().startswith(b"text/html")
    if html and b"content-security-policy" not in names:
        headers += _UNFRAMED_RAW
        if b"referrer-policy" not in names:
            headers.append((b"referrer-policy", b"no-referrer"))
    return headers
