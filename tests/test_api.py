"""The HTTP surface over a real server: broadcasts, tokens, WHIP/WHEP errors, CORS, docs."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from core.problems import PROBLEM_JSON
from core.tokens import Role
from jangteo.testkit.server import RunningServer, bearer

SDP = "application/sdp"
FINGERPRINT = (
    "4F:1E:9A:0B:77:62:C3:D8:15:AE:90:3B:6C:21:F4:E7"
    ":58:0D:B2:49:9E:13:C6:7A:28:F1:84:5D:3E:A0:6B:C9"
)


def offer(direction: str) -> str:
    """A browser-like audio+video offer (no candidates: nothing is ever dialled)."""
    lines = ["v=0", "o=- 4611731400430051336 2 IN IP4 127.0.0.1", "s=-", "t=0 0",
             "a=group:BUNDLE 0 1", "a=msid-semantic: WMS stream"]  # fmt: skip
    sections = [
        ("audio", "111", ["a=rtpmap:111 opus/48000/2"]),
        ("video", "96 102", ["a=rtpmap:96 VP8/90000", "a=rtpmap:102 H264/90000",
                             "a=fmtp:102 packetization-mode=1;profile-level-id=42e01f"]),
    ]  # fmt: skip
    for mid, (kind, pts, maps) in enumerate(sections):
        lines += [
            f"m={kind} 9 UDP/TLS/RTP/SAVPF {pts}",
            "c=IN IP4 0.0.0.0",
            "a=ice-ufrag:Zx4q",
            "a=ice-pwd:p7Nq2a3VfW0sE1lKm9TyUe8b",
            f"a=fingerprint:sha-256 {FINGERPRINT}",
            "a=setup:actpass",
            f"a=mid:{mid}",
            f"a={direction}",
            "a=rtcp-mux",
            *maps,
        ]
    return "\r\n".join(lines) + "\r\n"


WHIP_OFFER = offer("sendonly")
WHEP_OFFER = offer("recvonly")


def assert_problem(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].split(";")[0] == PROBLEM_JSON
    doc: dict[str, Any] = r.json()
    assert doc["status"] == status
    assert isinstance(doc["code"], str) and doc["code"]
    assert isinstance(doc["detail"], str) and doc["detail"]
    assert doc["type"] == f"/problems/{doc['code']}"
    if code is not None:
        assert doc["code"] == code, doc
    return doc


# -- broadcasts --------------------------------------------------------------------------------


async def test_create_broadcast_needs_the_admin_key(server: RunningServer) -> None:
    r = await server.http.post("/api/broadcasts", json={"title": "t"})
    assert_problem(r, 401, "no_token")
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = await server.http.post("/api/broadcasts", json={"title": "t"}, headers=bearer("nope"))
    assert_problem(r, 401, "bad_token")
    # a valid host token is not the admin key
    b = await server.create_broadcast()
    r = await server.http.post(
        "/api/broadcasts", json={"title": "t"}, headers=bearer(b["host_token"])
    )
    assert_problem(r, 401, "bad_token")


async def test_create_broadcast(server: RunningServer) -> None:
    title = "오늘의 특가 — 제주 감귤"
    r = await server.http.post("/api/broadcasts", json={"title": title}, headers=server.admin())
    assert r.status_code == 201
    doc = r.json()
    assert doc["title"] == title
    assert doc["status"] == "scheduled"
    assert isinstance(doc["id"], str) and doc["id"]
    assert r.headers["location"] == f"/api/broadcasts/{doc['id']}"
    host = server.ctx.signer.verify(doc["host_token"])
    assert host.role is Role.HOST
    assert host.broadcast_id == doc["id"]
    # the Location answers
    got = await server.http.get(r.headers["location"])
    assert got.status_code == 200
    body = got.json()
    assert body["id"] == doc["id"]
    assert body["title"] == title
    assert body["status"] == "scheduled"
    assert body["viewers"] == 0
    for key in ("pinned", "started_at", "ended_at"):
        assert key in body
    assert body["started_at"] is None and body["ended_at"] is None


async def test_two_broadcasts_get_distinct_ids(server: RunningServer) -> None:
    a = await server.create_broadcast("하나")
    b = await server.create_broadcast("둘")
    assert a["id"] != b["id"]
    assert (await server.http.get(f"/api/broadcasts/{b['id']}")).json()["title"] == "둘"


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"json": {}}, 400, "bad_title"),
        ({"json": {"title": "   "}}, 400, "bad_title"),
        ({"json": {"title": 7}}, 400, "bad_title"),
        ({"json": {"title": "x" * 201}}, 400, "bad_title"),
        ({"json": {"title": "a\nb"}}, 400, "bad_title"),
        ({"json": ["title"]}, 400, "bad_json"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400,
         "bad_json"),
        ({"content": b"title=x", "headers": {"content-type": "text/plain"}}, 415,
         "unsupported_media_type"),
    ],
)  # fmt: skip
async def test_create_broadcast_rejects_bad_input(
    server: RunningServer, kwargs: dict[str, Any], status: int, code: str
) -> None:
    headers = server.admin() | kwargs.pop("headers", {})
    before = await server.ctx.redis.zcard("jt:broadcasts")
    r = await server.http.post("/api/broadcasts", headers=headers, **kwargs)
    assert_problem(r, status, code)
    assert await server.ctx.redis.zcard("jt:broadcasts") == before  # nothing half-written


async def test_unknown_broadcast_is_404(server: RunningServer) -> None:
    r = await server.http.get("/api/broadcasts/bnosuchthing")
    assert_problem(r, 404, "not_found")
    r = await server.http.post("/api/broadcasts/bnosuchthing/tokens", json={"role": "viewer"})
    assert_problem(r, 404)


async def test_unknown_route_is_a_problem(server: RunningServer) -> None:
    assert_problem(await server.http.get("/api/nothing-here"), 404)
    assert_problem(await server.http.delete("/api/broadcasts"), 405)


# -- tokens ------------------------------------------------------------------------------------


async def test_guest_viewer_token_without_a_token(server: RunningServer) -> None:
    b = await server.create_broadcast()
    r = await server.http.post(
        f"/api/broadcasts/{b['id']}/tokens", json={"role": "viewer", "name": "손님"}
    )
    assert r.status_code == 201
    doc = r.json()
    assert doc["role"] == "viewer"
    claims = server.ctx.signer.verify(doc["token"])
    assert claims.role is Role.VIEWER
    assert claims.broadcast_id == b["id"]
    assert claims.name == "손님"
    assert doc["expires_at"] == claims.expires_at * 1000  # epoch ms
    # the default role is viewer
    r = await server.http.post(f"/api/broadcasts/{b['id']}/tokens", json={})
    assert r.status_code == 201 and r.json()["role"] == "viewer"


@pytest.mark.parametrize("role", ["cohost", "moderator", "host"])
async def test_guest_cannot_get_a_privileged_token(server: RunningServer, role: str) -> None:
    b = await server.create_broadcast()
    url = f"/api/broadcasts/{b['id']}/tokens"
    assert_problem(await server.http.post(url, json={"role": role}), 403, "wrong_role")
    viewer = await server.token(b["id"], "viewer", "v")
    r = await server.http.post(url, json={"role": role}, headers=bearer(viewer))
    assert_problem(r, 403, "wrong_role")


@pytest.mark.parametrize("role", ["cohost", "moderator"])
async def test_host_token_issues_cohost_and_moderator(server: RunningServer, role: str) -> None:
    b = await server.create_broadcast()
    r = await server.http.post(
        f"/api/broadcasts/{b['id']}/tokens",
        json={"role": role, "name": "크리에이터"},
        headers=bearer(b["host_token"]),
    )
    assert r.status_code == 201
    claims = server.ctx.signer.verify(r.json()["token"])
    assert claims.role.value == role
    assert claims.broadcast_id == b["id"]


async def test_cohost_cannot_issue_moderator(server: RunningServer) -> None:
    b = await server.create_broadcast()
    cohost = await server.token(b["id"], "cohost", "c", as_token=b["host_token"])
    r = await server.http.post(
        f"/api/broadcasts/{b['id']}/tokens", json={"role": "moderator"}, headers=bearer(cohost)
    )
    assert_problem(r, 403, "wrong_role")


async def test_host_token_of_another_broadcast_is_forbidden(server: RunningServer) -> None:
    a = await server.create_broadcast()
    b = await server.create_broadcast()
    r = await server.http.post(
        f"/api/broadcasts/{b['id']}/tokens",
        json={"role": "cohost"},
        headers=bearer(a["host_token"]),
    )
    assert_problem(r, 403, "wrong_broadcast")


@pytest.mark.parametrize("role", [r.value for r in Role])
async def test_admin_issues_any_role(server: RunningServer, role: str) -> None:
    b = await server.create_broadcast()
    token = await server.token(b["id"], role, "운영자")
    claims = server.ctx.signer.verify(token)
    assert claims.role.value == role
    assert claims.broadcast_id == b["id"]


@pytest.mark.parametrize("role", ["admin", "HOST", "", 3, None])
async def test_bad_role_is_400(server: RunningServer, role: object) -> None:
    b = await server.create_broadcast()
    r = await server.http.post(
        f"/api/broadcasts/{b['id']}/tokens", json={"role": role}, headers=server.admin()
    )
    assert_problem(r, 400, "bad_role")


async def test_expired_or_forged_token_cannot_issue(server: RunningServer) -> None:
    b = await server.create_broadcast()
    expired, _ = server.ctx.signer.issue(b["id"], Role.HOST, "h", ttl_s=-10)
    url = f"/api/broadcasts/{b['id']}/tokens"
    r = await server.http.post(url, json={"role": "cohost"}, headers=bearer(expired))
    assert_problem(r, 401, "token_expired")
    r = await server.http.post(url, json={"role": "cohost"}, headers=bearer(expired + "x"))
    assert_problem(r, 401, "bad_token")


# -- end ---------------------------------------------------------------------------------------


async def test_end_broadcast(server: RunningServer) -> None:
    b = await server.create_broadcast()
    url = f"/api/broadcasts/{b['id']}/end"
    assert_problem(await server.http.post(url), 401, "no_token")
    viewer = await server.token(b["id"], "viewer", "v")
    assert_problem(await server.http.post(url, headers=bearer(viewer)), 403, "wrong_role")
    cohost = await server.token(b["id"], "cohost", "c")
    assert_problem(await server.http.post(url, headers=bearer(cohost)), 403, "wrong_role")
    other = await server.create_broadcast()
    assert_problem(
        await server.http.post(url, headers=bearer(other["host_token"])), 403, "wrong_broadcast"
    )
    assert (await server.http.get(f"/api/broadcasts/{b['id']}")).json()["status"] == "scheduled"

    r = await server.http.post(url, headers=bearer(b["host_token"]))
    assert r.status_code == 200
    assert r.json()["status"] == "ended"
    assert isinstance(r.json()["ended_at"], int)
    got = (await server.http.get(f"/api/broadcasts/{b['id']}")).json()
    assert got["status"] == "ended"
    assert got["ended_at"] == r.json()["ended_at"]

    again = await server.http.post(url, headers=bearer(b["host_token"]))
    assert_problem(again, 409, "broadcast_ended")


async def test_admin_can_end_a_broadcast(server: RunningServer) -> None:
    b = await server.create_broadcast()
    r = await server.http.post(f"/api/broadcasts/{b['id']}/end", headers=server.admin())
    assert r.status_code == 200 and r.json()["status"] == "ended"


# -- WHIP / WHEP errors ------------------------------------------------------------------------


async def test_whip_needs_a_publisher_token(server: RunningServer) -> None:
    b = await server.create_broadcast()
    url = f"/whip/{b['id']}"
    sdp = {"content-type": SDP}
    r = await server.http.post(url, content=WHIP_OFFER, headers=sdp)
    assert_problem(r, 401, "no_token")
    assert "www-authenticate" in r.headers
    r = await server.http.post(url, content=WHIP_OFFER, headers=sdp | bearer("garbage.token"))
    assert_problem(r, 401, "bad_token")
    r = await server.http.post(url, content=WHIP_OFFER, headers=sdp | server.admin())
    assert_problem(r, 401, "bad_token")  # the admin key is no media token
    for role in ("viewer", "moderator"):
        token = await server.token(b["id"], role, role)
        r = await server.http.post(url, content=WHIP_OFFER, headers=sdp | bearer(token))
        assert_problem(r, 403, "wrong_role")
    other = await server.create_broadcast()
    r = await server.http.post(url, content=WHIP_OFFER, headers=sdp | bearer(other["host_token"]))
    assert_problem(r, 403, "wrong_broadcast")
    assert server.ctx.hub.get(b["id"]) is None
    assert (await server.http.get(f"/api/broadcasts/{b['id']}")).json()["status"] == "scheduled"


@pytest.mark.parametrize("kind", ["whip", "whep"])
async def test_media_on_unknown_broadcast_is_404(server: RunningServer, kind: str) -> None:
    token, _ = server.ctx.signer.issue("bghost", Role.HOST, "h")
    r = await server.http.post(
        f"/{kind}/bghost",
        content=WHIP_OFFER if kind == "whip" else WHEP_OFFER,
        headers={"content-type": SDP} | bearer(token),
    )
    assert_problem(r, 404)
    assert server.ctx.hub.get("bghost") is None


@pytest.mark.parametrize("kind", ["whip", "whep"])
async def test_media_body_checks(server: RunningServer, kind: str) -> None:
    b = await server.create_broadcast()
    url = f"/{kind}/{b['id']}"
    auth = bearer(b["host_token"])
    r = await server.http.post(
        url, content=WHIP_OFFER, headers=auth | {"content-type": "text/plain"}
    )
    assert_problem(r, 415, "unsupported_media_type")
    r = await server.http.post(url, content=WHIP_OFFER, headers=auth)
    assert_problem(r, 415, "unsupported_media_type")
    big = "v=0\r\n" + "a=x-padding:" + "x" * (70 * 1024) + "\r\n"
    r = await server.http.post(url, content=big, headers=auth | {"content-type": SDP})
    assert_problem(r, 413, "too_large")


@pytest.mark.parametrize("kind", ["whip", "whep"])
async def test_media_oversized_chunked_body_is_413(server: RunningServer, kind: str) -> None:
    b = await server.create_broadcast()

    async def chunks() -> Any:
        for _ in range(80):
            yield b"a=x-padding:" + b"x" * 1000 + b"\r\n"

    r = await server.http.post(
        f"/{kind}/{b['id']}",
        content=chunks(),
        headers=bearer(b["host_token"]) | {"content-type": SDP},
    )
    assert "content-length" not in r.request.headers
    assert_problem(r, 413, "too_large")


@pytest.mark.parametrize("kind", ["whip", "whep"])
@pytest.mark.parametrize(
    "body",
    [b"hello", b"", b"v=0\r\n", b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n",
     b"\xff\xfe\x00v=0", b"v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"],
)  # fmt: skip
async def test_garbage_sdp_is_400(server: RunningServer, kind: str, body: bytes) -> None:
    b = await server.create_broadcast()
    r = await server.http.post(
        f"/{kind}/{b['id']}", content=body, headers=bearer(b["host_token"]) | {"content-type": SDP}
    )
    assert_problem(r, 400, "bad_sdp")
    status = (await server.http.get(f"/api/broadcasts/{b['id']}")).json()["status"]
    assert status == "scheduled"


@pytest.mark.parametrize(
    ("kind", "body"), [("whip", WHEP_OFFER), ("whep", WHIP_OFFER)], ids=["whip", "whep"]
)
async def test_offer_in_the_wrong_direction_is_400(
    server: RunningServer, kind: str, body: str
) -> None:
    b = await server.create_broadcast()
    r = await server.http.post(
        f"/{kind}/{b['id']}", content=body, headers=bearer(b["host_token"]) | {"content-type": SDP}
    )
    assert_problem(r, 400, "bad_sdp")


@pytest.mark.parametrize("kind", ["whip", "whep"])
async def test_bad_offer_leaves_no_media_behind(server: RunningServer, kind: str) -> None:
    b = await server.create_broadcast()
    r = await server.http.post(
        f"/{kind}/{b['id']}",
        content=b"not an offer",
        headers=bearer(b["host_token"]) | {"content-type": SDP},
    )
    assert_problem(r, 400, "bad_sdp")
    assert server.ctx.hub.get(b["id"]) is None


async def test_non_ascii_token_is_401(server: RunningServer) -> None:
    b = await server.create_broadcast()
    body = b["host_token"].partition(".")[0].encode()
    r = await server.http.post(
        f"/api/broadcasts/{b['id']}/end",
        headers=[(b"Authorization", b"Bearer " + body + b".sig\xe9")],
    )
    assert_problem(r, 401, "bad_token")


@pytest.mark.parametrize("kind", ["whip", "whep"])
async def test_media_on_an_ended_broadcast_is_409(server: RunningServer, kind: str) -> None:
    b = await server.create_broadcast()
    viewer = await server.token(b["id"], "viewer", "v")
    r = await server.http.post(f"/api/broadcasts/{b['id']}/end", headers=bearer(b["host_token"]))
    assert r.status_code == 200
    token = b["host_token"] if kind == "whip" else viewer
    r = await server.http.post(
        f"/{kind}/{b['id']}",
        content=WHIP_OFFER if kind == "whip" else WHEP_OFFER,
        headers=bearer(token) | {"content-type": SDP},
    )
    assert_problem(r, 409, "broadcast_ended")
    assert server.ctx.hub.get(b["id"]) is None
    assert (await server.http.get(f"/api/broadcasts/{b['id']}")).json()["status"] == "ended"


@pytest.mark.parametrize("kind", ["whip", "whep"])
async def test_patch_on_a_session_is_405(server: RunningServer, kind: str) -> None:
    b = await server.create_broadcast()
    r = await server.http.patch(
        f"/{kind}/{b['id']}/someSession",
        content="a=ice-ufrag:x\r\n",
        headers={"content-type": "application/trickle-ice-sdpfrag"} | bearer(b["host_token"]),
    )
    assert_problem(r, 405, "method_not_allowed")
    assert "PATCH" not in r.headers["allow"]


@pytest.mark.parametrize("kind", ["whip", "whep"])
async def test_delete_unknown_session_is_404(server: RunningServer, kind: str) -> None:
    b = await server.create_broadcast()
    r = await server.http.delete(f"/{kind}/{b['id']}/nope", headers=bearer(b["host_token"]))
    assert_problem(r, 404, "session_not_found")
    r = await server.http.delete(f"/{kind}/{b['id']}/nope")
    assert_problem(r, 401, "no_token")


# -- CORS --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/whip/{bid}", "/whep/{bid}", "/whip/{bid}/s1", "/whep/{bid}/s1"])
async def test_cors_preflight_needs_no_auth(server: RunningServer, path: str) -> None:
    b = await server.create_broadcast()
    origin = "https://studio.example"
    r = await server.http.options(
        path.format(bid=b["id"]),
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert r.status_code in (200, 204)
    assert r.headers["access-control-allow-origin"] in ("*", origin)
    methods = {m.strip() for m in r.headers["access-control-allow-methods"].split(",")}
    assert {"POST", "DELETE"} <= methods
    allowed = r.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed


async def test_plain_options_advertises_sdp(server: RunningServer) -> None:
    b = await server.create_broadcast()
    r = await server.http.options(f"/whip/{b['id']}")
    assert r.status_code == 204
    assert r.headers["accept-post"] == SDP
    assert "POST" in r.headers["allow"]


async def test_cors_exposes_location(server: RunningServer) -> None:
    r = await server.http.post(
        "/api/broadcasts",
        json={"title": "t"},
        headers=server.admin() | {"Origin": "https://studio.example"},
    )
    assert r.status_code == 201
    assert r.headers["access-control-allow-origin"] in ("*", "https://studio.example")
    assert "location" in r.headers["access-control-expose-headers"].lower()


# -- documents ---------------------------------------------------------------------------------


async def test_openapi_document(server: RunningServer) -> None:
    r = await server.http.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    expected = {
        "/api/broadcasts": "post",
        "/api/broadcasts/{bid}": "get",
        "/api/broadcasts/{bid}/tokens": "post",
        "/api/broadcasts/{bid}/end": "post",
        "/whip/{bid}": "post",
        "/whep/{bid}": "post",
        "/whip/{bid}/{sid}": "delete",
        "/whep/{bid}/{sid}": "delete",
        "/metrics": "get",
    }
    for path, method in expected.items():
        assert path in paths, path
        assert method in paths[path], (path, method)
    # and every documented path is a route the app serves
    routes = {getattr(route, "path", "") for route in server.app.routes}
    assert set(paths) <= routes, set(paths) - routes


_SAMPLE = re.compile(r"^(jangteo_[a-z0-9_]+)(\{[^}]*\})? (-?[0-9.e+]+)$")


async def test_metrics_need_the_operator_key(server: RunningServer) -> None:
    """As found: /metrics was open to anyone (the contract says operator)."""
    b = await server.create_broadcast()
    assert_problem(await server.http.get("/metrics"), 401, "no_token")
    assert_problem(await server.http.get("/metrics", headers=bearer(b["host_token"])), 401)


async def test_metrics_are_prometheus_text(server: RunningServer) -> None:
    await server.create_broadcast()
    r = await server.http.get("/metrics", headers=server.admin())
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert "version=0.0.4" in r.headers["content-type"]
    helped, typed, sampled = set(), {}, {}
    for line in r.text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            typed[name] = kind
        else:
            m = _SAMPLE.match(line)
            assert m, f"not a sample line: {line!r}"
            sampled[m.group(1)] = float(m.group(3))
    assert helped == set(typed) == set(sampled)
    for name in (
        "jangteo_broadcasts",
        "jangteo_publishers",
        "jangteo_viewers",
        "jangteo_frames_composed_total",
        "jangteo_frames_encoded_total",
        "jangteo_keyframes_forced_total",
        "jangteo_rtp_packets_out_total",
        "jangteo_rtp_bytes_out_total",
        "jangteo_viewer_skips_total",
    ):
        assert name in typed, name
    assert typed["jangteo_viewers"] == "gauge"
    assert typed["jangteo_frames_composed_total"] == "counter"
    assert sampled["jangteo_broadcasts"] == len(server.ctx.hub.broadcasts)
    assert sampled["jangteo_viewers"] == 0
    assert sampled["jangteo_publishers"] == 0


async def test_healthz(server: RunningServer) -> None:
    r = await server.http.get("/healthz")
    assert r.status_code == 200 and r.json() == {"ok": True}


async def test_orientation_is_chosen_per_broadcast(server: RunningServer) -> None:
    r = await server.http.post("/api/broadcasts", headers=server.admin(),
                               json={"title": "세로", "orientation": "upside-down"})  # fmt: skip
    assert_problem(r, 400, "bad_orientation")
    plain = (await server.create_broadcast("가로"))["id"]
    doc = (await server.http.get(f"/api/broadcasts/{plain}")).json()
    assert doc["orientation"] == "landscape"
    assert [(x["width"], x["height"]) for x in doc["renditions"]] == [(640, 360), (320, 180)]
    r = await server.http.post("/api/broadcasts", headers=server.admin(),
                               json={"title": "세로", "orientation": "portrait"})  # fmt: skip
    upright = r.json()["id"]
    doc = (await server.http.get(f"/api/broadcasts/{upright}")).json()
    assert doc["orientation"] == "portrait"
    assert [(x["width"], x["height"]) for x in doc["renditions"]] == [(360, 640), (180, 320)]
