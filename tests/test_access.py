"""The access table (jangteo/access.py) against the running app: every route has a rule, and every
route answers every principal as its rule says -- no token, an expired token, another broadcast's
token, the operator, and each role."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets
from starlette.routing import Route, WebSocketRoute

from core.tokens import Role
from jangteo.access import ACCESS, ADMIN, ANYONE, OWNER, ROLES, rule_for
from jangteo.testkit.server import RunningServer, bearer

from .chat_client import ChatClient, ws_url
from .test_api import WHEP_OFFER, WHIP_OFFER

pytestmark = pytest.mark.timeout(120)

# the order matters: those a rule refuses go first, so a resource an allowed principal removes
# (a session, the broadcast itself) was still there when the refusals were checked
PRINCIPALS = ["none", "expired", "revoked", "other", "moderator", "cohost", "viewer", "host",
              "admin"]  # fmt: skip
SIGNED = {("POST", "/api/payments/callback")}  # a provider's signature, not a bearer token
LAST = [("POST", "/api/broadcasts/{bid}/end"), ("POST", "/api/broadcasts/{bid}/tokens/revoke")]


def served(server: RunningServer) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for route in server.app.routes:
        if isinstance(route, WebSocketRoute):
            out.add(("WEBSOCKET", route.path))
        elif isinstance(route, Route):
            out |= {(m, route.path) for m in (route.methods or set()) - {"HEAD"}}
    return out


def test_every_rule_names_known_principals() -> None:
    for (method, path), rule in ACCESS.items():
        assert rule.who, (method, path)
        assert rule.who <= ROLES | {ANYONE, ADMIN, OWNER}, (method, path)


async def test_every_route_has_a_rule_and_every_rule_a_route(server: RunningServer) -> None:
    assert served(server) == set(ACCESS)


class World:
    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.tokens: dict[str, str | None] = {}
        self.params: dict[str, str] = {}
        self.whip_sid = ""


@pytest.fixture
async def world(server: RunningServer) -> AsyncIterator[World]:
    w = World(server)
    b = await server.live_broadcast("권한")
    bid = b["id"]
    other = await server.create_broadcast("다른 방송")
    ctx = server.ctx
    # tokens issued before a revocation stop working: the first host token is one of them
    r = await server.http.post(f"/api/broadcasts/{bid}/tokens/revoke", headers=server.admin())
    host_token = r.json()["host_token"]
    w.tokens = {
        "none": None,
        "admin": server.settings.admin_key,
        "host": host_token,
        "revoked": b["host_token"],
        "cohost": await server.token(bid, "cohost", "co"),
        "moderator": await server.token(bid, "moderator", "mod"),
        "viewer": await server.token(bid, "viewer", "buyer"),
        "other": other["host_token"],
        "expired": ctx.signer.issue(bid, Role.HOST, "old", ttl_s=-60)[0],
    }
    host = bearer(host_token)
    r = await server.http.put(f"/api/broadcasts/{bid}/products/p1", headers=host,
                              json={"name": "김", "price": 1000, "stock": 100})  # fmt: skip
    assert r.status_code == 201
    assert (await server.http.put(f"/api/broadcasts/{bid}/cohost", headers=host,
                                  json={"can_pin": True})).status_code == 200  # fmt: skip
    viewer, cohost = bearer(w.tokens["viewer"] or ""), bearer(w.tokens["cohost"] or "")
    sdp = {"content-type": "application/sdp"}
    r = await server.http.post(f"/api/broadcasts/{bid}/orders", json={"product_id": "p1", "qty": 1},
                               headers=viewer | {"Idempotency-Key": "a"})  # fmt: skip
    oid = r.json()["id"]
    r = await server.http.post(f"/whep/{bid}", content=WHEP_OFFER, headers=viewer | sdp)
    assert r.status_code == 201, r.text
    whep_sid = r.headers["location"].rsplit("/", 1)[1]
    r = await server.http.post(f"/whip/{bid}", content=WHIP_OFFER, headers=cohost | sdp)
    assert r.status_code == 201, r.text
    w.whip_sid = r.headers["location"].rsplit("/", 1)[1]
    w.params = {"bid": bid, "oid": oid, "pid": "p1", "id": "1-0", "uid": "u_nobody",
                "name": "pages.css", "sid": whep_sid, "rung": "360p", "did": "dnope",
                "file": "init0.mp4", "mid": f"m_{bid}", "node": "n_nobody"}  # fmt: skip
    yield w


def _request(w: World, method: str, path: str, principal: str) -> dict[str, Any]:
    url = path
    for k, v in w.params.items():
        if k == "sid" and path.startswith("/whip"):
            v = w.whip_sid
        url = url.replace("{" + k + "}", v)
    token = w.tokens[principal]
    headers = bearer(token) if token else {}
    kw: dict[str, Any] = {"method": method, "url": url, "headers": headers}
    if path in ("/whip/{bid}", "/whep/{bid}") and method == "POST":
        kw["content"] = WHIP_OFFER if path.startswith("/whip") else WHEP_OFFER
        headers["content-type"] = "application/sdp"
    elif method in ("POST", "PUT"):
        body: dict[str, Any] = {}
        if path.endswith("/tokens"):
            body = {"role": "viewer", "name": "누구"}
        elif path.endswith("/orders"):
            body = {"product_id": "p1", "qty": 1}
            headers["Idempotency-Key"] = f"m-{principal}"
        elif path.endswith("/pin"):
            body = {"product_id": "p1"}
        kw["json"] = body
    return kw


def _routes() -> list[tuple[str, str]]:
    routes = sorted(k for k in ACCESS if k[0] != "WEBSOCKET" and k not in LAST)
    return routes + LAST


@pytest.mark.parametrize(("method", "path"), _routes(), ids=lambda v: str(v))
async def test_route_answers_each_principal_as_the_table_says(
    world: World, method: str, path: str
) -> None:
    rule = rule_for(method, path)
    http: httpx.AsyncClient = world.server.http
    owner = "cohost" if path.startswith("/whip") else "viewer"
    order = [p for p in PRINCIPALS if p != owner]
    order.insert(order.index("host"), owner)  # the owner acts after the others were refused
    for principal in order:
        r = await http.request(**_request(world, method, path, principal))
        refused = r.status_code in (401, 403)
        if (method, path) in SIGNED:
            assert r.status_code == 401, (principal, r.text)  # no bearer token is a signature
            continue
        if rule.public:
            allowed = True
        elif principal in ("none", "expired", "revoked", "other"):
            allowed = False
        elif principal == "admin":
            allowed = ADMIN in rule.who
        elif OWNER in rule.who and principal not in rule.who:
            # the viewer holds the order and the WHEP session; the co-host the WHIP session
            allowed = principal == owner
        else:
            allowed = principal in rule.who
        if method == "POST" and path.endswith("/confirm") and principal == "viewer":
            allowed = world.server.settings.payment_provider == "test"
        assert refused != allowed, f"{method} {path} as {principal}: {r.status_code} {r.text}"
        if not allowed and principal in ("none", "expired", "revoked"):
            assert r.status_code == 401, (principal, r.text)


async def test_the_chat_socket_takes_every_role_of_its_broadcast_only(world: World) -> None:
    base, bid = world.server.base_url, world.params["bid"]
    for principal in ("none", "expired", "revoked", "other", "admin"):
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(ws_url(base, bid, world.tokens[principal]))
        assert refused.value.response.status_code == 403, principal
    for role in ("host", "cohost", "moderator", "viewer"):
        c = await ChatClient.open(base, bid, world.tokens[role] or "")
        await c.wait_for("settings")
        await c.aclose()


async def test_revoked_tokens_stop_working_and_the_host_gets_a_new_one(
    server: RunningServer,
) -> None:
    b = await server.create_broadcast()
    bid = b["id"]
    mod = await server.token(bid, "moderator", "m")
    r = await server.http.post(
        f"/api/broadcasts/{bid}/tokens/revoke", headers=bearer(b["host_token"])
    )
    assert r.status_code == 200
    fresh = r.json()["host_token"]
    for old in (b["host_token"], mod):
        r = await server.http.put(f"/api/broadcasts/{bid}/chat/settings", json={"frozen": False},
                                  headers=bearer(old))  # fmt: skip
        assert r.status_code == 401 and r.json()["code"] == "token_revoked"
    r = await server.http.put(f"/api/broadcasts/{bid}/chat/settings", json={"frozen": False},
                              headers=bearer(fresh))  # fmt: skip
    assert r.status_code == 200
    assert (
        server.ctx.signer.verify(fresh).user_id == server.ctx.signer.verify(b["host_token"]).user_id
    )
    with pytest.raises(websockets.InvalidStatus):
        await websockets.connect(ws_url(server.base_url, bid, mod))
