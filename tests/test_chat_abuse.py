"""Chat floods and moderation rank, reproduced as they were found (real server, real Redis)."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
import websockets

from chat.ws import CLOSE_RATE_LIMITED, FRAME_BURST, HEART_BURST
from conftest import make_settings
from core.config import Settings
from jangteo.testkit.server import RunningServer, bearer, running_server

from .chat_client import ChatClient, ws_url
from .test_api import assert_problem

pytestmark = pytest.mark.timeout(60)


async def test_a_heart_flood_is_cut_and_barely_counts(server: RunningServer) -> None:
    """As found: one socket raised hearts from 0 to 100,000 in 1.5 s."""
    b = await server.create_broadcast()
    bid = b["id"]
    watcher = await ChatClient.open(server.base_url, bid, b["host_token"])
    flooder = await ChatClient.open(server.base_url, bid, await server.token(bid, "viewer", "f"))
    frame = json.dumps({"type": "heart", "count": 50})
    with contextlib.suppress(websockets.ConnectionClosed):
        for _ in range(2000):  # 100,000 taps
            await flooder.conn.send(frame)
    code, reason = await flooder.wait_closed()
    assert code == CLOSE_RATE_LIMITED and reason and "too many" in reason
    # what got through is a thumb's worth, not 100,000
    await server.ctx.chat.broadcasts[bid].flush_hearts()
    total = int(await server.ctx.redis.get(f"jt:{{{bid}}}:hearts") or 0)
    assert 0 < total <= HEART_BURST + 50
    # the broadcast goes on for everyone else
    await watcher.send(type="chat", text="계속합니다")
    await watcher.wait_for("chat", lambda e: e["text"] == "계속합니다")
    await watcher.aclose()


async def test_a_chat_frame_flood_closes_that_socket_only(server: RunningServer) -> None:
    b = await server.create_broadcast()
    bid = b["id"]
    other = await ChatClient.open(server.base_url, bid, await server.token(bid, "viewer", "o"))
    flooder = await ChatClient.open(server.base_url, bid, await server.token(bid, "viewer", "f"))
    with contextlib.suppress(websockets.ConnectionClosed):
        for i in range(int(FRAME_BURST) * 4):
            await flooder.conn.send(json.dumps({"type": "chat", "text": f"spam {i}"}))
    code, _ = await flooder.wait_closed()
    assert code == CLOSE_RATE_LIMITED
    # the per-user rate limit let a few lines through; the flood did not reach anyone beyond that
    await other.send(type="chat", text="저는 괜찮아요")
    await other.wait_for("chat", lambda e: e["text"] == "저는 괜찮아요")
    spam = [e for e in other.of("chat") if e["text"].startswith("spam")]
    assert len(spam) <= server.settings.chat_rate_messages
    await other.aclose()


async def test_one_token_cannot_hold_200_sockets(server: RunningServer) -> None:
    """As found: one token opened 200 sockets. The 6th is closed with a reason."""
    b = await server.create_broadcast()
    bid = b["id"]
    token = await server.token(bid, "viewer", "many")
    url = ws_url(server.base_url, bid, token)
    held = [await websockets.connect(url) for _ in range(server.settings.chat_sockets_per_user)]
    try:
        extra = await websockets.connect(url)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(extra.recv(), 5)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == CLOSE_RATE_LIMITED
        assert "too many connections" in closed.value.rcvd.reason
        # someone else still gets in
        v = await ChatClient.open(server.base_url, bid, await server.token(bid, "viewer", "x"))
        await v.wait_for("settings")
        await v.aclose()
    finally:
        for ws in held:
            await ws.close()
    # and once they are closed, that person may connect again
    again = await ChatClient.open(server.base_url, bid, token)
    await again.wait_for("settings")
    await again.aclose()


async def _user(server: RunningServer, bid: str, role: str) -> tuple[str, str]:
    r = await server.http.post(f"/api/broadcasts/{bid}/tokens", json={"role": role, "name": role},
                               headers=server.admin())  # fmt: skip
    doc = r.json()
    return doc["token"], doc["user_id"]


async def test_nobody_bans_the_host_and_moderators_cannot_ban_moderators(
    server: RunningServer,
) -> None:
    """As found: a moderator could ban the host (and other moderators)."""
    b = await server.create_broadcast()
    bid = b["id"]
    host = server.ctx.signer.verify(b["host_token"])
    mod, mod_id = await _user(server, bid, "moderator")
    _, mod2_id = await _user(server, bid, "moderator")
    _, cohost_id = await _user(server, bid, "cohost")
    _, viewer_id = await _user(server, bid, "viewer")

    async def ban(token: str, uid: str) -> int:
        r = await server.http.post(f"/api/broadcasts/{bid}/bans", json={"user_id": uid},
                                   headers=bearer(token))  # fmt: skip
        if r.status_code != 201:
            assert_problem(r, 403, "cannot_ban_staff")
        return r.status_code

    assert await ban(mod, host.user_id) == 403
    assert await ban(mod, mod2_id) == 403
    assert await ban(mod, cohost_id) == 403
    assert await ban(mod, viewer_id) == 201
    assert await ban(b["host_token"], mod2_id) == 201  # the host outranks everyone
    for uid in (host.user_id, mod_id, cohost_id):
        assert not await server.ctx.redis.exists(f"jt:{{{bid}}}:ban:{uid}")


@pytest.mark.parametrize("bad", ["99999999999999999999999-0", "1-99999999999999999999999",
                                 "１２-0", "-1-0", "12-x"])  # fmt: skip
async def test_out_of_range_chat_ids_are_bad_input_not_503(server: RunningServer, bad: str) -> None:
    """As found: a huge chat id reached Redis and came back as 503."""
    b = await server.create_broadcast()
    bid, host = b["id"], b["host_token"]
    r = await server.http.get(f"/api/broadcasts/{bid}/chat", params={"after": bad},
                              headers=bearer(host))  # fmt: skip
    assert_problem(r, 400)
    r = await server.http.delete(f"/api/broadcasts/{bid}/chat/{bad}", headers=bearer(host))
    assert_problem(r, 404)
    c = await ChatClient.open(server.base_url, bid, host, last_id=bad)  # resumes: a reset
    await c.wait_for("reset")
    await c.aclose()


async def test_by_default_only_our_own_pages_open_chat_from_a_browser(redis_url: str) -> None:
    """As found: CORS and the chat socket's Origin check allowed any origin by default."""
    settings = make_settings(redis_url, cors_origins=Settings().cors_origins)
    assert settings.cors_origins == ()
    async with running_server(settings) as s:
        b = await s.create_broadcast()
        with pytest.raises(websockets.InvalidStatus):
            await ChatClient.open(s.base_url, b["id"], b["host_token"],
                                  origin="https://evil.example")  # fmt: skip
        own = await ChatClient.open(s.base_url, b["id"], b["host_token"], origin=s.base_url)
        await own.wait_for("settings")
        await own.aclose()
        r = await s.http.options(f"/whep/{b['id']}", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})  # fmt: skip
        assert "access-control-allow-origin" not in r.headers
