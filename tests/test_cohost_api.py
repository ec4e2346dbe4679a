"""Co-hosting routes over a real server: the layout and whether co-hosts may pin."""

from __future__ import annotations

import json
from typing import Any

from core.broadcasts import cohost_key
from core.events import stream_key
from core.keys import text
from jangteo.testkit.server import RunningServer, bearer
from stream.cohosting import layout_key

from .test_api import WHIP_OFFER, assert_problem


async def _broadcast(server: RunningServer) -> tuple[str, str]:
    b = await server.create_broadcast()
    return b["id"], b["host_token"]


async def _last_event(server: RunningServer, bid: str) -> dict[str, object]:
    found: Any = await server.ctx.redis.xrevrange(stream_key(bid), count=1)
    ((_, fields),) = found
    event: dict[str, object] = json.loads(fields[b"e"])
    return event


async def test_layout_defaults_to_side_by_side(server: RunningServer) -> None:
    bid, _ = await _broadcast(server)
    r = await server.http.get(f"/api/broadcasts/{bid}/layout")
    assert r.status_code == 200 and r.json() == {"layout": "side_by_side"}
    assert_problem(await server.http.get("/api/broadcasts/bnope/layout"), 404)


async def test_host_sets_the_layout_it_is_stored_and_announced(server: RunningServer) -> None:
    bid, host = await _broadcast(server)
    url = f"/api/broadcasts/{bid}/layout"
    for layout in ("pip", "solo", "side_by_side", "pip"):
        r = await server.http.put(url, json={"layout": layout}, headers=bearer(host))
        assert r.status_code == 200 and r.json() == {"layout": layout}
        assert (await server.http.get(url)).json() == {"layout": layout}
        event = await _last_event(server, bid)
        assert event["type"] == "layout" and event["layout"] == layout
    assert text(await server.ctx.redis.get(layout_key(bid))) == "pip"
    # the operator may too
    r = await server.http.put(url, json={"layout": "solo"}, headers=server.admin())
    assert r.status_code == 200


async def test_layout_refusals(server: RunningServer) -> None:
    bid, host = await _broadcast(server)
    url = f"/api/broadcasts/{bid}/layout"
    for body in ({"layout": "grid"}, {"layout": 3}, {}, {"layout": None}):
        assert_problem(await server.http.put(url, json=body, headers=bearer(host)), 400,
                       "unknown_layout")  # fmt: skip
    r = await server.http.put(
        url, content=b"{", headers=bearer(host) | {"content-type": "application/json"}
    )
    assert_problem(r, 400, "bad_json")
    assert_problem(await server.http.put(url, json={"layout": "pip"}), 401, "no_token")
    assert_problem(
        await server.http.put(url, json={"layout": "pip"}, headers=bearer("x.y")), 401, "bad_token"
    )
    for role in ("cohost", "moderator", "viewer"):
        token = await server.token(bid, role, role)
        r = await server.http.put(url, json={"layout": "pip"}, headers=bearer(token))
        assert_problem(r, 403, "wrong_role")
    other_bid, other_host = await _broadcast(server)
    r = await server.http.put(url, json={"layout": "pip"}, headers=bearer(other_host))
    assert_problem(r, 403)
    r = await server.http.put(
        "/api/broadcasts/bnope/layout", json={"layout": "pip"}, headers=server.admin()
    )
    assert_problem(r, 404)
    # nothing was written by any refusal
    assert await server.ctx.redis.get(layout_key(bid)) is None
    assert (await server.http.get(url)).json() == {"layout": "side_by_side"}
    assert other_bid != bid


async def test_the_compositor_starts_in_the_stored_layout_and_follows_changes(
    server: RunningServer,
) -> None:
    bid, host = await _broadcast(server)
    url = f"/api/broadcasts/{bid}/layout"
    assert (await server.http.put(url, json={"layout": "pip"}, headers=bearer(host))).status_code
    cohost = await server.token(bid, "cohost", "크리에이터", as_token=host)
    r = await server.http.post(
        f"/whip/{bid}", content=WHIP_OFFER,
        headers=bearer(cohost) | {"content-type": "application/sdp"},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    media = server.ctx.hub.get(bid)
    assert media is not None
    try:
        assert media.compositor.layout == "pip"
        r = await server.http.put(url, json={"layout": "solo"}, headers=bearer(host))
        assert r.status_code == 200
        assert media.compositor.layout == "solo"
        r = await server.http.put(url, json={"layout": "nope"}, headers=bearer(host))
        assert_problem(r, 400, "unknown_layout")
        assert media.compositor.layout == "solo"
    finally:
        await server.ctx.hub.end(bid)


async def _product(server: RunningServer, bid: str, host: str) -> None:
    r = await server.http.put(
        f"/api/broadcasts/{bid}/products/p1",
        json={"name": "제주 감귤 5kg", "price": 29900, "stock": 10},
        headers=bearer(host),
    )
    assert r.status_code == 201, r.text


async def test_cohost_may_pin_only_when_the_host_allows_it(server: RunningServer) -> None:
    bid, host = await _broadcast(server)
    await _product(server, bid, host)
    cohost = await server.token(bid, "cohost", "크리에이터", as_token=host)
    pin_url, settings = f"/api/broadcasts/{bid}/pin", f"/api/broadcasts/{bid}/cohost"
    assert (await server.http.get(settings)).json() == {"can_pin": False}
    r = await server.http.post(pin_url, json={"product_id": "p1"}, headers=bearer(cohost))
    assert_problem(r, 403, "cohost_not_allowed")
    assert_problem(await server.http.delete(pin_url, headers=bearer(cohost)), 403,
                   "cohost_not_allowed")  # fmt: skip
    assert (await server.http.get(f"/api/broadcasts/{bid}")).json()["pinned"] is None
    # the host still pins
    r = await server.http.post(pin_url, json={"product_id": "p1"}, headers=bearer(host))
    assert r.status_code == 200
    # the host allows it
    r = await server.http.put(settings, json={"can_pin": True}, headers=bearer(host))
    assert r.status_code == 200 and r.json() == {"can_pin": True}
    assert (await server.http.get(settings)).json() == {"can_pin": True}
    assert text(await server.ctx.redis.hget(cohost_key(bid), "can_pin")) == "1"
    r = await server.http.post(
        pin_url, json={"product_id": "p1", "deal_price": 19900}, headers=bearer(cohost)
    )
    assert r.status_code == 200, r.text
    event = await _last_event(server, bid)
    assert event["type"] == "pin"
    assert (await server.http.delete(pin_url, headers=bearer(cohost))).status_code == 204
    # and takes it back
    r = await server.http.put(settings, json={"can_pin": False}, headers=bearer(host))
    assert r.status_code == 200 and r.json() == {"can_pin": False}
    r = await server.http.post(pin_url, json={"product_id": "p1"}, headers=bearer(cohost))
    assert_problem(r, 403, "cohost_not_allowed")


async def test_cohost_settings_refusals(server: RunningServer) -> None:
    bid, host = await _broadcast(server)
    url = f"/api/broadcasts/{bid}/cohost"
    for body in ({"can_pin": "yes"}, {"can_pin": 1}, {}):
        assert_problem(await server.http.put(url, json=body, headers=bearer(host)), 400,
                       "bad_can_pin")  # fmt: skip
    assert_problem(await server.http.put(url, json={"can_pin": True}), 401)
    cohost = await server.token(bid, "cohost", "c", as_token=host)
    r = await server.http.put(url, json={"can_pin": True}, headers=bearer(cohost))
    assert_problem(r, 403, "wrong_role")  # a co-host cannot grant itself the right
    r = await server.http.put(
        "/api/broadcasts/bnope/cohost", json={"can_pin": True}, headers=server.admin()
    )
    assert_problem(r, 404)
    assert_problem(await server.http.get("/api/broadcasts/bnope/cohost"), 404)
    assert await server.ctx.redis.exists(cohost_key(bid)) == 0


async def test_openapi_lists_the_cohosting_routes(server: RunningServer) -> None:
    paths = (await server.http.get("/openapi.json")).json()["paths"]
    assert {"get", "put"} <= set(paths["/api/broadcasts/{bid}/layout"])
    assert {"get", "put"} <= set(paths["/api/broadcasts/{bid}/cohost"])
    schema = paths["/api/broadcasts/{bid}/layout"]["put"]["requestBody"]["content"]
    enum = schema["application/json"]["schema"]["properties"]["layout"]["enum"]
    assert enum == ["solo", "side_by_side", "pip"]
