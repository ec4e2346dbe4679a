"""Chat on a real redis-server: history, gap-free resume, moderation, hearts, limits."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from typing import Any

import pytest
import websockets

from core.events import publish, stream_key
from jangteo.testkit.server import RunningServer, eventually

from .chat_client import ChatClient, ws_url

pytestmark = pytest.mark.timeout(60)


async def _broadcast(server: RunningServer) -> tuple[str, str]:
    b = await server.create_broadcast()
    return b["id"], b["host_token"]


def _texts(c: ChatClient) -> list[str]:
    return [e["text"] for e in c.of("chat")]


async def test_join_gets_history_in_order_with_roles(server: RunningServer) -> None:
    bid, host = await _broadcast(server)
    h = await ChatClient.open(server.base_url, bid, host)
    for i in range(3):
        await h.send(type="chat", text=f"안녕하세요 {i}")
    await h.wait(lambda c: len(c.of("chat")) == 3)
    viewer = await server.token(bid, "viewer", "민지")
    v = await ChatClient.open(server.base_url, bid, viewer)
    await v.wait(lambda c: len(c.of("chat")) == 3)
    assert _texts(v) == ["안녕하세요 0", "안녕하세요 1", "안녕하세요 2"]
    first = v.of("chat")[0]
    assert first["user"]["role"] == "host" and first["user"]["name"] == "Host"
    assert first["id"] == first["sid"]
    assert v.of("settings")[0] == {"type": "settings", "slow_mode_s": 0, "frozen": False}
    await v.send(type="chat", text="사이즈 있나요?")
    got = await h.wait_for("chat", lambda e: e["text"] == "사이즈 있나요?")
    assert got["user"] == {"id": got["user"]["id"], "name": "민지", "role": "viewer"}
    await asyncio.gather(h.aclose(), v.aclose())


async def test_resume_after_disconnect_gets_every_event_once_in_order(
    server: RunningServer,
) -> None:
    bid, host = await _broadcast(server)
    viewer = await server.token(bid, "viewer", "v")
    v = await ChatClient.open(server.base_url, bid, viewer)
    h = await ChatClient.open(server.base_url, bid, host)
    await h.send(type="chat", text="before")
    await v.wait_for("chat", lambda e: e["text"] == "before")
    last = v.events[-1]["sid"]
    await v.aclose()
    # 50 events while the viewer is away: host chat and system events from the rest of the product
    for i in range(50):
        if i % 5 == 0:
            await publish(server.ctx.redis, bid, {"type": "stock", "product_id": "p1", "left": i})
        else:
            await h.send(type="chat", text=f"m{i}")
    await h.wait(lambda c: len([e for e in c.events if e["type"] in ("chat", "stock")]) >= 51)
    back = await ChatClient.open(server.base_url, bid, viewer, last_id=last)
    await back.wait(lambda c: len([e for e in c.events if e["type"] in ("chat", "stock")]) >= 50)
    await h.send(type="chat", text="after")
    await back.wait_for("chat", lambda e: e["text"] == "after")
    await h.wait_for("chat", lambda e: e["text"] == "after")
    got = [e for e in back.events if e["type"] in ("chat", "stock")]
    # exactly what the client that never left saw after that point, in the same order
    seen = [
        e
        for e in h.events
        if e["type"] in ("chat", "stock") and e["text" if "text" in e else "type"] != "before"
    ]
    assert [e["sid"] for e in got] == [e["sid"] for e in seen]
    assert len(got) == 51 and len({e["sid"] for e in got}) == 51
    assert sorted(e.get("text") or f"stock{e['left']}" for e in got) == sorted(
        [f"stock{i}" if i % 5 == 0 else f"m{i}" for i in range(50)] + ["after"]
    )
    assert not back.of("reset")
    await asyncio.gather(h.aclose(), back.aclose())


async def test_resume_from_a_trimmed_point_resets(server: RunningServer) -> None:
    bid, host = await _broadcast(server)
    h = await ChatClient.open(server.base_url, bid, host)
    await h.send(type="chat", text="old")
    old = await h.wait_for("chat")
    for i in range(3):
        await h.send(type="chat", text=f"new{i}")
    await h.wait(lambda c: len(c.of("chat")) == 4)
    newest = h.of("chat")[1]["sid"]
    await server.ctx.redis.xtrim(
        stream_key(bid), minid=newest, approximate=False
    )  # "old" falls out of history
    c = await ChatClient.open(server.base_url, bid, host, last_id=old["sid"])
    await c.wait(lambda c: len(c.of("chat")) == 3)
    assert c.events[0] == {"type": "reset"}
    assert _texts(c) == ["new0", "new1", "new2"]
    # an id that never existed (e.g. the stream was lost) resets too
    d = await ChatClient.open(server.base_url, bid, host, last_id="1-0")
    await d.wait(lambda c: len(c.of("chat")) == 3)
    assert d.events[0] == {"type": "reset"}
    await asyncio.gather(h.aclose(), c.aclose(), d.aclose())


async def test_deleted_message_disappears_for_everyone(server: RunningServer) -> None:
    bid, host = await _broadcast(server)
    viewer = await server.token(bid, "viewer", "v")
    v = await ChatClient.open(server.base_url, bid, viewer)
    await v.send(type="chat", text="spam spam")
    msg = await v.wait_for("chat")
    r = await server.http.delete(
        f"/api/broadcasts/{bid}/chat/{msg['id']}", headers={"Authorization": f"Bearer {host}"}
    )
    assert r.status_code == 204
    gone = await v.wait_for("deleted")
    assert gone["id"] == msg["id"]
    late = await ChatClient.open(server.base_url, bid, viewer)
    await late.wait(lambda c: bool(c.of("viewers")))
    await late.send(type="chat", text="marker")
    await late.wait_for("chat", lambda e: e["text"] == "marker")
    assert "spam spam" not in _texts(late)
    page = (
        await server.http.get(
            f"/api/broadcasts/{bid}/chat", headers={"Authorization": f"Bearer {viewer}"}
        )
    ).json()
    assert msg["id"] in page["deleted"] and all(
        e.get("text") != "spam spam" for e in page["events"]
    )
    await asyncio.gather(v.aclose(), late.aclose())


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("hi\x07there", "control_characters"),
        ("가" * 201, "too_long"),
    ],
)
async def test_bad_text_gets_an_error_event(server: RunningServer, text: str, code: str) -> None:
    bid, host = await _broadcast(server)
    c = await ChatClient.open(server.base_url, bid, host)
    await c.send(type="chat", text=text)
    err = await c.wait_for("error")
    assert err["code"] == code
    assert not c.of("chat")
    await c.aclose()


async def test_bad_frames_get_errors_and_oversize_closes_1009(server: RunningServer) -> None:
    bid, host = await _broadcast(server)
    c = await ChatClient.open(server.base_url, bid, host)
    await c.conn.send("not json")
    assert (await c.wait_for("error"))["code"] == "bad_json"
    await c.conn.send(b"\xff\xfe")
    await c.wait(lambda c: any(e["code"] == "bad_utf8" for e in c.of("error")))
    await c.send(type="chat", text="x" * 5000)
    code, _ = await c.wait_closed()
    assert code == 1009
    # the server is fine
    ok = await ChatClient.open(server.base_url, bid, host)
    await ok.send(type="chat", text="still here")
    await ok.wait_for("chat", lambda e: e["text"] == "still here")
    await ok.aclose()


async def test_banned_words_match_across_case_width_and_spaces(server: RunningServer) -> None:
    bid, host = await _broadcast(server)
    auth = {"Authorization": f"Bearer {host}"}
    r = await server.http.put(
        f"/api/broadcasts/{bid}/chat/settings",
        json={"banned_words": ["바보", "scam"]},
        headers=auth,
    )
    assert r.status_code == 200
    c = await ChatClient.open(server.base_url, bid, host)
    for bad in ("바 보", "너 바보야", "ＳＣＡＭ", "s c a m!", "SCam"):
        await c.send(type="chat", text=bad)
    await c.send(type="chat", text="좋은 상품이네요")
    await c.wait_for("chat")
    await c.wait(lambda c: len(c.of("error")) == 5)
    assert {e["code"] for e in c.of("error")} == {"banned_word"}
    assert _texts(c) == ["좋은 상품이네요"]
    await c.aclose()


async def test_handshake_needs_a_valid_token_and_allowed_origin(server: RunningServer) -> None:
    bid, host = await _broadcast(server)
    for token in (None, "garbage.token"):
        with pytest.raises(websockets.exceptions.InvalidStatus) as err:
            await ChatClient.open(server.base_url, bid, token or "")
        assert err.value.response.status_code == 403
    other, _ = await _broadcast(server)
    with pytest.raises(websockets.exceptions.InvalidStatus):
        await ChatClient.open(server.base_url, other, host)  # token of another broadcast


async def test_rate_limit_per_user_host_exempt(server: RunningServer) -> None:
    bid, host = await _broadcast(server)
    viewer = await server.token(bid, "viewer", "v")
    v = await ChatClient.open(server.base_url, bid, viewer)
    for i in range(7):
        await v.send(type="chat", text=f"v{i}")
    await v.wait(lambda c: len(c.of("chat")) + len(c.of("error")) == 7)
    assert len(v.of("chat")) == 5
    assert {e["code"] for e in v.of("error")} == {"rate_limited"}
    assert all(e["retry_ms"] > 0 for e in v.of("error"))
    h = await ChatClient.open(server.base_url, bid, host)
    for i in range(10):
        await h.send(type="chat", text=f"h{i}")
    await h.wait(lambda c: len([t for t in _texts(c) if t.startswith("h")]) == 10)
    assert not h.of("error")
    await asyncio.gather(v.aclose(), h.aclose())


async def test_private_events_reach_only_their_user(server: RunningServer) -> None:
    bid, _ = await _broadcast(server)
    a_tok = await server.token(bid, "viewer", "a")
    b_tok = await server.token(bid, "viewer", "b")
    a = await ChatClient.open(server.base_url, bid, a_tok)
    b = await ChatClient.open(server.base_url, bid, b_tok)
    a_id = server.ctx.signer.verify(a_tok).user_id
    await publish(server.ctx.redis, bid, {"type": "system", "text": "only a", "to": a_id})
    await publish(server.ctx.redis, bid, {"type": "system", "text": "everyone"})
    await a.wait(lambda c: len(c.of("system")) == 2)
    await b.wait_for("system", lambda e: e["text"] == "everyone")
    assert [e["text"] for e in b.of("system")] == ["everyone"]
    assert "to" not in a.of("system")[0]
    await asyncio.gather(a.aclose(), b.aclose())


async def test_hearts_add_up_exactly(server: RunningServer) -> None:
    bid, _ = await _broadcast(server)
    tokens = [await server.token(bid, "viewer", f"v{i}") for i in range(100)]
    clients = await asyncio.gather(*(ChatClient.open(server.base_url, bid, t) for t in tokens))
    watcher = clients[0]

    async def tap(c: ChatClient) -> None:  # a tapping thumb, batched as the page does
        for _ in range(10):
            await c.send(type="heart", count=10)

    await asyncio.gather(*(tap(c) for c in clients))
    await watcher.wait_for("hearts", lambda e: e["total"] == 10_000, timeout=20)
    totals = [e["total"] for e in watcher.of("hearts")]
    assert totals == sorted(totals) and totals[-1] == 10_000
    assert len(totals) < 200  # aggregated per window, not one event per tap
    stored = await server.ctx.redis.get(f"jt:{{{bid}}}:hearts")
    assert stored is not None and int(stored) == 10_000
    await asyncio.gather(*(c.aclose() for c in clients))


EXPECTED = {
    # role: (delete, ban, settings)
    "host": (True, True, True),
    "moderator": (True, True, True),
    "cohost": (False, False, False),
    "viewer": (False, False, False),
}


@pytest.mark.parametrize("role", sorted(EXPECTED))
async def test_role_matrix(server: RunningServer, role: str) -> None:
    bid, host = await _broadcast(server)
    token = host if role == "host" else await server.token(bid, role, role, as_token=host)
    auth = {"Authorization": f"Bearer {token}"}
    viewer = await server.token(bid, "viewer", "target")
    v = await ChatClient.open(server.base_url, bid, viewer)
    await v.send(type="chat", text="hello")
    msg = await v.wait_for("chat")
    uid = msg["user"]["id"]
    r_del = await server.http.delete(f"/api/broadcasts/{bid}/chat/{msg['id']}", headers=auth)
    r_ban = await server.http.post(
        f"/api/broadcasts/{bid}/bans", json={"user_id": uid, "duration_s": 60}, headers=auth
    )
    r_set = await server.http.put(
        f"/api/broadcasts/{bid}/chat/settings", json={"slow_mode_s": 5}, headers=auth
    )
    allowed = EXPECTED[role]
    for r, ok in zip((r_del, r_ban, r_set), allowed, strict=True):
        if ok:
            assert r.status_code in (200, 201, 204), r.text
        else:
            assert r.status_code == 403
            assert r.headers["content-type"].startswith("application/problem+json")
    await v.aclose()


async def test_stalled_client_is_cut_and_the_healthy_one_keeps_receiving(
    server: RunningServer,
) -> None:
    bid, host = await _broadcast(server)
    # a raw client that completes the handshake and then never reads
    url = ws_url(server.base_url, bid, host)
    host_port = url.split("//")[1].split("/")[0]
    h, p = host_port.split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (h, int(p)))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
    path = url.split(host_port)[1]
    writer.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    assert (await reader.readexactly(12)).startswith(b"HTTP/1.1 101")
    # from here on it never reads again
    healthy = await ChatClient.open(server.base_url, bid, host)
    await healthy.wait(lambda c: bool(c.of("viewers")))  # attached (after the raw one)
    chat = server.ctx.chat.broadcasts[bid]
    assert len(chat.clients) == 2
    payload = "가나다라마바사아자차카타파하" * 10
    redis = server.ctx.redis
    total = 0
    while chat.dropped_slow == 0:
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(500):
                pipe.xadd(
                    stream_key(bid),
                    {"e": json.dumps({"type": "system", "text": f"{total + i} {payload}"})},
                )
            await pipe.execute()
        total += 500
        await healthy.wait(_systems_at_least(total), timeout=20)
        assert total < 200_000, "the stalled client was never cut"
    assert len(chat.clients) == 1
    await redis.xadd(stream_key(bid), {"e": json.dumps({"type": "system", "text": "last"})})
    await healthy.wait_for("system", lambda e: e["text"] == "last")
    texts = [e["text"] for e in healthy.of("system")]
    assert len(texts) == total + 1  # nothing lost or repeated for the healthy client
    writer.close()
    await healthy.aclose()


def _systems_at_least(n: int) -> Callable[[ChatClient], bool]:
    return lambda c: len(c.of("system")) >= n


async def test_reader_survives_redis_dropping_its_connection(server: RunningServer) -> None:
    bid, host = await _broadcast(server)
    c = await ChatClient.open(server.base_url, bid, host)
    await c.send(type="chat", text="before")
    await c.wait_for("chat", lambda e: e["text"] == "before")
    # Redis drops every normal client connection, the chat reader's blocking XREAD included
    await server.ctx.redis.execute_command(  # type: ignore[no-untyped-call]
        "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"
    )
    for i in range(5):
        await publish(server.ctx.redis, bid, {"type": "system", "text": f"during {i}"})
    await c.wait(lambda c: len(c.of("system")) == 5)
    assert [e["text"] for e in c.of("system")] == [f"during {i}" for i in range(5)]
    assert not c.of("reset")  # nothing was lost, so no reset
    await c.aclose()


async def test_origin_allow_list(redis_url: str) -> None:
    from conftest import make_settings
    from jangteo.testkit.server import running_server

    settings = make_settings(redis_url, cors_origins=("https://shop.example",))
    async with running_server(settings) as s:
        b = await s.create_broadcast()
        with pytest.raises(websockets.exceptions.InvalidStatus) as err:
            await ChatClient.open(
                s.base_url, b["id"], b["host_token"], origin="https://evil.example"
            )
        assert err.value.response.status_code == 403
        ok = await ChatClient.open(
            s.base_url, b["id"], b["host_token"], origin="https://shop.example"
        )
        await ok.wait(lambda c: bool(c.of("viewers")))
        await ok.aclose()


async def test_an_idle_broadcast_gives_its_reader_back(server: RunningServer) -> None:
    bid, host = await _broadcast(server)
    hub = server.ctx.chat
    hub.IDLE_S = 0.05
    a = await ChatClient.open(server.base_url, bid, host)
    b = await ChatClient.open(server.base_url, bid, host)
    await a.send(type="chat", text="hi")
    await b.wait_for("chat")
    await a.aclose()
    # the server sees the close on its own time; b receives nothing for it
    await eventually(lambda: len(hub.broadcasts[bid].clients) == 1, "a's socket detached")
    assert bid in hub.broadcasts  # one socket still holds it
    await b.aclose()
    while hub._holds.get(bid, 0) > 0:  # noqa: ASYNC110 - the server sees the close on its own time
        await asyncio.sleep(0.01)
    await asyncio.gather(*list(hub._reapers))
    assert bid not in hub.broadcasts
    # and it comes back on the next socket, history intact
    c = await ChatClient.open(server.base_url, bid, host)
    await c.wait_for("chat", lambda e: e["text"] == "hi")
    await c.aclose()


async def test_joining_shows_the_hearts_total_so_far(server: RunningServer) -> None:
    bid, _ = await _broadcast(server)
    tapper = await ChatClient.open(server.base_url, bid, await server.token(bid, "viewer", "t"))
    await tapper.send(type="heart", count=7)
    await tapper.wait_for("hearts", lambda e: e["total"] == 7, timeout=10)
    late = await ChatClient.open(server.base_url, bid, await server.token(bid, "viewer", "late"))
    await late.wait_for("hearts", lambda e: e["total"] == 7, timeout=10)
    await tapper.aclose()
    await late.aclose()


async def test_an_event_while_a_client_joins_a_quiet_stream_is_not_lost(
    server: RunningServer,
) -> None:
    """The reader can move past an event while a client is still joining (after its history
    was read); the client must still get it, once. (A client used to start from the reader's
    cursor and drop it.)"""
    bid, host = await _broadcast(server)
    h = await ChatClient.open(server.base_url, bid, host)
    await h.wait_for("settings")
    chat = server.ctx.chat.broadcasts[bid]
    real = chat.store.settings
    calls = 0

    async def settings_after_an_event(b: str, max_age: float = 0.0) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:  # between the joiner's history read and its going live
            await publish(server.ctx.redis, bid, {"type": "system", "text": "while joining"})
            await h.wait_for("system", lambda e: e["text"] == "while joining")
        return await real(b, max_age)

    chat.store.settings = settings_after_an_event  # type: ignore[method-assign,assignment]
    try:
        v = await ChatClient.open(server.base_url, bid, await server.token(bid, "viewer", "v"))
        await v.wait_for("system", lambda e: e["text"] == "while joining", timeout=5)
    finally:
        del chat.store.settings
    await h.send(type="chat", text="after")
    await v.wait_for("chat", lambda e: e["text"] == "after")
    assert len([e for e in v.of("system") if e["text"] == "while joining"]) == 1
    await asyncio.gather(h.aclose(), v.aclose())


async def test_frames_go_straight_onto_the_sockets(server: RunningServer) -> None:
    """Behind uvicorn's WebSocket protocol the hub writes each frame's bytes, built once, to
    every socket's transport (chat/wire.py): no sender task per socket."""
    bid, host = await _broadcast(server)
    a = await ChatClient.open(server.base_url, bid, host)
    b = await ChatClient.open(server.base_url, bid, host)
    await b.wait(lambda c: bool(c.of("viewers")))
    clients = server.ctx.chat.broadcasts[bid].clients
    assert len(clients) == 2 and all(c.wire is not None and c.task is None for c in clients)
    await a.send(type="chat", text="한 번 만든 프레임")
    for c in (a, b):
        await c.wait_for("chat", lambda e: e["text"] == "한 번 만든 프레임")
    await a.aclose()
    await b.aclose()
