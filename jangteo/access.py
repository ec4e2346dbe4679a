"""Who may call what: one table for every route, enforced before each handler runs.

Principals: ``anyone`` (no token needed), ``admin`` (the operator's key), the roles of a token
scoped to the broadcast in the path (``host``, ``cohost``, ``moderator``, ``viewer``), and
``owner``: the holder of the resource itself (the buyer of an order, the holder of a media
session), which the handler checks once it has the resource. A route whose principals are only
roles needs a token of this broadcast (401 without one or with a bad, expired or revoked one;
403 for another broadcast's token or a role not named). Handlers keep the checks that need the
resource (ownership, the host's "co-hosts may pin"); tests/test_access.py walks every route with
every principal against this table.

The order route is served ahead of the router (commerce/fastpath.py) and the chat socket is a
WebSocket: both check their rule themselves, the same way.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Awaitable, Callable

from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from core.problems import Forbidden, Unauthorized
from core.tokens import Claims, Role
from core.web import bearer, mark_caller

from .context import admin_key_matches, ctx

ANYONE, ADMIN, OWNER = "anyone", "admin", "owner"
HOST, COHOST, MODERATOR, VIEWER = (r.value for r in Role)
ROLES = frozenset(r.value for r in Role)
EVERY_ROLE = ROLES
STAFF_PINS = frozenset({HOST, COHOST})  # co-hosts when the host allows it (handler checks)
MODS = frozenset({HOST, MODERATOR})
BUYERS = frozenset({COHOST, MODERATOR, VIEWER})  # anyone of the broadcast but its host


@dataclasses.dataclass(frozen=True)
class Rule:
    who: frozenset[str]
    note: str = ""
    # the token may come as ?token= (a page opened from a link or a new tab: the show report);
    # pages that take one send no referrer, so it does not travel on
    query_token: bool = False

    @property
    def public(self) -> bool:
        return ANYONE in self.who


def _r(*who: str | frozenset[str], note: str = "", query_token: bool = False) -> Rule:
    names: set[str] = set()
    for w in who:
        names |= {w} if isinstance(w, str) else set(w)
    return Rule(frozenset(names), note, query_token)


B = "/api/broadcasts/{bid}"
ACCESS: dict[tuple[str, str], Rule] = {
    # broadcasts and tokens
    ("POST", "/api/broadcasts"): _r(ADMIN),
    ("GET", B): _r(ANYONE),
    ("POST", f"{B}/tokens"): _r(ANYONE, note="guests mint viewer tokens; other roles: host, admin"),
    ("POST", f"{B}/tokens/revoke"): _r(ADMIN, HOST),
    ("POST", f"{B}/end"): _r(ADMIN, HOST),
    ("POST", "/api/guests/phone"): _r(ANYONE, note="with the guest key"),
    ("POST", "/api/guests/phone/confirm"): _r(ANYONE, note="with the guest key and the code"),
    # co-hosting
    ("GET", f"{B}/layout"): _r(ANYONE),
    ("PUT", f"{B}/layout"): _r(ADMIN, HOST),
    ("GET", f"{B}/cohost"): _r(ANYONE),
    ("PUT", f"{B}/cohost"): _r(ADMIN, HOST),
    # media
    ("POST", "/whip/{bid}"): _r(HOST, COHOST),
    ("POST", "/whep/{bid}"): _r(EVERY_ROLE),
    ("DELETE", "/whip/{bid}/{sid}"): _r(HOST, OWNER),
    ("DELETE", "/whep/{bid}/{sid}"): _r(HOST, OWNER),
    ("PATCH", "/whip/{bid}/{sid}"): _r(ANYONE, note="405: no trickle ICE"),
    ("PATCH", "/whep/{bid}/{sid}"): _r(ANYONE, note="405: no trickle ICE"),
    ("OPTIONS", "/whip/{bid}"): _r(ANYONE, note="CORS preflight"),
    ("GET", "/hls/{bid}/index.m3u8"): _r(ANYONE, note="what guests watch anyway; CDNs cache it"),
    ("GET", "/hls/{bid}/{rung}/index.m3u8"): _r(ANYONE),
    ("GET", "/hls/{bid}/{rung}/{file}"): _r(ANYONE),
    ("GET", f"{B}/replay"): _r(
        ANYONE, note="whoever may watch: the replay is public like the show"
    ),
    ("GET", "/vod/{bid}/index.m3u8"): _r(ANYONE),
    ("GET", "/vod/{bid}/chapters.vtt"): _r(ANYONE),
    ("GET", "/vod/{bid}/{file}"): _r(ANYONE),
    ("POST", f"{B}/destinations"): _r(ADMIN, HOST, note="restream: the stream key is a secret"),
    ("GET", f"{B}/destinations"): _r(ADMIN, HOST),
    ("DELETE", f"{B}/destinations/{{did}}"): _r(ADMIN, HOST),
    ("OPTIONS", "/whep/{bid}"): _r(ANYONE, note="CORS preflight"),
    ("OPTIONS", "/whip/{bid}/{sid}"): _r(ANYONE, note="CORS preflight"),
    ("OPTIONS", "/whep/{bid}/{sid}"): _r(ANYONE, note="CORS preflight"),
    # chat
    ("WEBSOCKET", "/ws/{bid}"): _r(EVERY_ROLE),
    ("GET", f"{B}/chat"): _r(EVERY_ROLE),
    ("DELETE", f"{B}/chat/{{id}}"): _r(MODS),
    ("POST", f"{B}/bans"): _r(MODS, note="only of a lower rank"),
    ("DELETE", f"{B}/bans/{{uid}}"): _r(MODS),
    ("PUT", f"{B}/chat/settings"): _r(MODS),
    ("PUT", f"{B}/chat/announcement"): _r(HOST),
    # commerce
    ("GET", f"{B}/products"): _r(ANYONE),
    ("GET", "/api/fx"): _r(ANYONE, note="the operator's exchange rates, for prices shown"),
    ("PUT", f"{B}/products/{{pid}}"): _r(ADMIN, HOST),
    ("GET", f"{B}/products/{{pid}}/image"): _r(ANYONE),
    ("POST", f"{B}/products/snapshot"): _r(ADMIN, HOST),
    ("POST", f"{B}/pin"): _r(ADMIN, STAFF_PINS, note="co-hosts when the host allows it"),
    ("DELETE", f"{B}/pin"): _r(ADMIN, STAFF_PINS, note="co-hosts when the host allows it"),
    ("POST", f"{B}/orders"): _r(BUYERS),
    ("GET", f"{B}/orders"): _r(ADMIN, HOST),
    ("GET", f"{B}/stats"): _r(ADMIN, HOST),
    ("GET", "/api/merchants/{mid}/forecast"): _r(
        ADMIN, HOST, note="a host of any of the merchant's broadcasts (the handler checks)"
    ),
    ("GET", f"{B}/report"): _r(
        ADMIN, HOST, note="?token= too: the studio opens the report page in a tab", query_token=True
    ),
    ("GET", "/api/orders/{oid}"): _r(ADMIN, HOST, OWNER),
    ("POST", "/api/orders/{oid}/confirm"): _r(
        ADMIN, HOST, OWNER, note="the buyer only with the test payment provider"
    ),
    ("POST", "/api/orders/{oid}/cancel"): _r(ADMIN, HOST, OWNER),
    ("POST", "/api/payments/callback"): _r(ANYONE, note="signed by the payment provider"),
    # the operator and the pages
    ("GET", "/metrics"): _r(ADMIN),
    ("GET", "/api/nodes"): _r(ADMIN),
    ("POST", "/api/nodes/{node}/drain"): _r(ADMIN),
    ("DELETE", "/api/nodes/{node}/drain"): _r(ADMIN),
    ("GET", "/openapi.json"): _r(ANYONE),
    ("GET", "/healthz"): _r(ANYONE),
    ("GET", "/watch/{bid}"): _r(ANYONE),
    ("GET", "/replay/{bid}"): _r(ANYONE, note="the replay page; buying mints a guest token"),
    ("GET", "/screen/{bid}"): _r(ANYONE, note="the market-screen player (LL-HLS)"),
    ("GET", "/studio/{bid}"): _r(ANYONE, note="the page; its calls carry the host's token"),
    ("GET", "/static/{name}"): _r(ANYONE),
    ("GET", "/static/icons/{name}"): _r(ANYONE),
    ("GET", "/favicon.ico"): _r(ANYONE),
    ("GET", "/manifest.webmanifest"): _r(ANYONE, note="the web app manifest"),
}


def rule_for(method: str, path: str) -> Rule:
    try:
        return ACCESS[(method, path)]
    except KeyError:
        raise LookupError(f"{method} {path} has no rule in jangteo/access.py") from None


def _broadcast_of(conn: HTTPConnection, token: str) -> str:
    params = conn.path_params
    if "bid" in params:
        return str(params["bid"])
    if "mid" in params:  # a merchant's route: the token's own broadcast (the handler checks it)
        return ctx(conn).signer.verify(token).broadcast_id
    from commerce.orders import bid_of  # the one id scheme that carries its broadcast

    return bid_of(str(params["oid"]))


async def check(conn: HTTPConnection, rule: Rule) -> Claims | None:
    """Enforce ``rule``: None for a public route or the operator; else the token's claims.

    The verdict is left in the request's scope for the handler (core/web.py ``claims``)."""
    if rule.public:
        mark_caller(conn, None)
        return None
    app = ctx(conn)
    if ADMIN in rule.who and admin_key_matches(conn, app.settings.admin_key):
        mark_caller(conn, None, admin=True)
        return None
    token = bearer(conn, query=rule.query_token)
    if token is None:
        needs = "the admin key" if rule.who == {ADMIN} else "a token"
        raise Unauthorized(f"send {needs}: Authorization: Bearer …")
    if rule.who == {ADMIN}:
        raise Unauthorized("the admin key does not match", code="bad_token")
    c = await app.verifier.claims(token, _broadcast_of(conn, token))
    if c.role.value not in rule.who and OWNER not in rule.who:
        allowed = ", ".join(sorted(rule.who & ROLES)) or "the operator"
        raise Forbidden(f"role {c.role.value} may not do this (needs {allowed})")
    mark_caller(conn, c)
    return c


def guard(route: BaseRoute) -> BaseRoute:
    """``route`` with its rule enforced before its handler (one Route per method here)."""
    if not isinstance(route, Route) or route.methods is None:
        return route
    methods = route.methods - {"HEAD"}
    (method,) = methods
    rule = rule_for(method, route.path)
    endpoint: Callable[[Request], Awaitable[Response]] = route.endpoint

    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        await check(request, rule)
        return await endpoint(request)

    return Route(route.path, guarded, methods=sorted(methods), name=route.name)
