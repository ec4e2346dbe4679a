"""Chat across two server processes on one Redis: messages, bans, slow mode, viewer counts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from jangteo.testkit.server import RunningServer, start_serve_process, stop_process

from .chat_client import ChatClient

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def other_process(server: RunningServer) -> AsyncIterator[str]:
    """A second ``jangteo serve`` process sharing the first one's Redis, secret and admin key."""
    env = {
        "REDIS_URL": server.settings.redis_url or "",
        "JANGTEO_SECRET": server.settings.secret,
        "JANGTEO_ADMIN_KEY": server.settings.admin_key,
        "JANGTEO_ICE_HOST_ADDRESSES": "127.0.0.1",
        "JANGTEO_LOG_LEVEL": "warning",
    }
    proc, base = await start_serve_process(env)
    try:
        yield base
    finally:
        stop_process(proc)


async def test_messages_cross_processes(server: RunningServer, other_process: str) -> None:
    b = await server.create_broadcast()
    bid, host = b["id"], b["host_token"]
    viewer = await server.token(bid, "viewer", "b-side")
    a = await ChatClient.open(server.base_url, bid, host)
    v = await ChatClient.open(other_process, bid, viewer)
    await v.wait(lambda c: bool(c.of("viewers")))
    await a.send(type="chat", text="A에서 보냄")
    await v.wait_for("chat", lambda e: e["text"] == "A에서 보냄")
    await v.send(type="chat", text="B에서 보냄")
    await a.wait_for("chat", lambda e: e["text"] == "B에서 보냄")
    # viewer counts are summed across processes
    await a.wait_for("viewers", lambda e: e["count"] == 2, timeout=8)
    await asyncio.gather(a.aclose(), v.aclose())


async def test_bans_and_slow_mode_hold_across_processes(
    server: RunningServer, other_process: str
) -> None:
    b = await server.create_broadcast()
    bid, host = b["id"], b["host_token"]
    auth = {"Authorization": f"Bearer {host}"}
    viewer = await server.token(bid, "viewer", "troll")
    mod = await server.token(bid, "moderator", "mod", as_token=host)
    r = await server.http.put(
        f"/api/broadcasts/{bid}/chat/settings", json={"slow_mode_s": 30}, headers=auth
    )
    assert r.status_code == 200
    on_a = await ChatClient.open(server.base_url, bid, viewer)
    on_b = await ChatClient.open(other_process, bid, viewer)
    m = await ChatClient.open(other_process, bid, mod)
    await on_a.send(type="chat", text="first")
    await on_a.wait_for("chat", lambda e: e["text"] == "first")
    await on_b.send(type="chat", text="second, too soon")
    err = await on_b.wait_for("error")
    assert err["code"] == "slow_mode" and 0 < err["retry_ms"] <= 30_000
    # moderators are exempt
    for i in range(3):
        await m.send(type="chat", text=f"mod {i}")
    await m.wait(lambda c: len([e for e in c.of("chat") if e["text"].startswith("mod")]) == 3)
    # a timeout given through process A holds on process B
    uid = server.ctx.signer.verify(viewer).user_id
    r = await server.http.post(
        f"/api/broadcasts/{bid}/bans", json={"user_id": uid, "duration_s": 600}, headers=auth
    )
    assert r.status_code == 201
    await server.http.put(
        f"/api/broadcasts/{bid}/chat/settings", json={"slow_mode_s": 0}, headers=auth
    )
    await on_b.wait_for("settings", lambda e: e["slow_mode_s"] == 0)
    await on_b.send(type="chat", text="am I banned?")
    await on_b.wait(lambda c: any(e["code"] == "banned" for e in c.of("error")))
    notice = await on_b.wait_for("system")
    assert "제한" in notice["text"]
    assert not [e for e in m.of("chat") if e["text"] == "am I banned?"]
    await asyncio.gather(on_a.aclose(), on_b.aclose(), m.aclose())
