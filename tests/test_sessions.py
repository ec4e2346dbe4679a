"""WHEP sessions one client cannot abuse: caps per person, per address and per broadcast, the
connect deadline, no media before the show is live, offers capped before parsing, viewers answered
send-only. Real server, real Redis; the offers are never dialled (no candidates)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from conftest import make_settings
from core.web import forwarded_address
from jangteo.testkit.server import RunningServer, bearer, eventually, running_server

from .test_api import FINGERPRINT, WHEP_OFFER, assert_problem, offer

SDP = {"content-type": "application/sdp"}


async def _whep(server: RunningServer, bid: str, token: str, body: str = WHEP_OFFER,
                http: httpx.AsyncClient | None = None) -> httpx.Response:  # fmt: skip
    return await (http or server.http).post(
        f"{server.base_url}/whep/{bid}", content=body, headers=SDP | bearer(token)
    )


@pytest.fixture
async def tight(redis_url: str) -> AsyncIterator[RunningServer]:
    """Limits small enough to reach in a test; unconnected sessions dropped after 2 s."""
    settings = make_settings(redis_url, whep_per_user=5, whep_per_address=8, max_viewers=300,
                             connect_timeout_s=2.0)  # fmt: skip
    async with running_server(settings) as s:
        yield s


async def test_whep_before_the_show_is_live_starts_nothing(server: RunningServer) -> None:
    b = await server.create_broadcast()
    viewer = await server.token(b["id"], "viewer", "v")
    r = await _whep(server, b["id"], viewer)
    assert_problem(r, 409, "not_live")
    assert r.headers["retry-after"] == "5"
    assert server.ctx.hub.get(b["id"]) is None, "no compositor or encoder was started"


async def test_one_guest_cannot_open_sessions_without_limit(tight: RunningServer) -> None:
    """As found: one guest token opened 300 sessions in 1.1 s. Now the 6th is refused."""
    b = await tight.live_broadcast()
    guest = await tight.token(b["id"], "viewer", "guest")
    answers = await asyncio.gather(*(_whep(tight, b["id"], guest) for _ in range(12)))
    assert sorted(r.status_code for r in answers) == [201] * 5 + [429] * 7
    refused = next(r for r in answers if r.status_code == 429)
    assert_problem(refused, 429, "too_many_sessions")
    assert int(refused.headers["retry-after"]) > 0
    media = tight.ctx.hub.get(b["id"])
    assert media is not None and len(media.viewers) == 5
    # another person is not affected
    other = await tight.token(b["id"], "viewer", "other")
    assert (await _whep(tight, b["id"], other)).status_code == 201


async def test_sessions_per_address(tight: RunningServer) -> None:
    b = await tight.live_broadcast()
    tokens = [await tight.token(b["id"], "viewer", f"v{i}") for i in range(9)]
    for t in tokens[:8]:
        assert (await _whep(tight, b["id"], t)).status_code == 201
    assert_problem(await _whep(tight, b["id"], tokens[8]), 429, "too_many_sessions_from_address")
    # the same person from another address (loopback has them all) gets in
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(transport=transport, timeout=20) as elsewhere:
        assert (await _whep(tight, b["id"], tokens[8], http=elsewhere)).status_code == 201


async def test_301st_session_refused_and_unconnected_ones_reaped(redis_url: str) -> None:
    """As found: 300 sessions that never connected were all still there hours later."""
    settings = make_settings(redis_url, whep_per_user=1000, whep_per_address=1000,
                             max_viewers=300, connect_timeout_s=15.0)  # fmt: skip
    async with running_server(settings) as server:
        b = await server.live_broadcast()
        guest = await server.token(b["id"], "viewer", "guest")
        t0 = time.monotonic()
        for batch in range(6):
            answers = await asyncio.gather(*(_whep(server, b["id"], guest) for _ in range(50)))
            assert {r.status_code for r in answers} == {201}, f"batch {batch}"
        media = server.ctx.hub.get(b["id"])
        assert media is not None
        opened = time.monotonic() - t0
        assert opened < settings.connect_timeout_s, "opening them took too long"
        assert len(media.viewers) == 300
        assert_problem(await _whep(server, b["id"], guest), 429, "broadcast_full")
        # nobody ever connects: after the deadline every one of them is gone
        await eventually(lambda: not media.viewers, "unconnected sessions dropped", timeout=30)
        assert (await _whep(server, b["id"], guest)).status_code == 201


def _sections(n: int) -> str:
    head = ["v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0"]
    body = []
    for mid in range(n):
        body += ["m=video 9 UDP/TLS/RTP/SAVPF 96", "c=IN IP4 0.0.0.0", "a=ice-ufrag:Zx4q",
                 "a=ice-pwd:p7Nq2a3VfW0sE1lKm9TyUe8b", f"a=fingerprint:sha-256 {FINGERPRINT}",
                 "a=setup:actpass", f"a=mid:{mid}", "a=recvonly", "a=rtcp-mux",
                 "a=rtpmap:96 VP8/90000"]  # fmt: skip
    return "\r\n".join(head + body) + "\r\n"


@pytest.mark.parametrize("kind", ["whip", "whep"])
async def test_offer_with_215_media_sections_is_refused_before_parsing(
    server: RunningServer, kind: str
) -> None:
    """As found: a 64 KiB offer with about 215 m-sections blocked the event loop 0.3 s each."""
    b = await server.live_broadcast()
    body = _sections(215).replace("a=recvonly", "a=sendonly" if kind == "whip" else "a=recvonly")
    assert len(body.encode()) < 64 * 1024
    r = await server.http.post(f"/{kind}/{b['id']}", content=body,
                               headers=SDP | bearer(b["host_token"]))  # fmt: skip
    assert_problem(r, 400, "too_many_media_sections")
    assert server.ctx.hub.get(b["id"]) is None
    # an ordinary offer still works on the same broadcast
    assert (await _whep(server, b["id"], b["host_token"])).status_code == 201


async def test_viewer_offering_to_send_is_answered_send_only(server: RunningServer) -> None:
    """A ``sendrecv`` offer (with an extra video section) gets ``sendonly`` for our tracks and
    ``inactive`` for the rest: the server never receives, let alone decodes, a viewer's media."""
    b = await server.live_broadcast()
    viewer = await server.token(b["id"], "viewer", "v")
    body = offer("sendrecv").replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0 1 2")
    extra = _sections(1).split("t=0 0\r\n", 1)[1].replace("a=mid:0", "a=mid:2")
    r = await _whep(server, b["id"], viewer, body + extra)
    assert r.status_code == 201, r.text
    directions = [line for line in r.text.split("\r\n")
                  if line in ("a=sendonly", "a=recvonly", "a=sendrecv", "a=inactive")]  # fmt: skip
    assert directions == ["a=sendonly", "a=sendonly", "a=inactive"]
    media = server.ctx.hub.get(b["id"])
    assert media is not None
    (session,) = media.viewers.values()
    pc = session.pc  # type: ignore[union-attr]
    assert all(t.receiver.track is None or t.currentDirection in ("sendonly", "inactive")
               for t in pc.getTransceivers())  # fmt: skip


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        ("203.0.113.5", "", (), "203.0.113.5"),
        ("203.0.113.5", "1.2.3.4", (), "203.0.113.5"),  # not a proxy of ours: header ignored
        ("10.0.0.1", "1.2.3.4", ("10.0.0.1",), "1.2.3.4"),
        ("10.0.0.1", "6.6.6.6, 1.2.3.4", ("10.0.0.1",), "1.2.3.4"),  # the forged hop is ignored
        ("10.0.0.1", "1.2.3.4, 10.0.0.2", ("10.0.0.1", "10.0.0.2"), "1.2.3.4"),
        ("10.0.0.1", "", ("10.0.0.1",), "10.0.0.1"),
    ],
)
def test_client_address(peer: str, forwarded: str, trusted: tuple[str, ...], expected: str) -> None:
    assert forwarded_address(peer, forwarded, trusted) == expected
