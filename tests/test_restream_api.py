"""Restream destinations over HTTP: what is refused (and how), the 5-destination cap, and
stream keys that never come back. Nothing here is live: no connection is ever made."""

from __future__ import annotations

from typing import Any

import pytest

from jangteo.testkit.server import RunningServer, bearer

from .test_api import assert_problem

PUBLIC = "rtmp://1.1.1.1/live2"  # an address literal: nothing to resolve, nothing dialled


async def _show(server: RunningServer) -> tuple[str, str]:
    b = await server.create_broadcast("재송출 설정")
    return b["id"], b["host_token"]


async def _add(server: RunningServer, bid: str, token: str, **doc: Any) -> Any:
    body = {"name": "YouTube"} | doc
    return await server.http.post(f"/api/broadcasts/{bid}/destinations", json=body,
                                  headers=bearer(token))  # fmt: skip


@pytest.mark.parametrize(
    "url",
    [
        "http://1.1.1.1/live/key",
        "srt://1.1.1.1:9000/live/key",
        "rtmp:/1.1.1.1/live/key",
        "rtmp://1.1.1.1/key-without-app",
        "rtmp://user:pass@1.1.1.1/live/key",
        "rtmp://1.1.1.1:notaport/live/key",
        "rtmp://1.1.1.1/live/key#x",
        "",
    ],
)
async def test_only_rtmp_and_rtmps_urls_with_a_key(server: RunningServer, url: str) -> None:
    bid, token = await _show(server)
    assert_problem(await _add(server, bid, token, url=url), 422, "bad_destination_url")
    assert (await server.http.get(f"/api/broadcasts/{bid}/destinations",
                                  headers=bearer(token))).json() == []  # fmt: skip


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "localhost", "10.1.2.3", "192.168.0.10", "169.254.169.254", "[::1]",
     "[::ffff:127.0.0.1]", "100.100.100.200", "0.0.0.0"],
)  # fmt: skip
async def test_loopback_and_private_addresses_are_refused(server: RunningServer, host: str) -> None:
    bid, token = await _show(server)
    r = await _add(server, bid, token, url=f"rtmp://{host}/live/key")
    assert_problem(r, 422, "private_destination")


async def test_a_public_ipv6_address_is_taken(server: RunningServer) -> None:
    bid, token = await _show(server)
    r = await _add(server, bid, token, url="rtmps://[2606:4700::1111]:443/live/v6-key")
    assert r.status_code == 201, r.text
    assert r.json()["url"] == "rtmps://[2606:4700::1111]/live/****"


async def test_bad_names_and_renditions(server: RunningServer) -> None:
    bid, token = await _show(server)
    r = await _add(server, bid, token, url=f"{PUBLIC}/k", name="")
    assert_problem(r, 422, "bad_destination_name")
    r = await _add(server, bid, token, url=f"{PUBLIC}/k", rendition="4k")
    assert_problem(r, 422, "bad_rendition")


async def test_keys_are_masked_and_the_sixth_is_refused(server: RunningServer) -> None:
    bid, token = await _show(server)
    keys = [f"abcd-efgh-{i:04d}-secret" for i in range(5)]
    made = []
    for i, key in enumerate(keys):
        r = await _add(server, bid, token, url=f"{PUBLIC}/{key}", name=f"platform {i}")
        assert r.status_code == 201, r.text
        doc = r.json()
        assert doc["url"] == "rtmp://1.1.1.1/live2/****" and doc["status"] == "idle"
        assert r.headers["location"] == f"/api/broadcasts/{bid}/destinations/{doc['id']}"
        made.append(doc["id"])
    r = await _add(server, bid, token, url=f"{PUBLIC}/one-too-many")
    assert_problem(r, 409, "too_many_destinations")
    listing = await server.http.get(f"/api/broadcasts/{bid}/destinations", headers=bearer(token))
    docs = listing.json()
    assert [d["id"] for d in docs] == made
    assert {d["rendition"] for d in docs} == {"360p"}  # the top rung unless asked
    assert all(set(d) >= {"id", "name", "url", "status", "since", "bytes_sent", "last_error"}
               for d in docs)  # fmt: skip
    assert not any(key in listing.text for key in keys)
    # a key with a query (some platforms') is masked whole
    await server.http.delete(f"/api/broadcasts/{bid}/destinations/{made[0]}",
                             headers=bearer(token))  # fmt: skip
    r = await _add(server, bid, token, url=f"{PUBLIC}/live_9x8y?bandwidthtest=true")
    assert r.status_code == 201 and r.json()["url"] == "rtmp://1.1.1.1/live2/****"


async def test_who_may_touch_destinations(server: RunningServer) -> None:
    bid, token = await _show(server)
    viewer = await server.token(bid, "viewer", "구경꾼")
    path = f"/api/broadcasts/{bid}/destinations"
    assert_problem(await server.http.get(path), 401)
    assert_problem(await server.http.get(path, headers=bearer(viewer)), 403)
    assert_problem(await _add(server, bid, viewer, url=f"{PUBLIC}/k"), 403)
    assert_problem(await server.http.get("/api/broadcasts/bnope/destinations",
                                         headers=server.admin()), 404)  # fmt: skip
    r = await server.http.delete(f"{path}/dnope", headers=bearer(token))
    assert_problem(r, 404)
    other, _ = await _show(server)  # a host token of one show touches nothing of another
    assert_problem(await server.http.get(f"/api/broadcasts/{other}/destinations",
                                         headers=bearer(token)), 403)  # fmt: skip
