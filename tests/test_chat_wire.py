"""Chat frames onto the transports (chat/wire.py) and the hub's fan-out over them (chat/hub.py):
RFC 6455 frame bytes, the hot loop, order, private events, back-pressure and the batch cadence,
on fake transports and a fake clock; the reader's cadence on a real Redis."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from chat.client import MAX_BUFFERED, SEND_QUEUE, SLOW_AFTER_S, Client, ClientState
from chat.hub import CLOSE_TOO_SLOW, SWEEP_S, XREAD_BLOCK_MS, BroadcastChat
from chat.wire import Fanout, SocketGone, Wire, text_frame, writer_of
from core.events import stream_key
from core.tasks import cancel_and_wait
from core.tokens import Claims, Role

# -- frames: RFC 6455 §5.2 bytes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "header"),
    [
        (0, b"\x81\x00"),
        (125, b"\x81\x7d"),
        (126, b"\x81\x7e\x00\x7e"),
        (65535, b"\x81\x7e\xff\xff"),
        (65536, b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
    ],
)
def test_text_frame_length_forms(n: int, header: bytes) -> None:
    payload = b"x" * n
    assert text_frame(payload) == header + payload


def test_text_frame_carries_utf8_unmasked() -> None:
    body = json.dumps({"text": "안녕"}, ensure_ascii=False).encode()
    frame = text_frame(body)
    assert frame[0] == 0x81 and frame[1] == len(body)  # FIN + text, no mask bit
    assert frame[2:].decode() == '{"text": "안녕"}'


# -- fakes -----------------------------------------------------------------------------------------


class Transport:
    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.closing = False
        self.unsent = 0
        self.fail: Exception | None = None

    def write(self, data: bytes) -> None:
        if self.fail is not None:
            raise self.fail
        self.frames.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.unsent

    def events(self) -> list[Any]:
        """Every event written, in order (a frame holds one event or an array of them)."""
        out: list[Any] = []
        for f in self.frames:
            n, at = f[1], 2
            if n == 126:
                n, at = struct.unpack("!H", f[2:4])[0], 4
            doc = json.loads(f[at : at + n])
            out.extend(doc if isinstance(doc, list) else [doc])
        return out


class Conn:
    def __init__(self) -> None:
        self.extensions: list[str] = []


class WebSocketsSansIOProtocol:  # named as uvicorn's: writer_of checks the class name
    def __init__(self) -> None:
        self.transport = Transport()
        self.conn = Conn()
        self.close_sent = False

    async def receive(self) -> None:
        return None


def test_writer_of_only_for_uvicorns_sansio_protocol_without_extensions() -> None:
    proto = WebSocketsSansIOProtocol()
    wire = writer_of(proto.receive)
    assert wire is not None and wire.protocol is proto
    assert writer_of(None) is None
    assert writer_of(lambda: None) is None

    class OtherProtocol(WebSocketsSansIOProtocol):
        pass

    assert writer_of(OtherProtocol().receive) is None
    deflate = WebSocketsSansIOProtocol()
    deflate.conn = Conn()
    deflate.conn.extensions = ["permessage-deflate"]
    assert writer_of(deflate.receive) is None


def test_wire_send_refuses_a_socket_that_began_to_close() -> None:
    proto = WebSocketsSansIOProtocol()
    wire = writer_of(proto.receive)
    assert wire is not None
    proto.transport.unsent = 7
    assert wire.send(b"a") == 7
    proto.close_sent = True  # a close frame went out: nothing may follow it
    with pytest.raises(SocketGone):
        wire.send(b"b")
    assert proto.transport.frames == [b"a"]


def test_fanout_writes_each_socket_once_and_takes_out_closing_ones() -> None:
    protos = {k: WebSocketsSansIOProtocol() for k in "abcd"}
    fan: Fanout[str] = Fanout()
    for k, p in protos.items():
        wire = writer_of(p.receive)
        assert wire is not None
        fan.add(k, wire)
    assert fan.write(b"1") == []
    protos["b"].close_sent = True
    protos["c"].transport.closing = True
    protos["d"].transport.fail = RuntimeError("unable to perform operation: handle is closed")
    assert sorted(fan.write(b"2")) == ["b", "c", "d"]
    assert list(fan) == ["a"] and "b" not in fan
    assert fan.write(b"3") == []
    assert protos["a"].transport.frames == [b"1", b"2", b"3"]
    assert protos["b"].transport.frames == protos["c"].transport.frames == [b"1"]


# -- the hub's fan-out -----------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Socket:
    """A written client and what the hub did to it."""

    def __init__(self, chat: BroadcastChat, user: str, wired: bool = True) -> None:
        self.proto = WebSocketsSansIOProtocol()
        self.closed: list[tuple[int, str]] = []
        self.sent: list[str] = []
        self.more_sent = asyncio.Event()
        claims = Claims("b", Role.VIEWER, user, user, 0)
        wire = writer_of(self.proto.receive) if wired else None
        self.client = Client(claims, self._send, self._close, wire)
        self.client.state = ClientState.LIVE
        chat.clients.add(self.client)
        chat._behind[self.client] = None

    async def _send(self, frame: str) -> None:
        self.sent.append(frame)
        self.more_sent.set()

    async def sent_texts(self, n: int) -> list[list[str]]:
        """Once ``n`` frames went through ``send_text``: each frame's texts."""
        while len(self.sent) < n:
            self.more_sent.clear()
            await self.more_sent.wait()
        docs = [json.loads(f) for f in self.sent]
        return [[e["text"] for e in (d if isinstance(d, list) else [d])] for d in docs]

    async def _close(self, code: int, reason: str) -> None:
        self.closed.append((code, reason))

    @property
    def transport(self) -> Transport:
        return self.proto.transport

    def texts(self) -> list[str]:
        return [e["text"] for e in self.transport.events()]


@pytest.fixture
async def chat() -> AsyncIterator[BroadcastChat]:
    c = BroadcastChat("b", None, None, "p")  # type: ignore[arg-type]
    c.clock = Clock()
    yield c
    await c.aclose()


@pytest.fixture
def clock(chat: BroadcastChat) -> Clock:
    """The chat's clock, moved by hand."""
    assert isinstance(chat.clock, Clock)
    return chat.clock


def _events(*texts: str, start: int = 1, to: str | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, t in enumerate(texts):
        e: dict[str, Any] = {"type": "chat", "text": t, "sid": f"{start + i}-0"}
        if to is not None:
            e["to"] = to
        out.append(e)
    return out


async def test_a_batch_is_one_write_per_socket_in_order(chat: BroadcastChat) -> None:
    socks = [Socket(chat, f"u{i}") for i in range(3)]
    chat.dispatch(_events("a", "b"))
    chat.dispatch(_events("c", start=3))
    chat.dispatch(_events("d", "e", "f", start=4))
    for s in socks:
        assert len(s.transport.frames) == 3  # one write per batch
        assert s.texts() == ["a", "b", "c", "d", "e", "f"]
    assert chat.deliveries == 3 * 6
    # all of them caught up after the first batch: written together from then on
    assert set(chat._step) == {s.client for s in socks} and not chat._behind


async def test_a_private_event_reaches_its_recipient_alone_in_order(chat: BroadcastChat) -> None:
    alice, bob = Socket(chat, "alice"), Socket(chat, "bob")
    chat.dispatch(_events("hello"))
    batch = [*_events("public 1", start=2), *_events("for alice", start=3, to="alice")]
    batch += _events("public 2", start=4)
    chat.dispatch(batch)
    chat.dispatch(_events("after", start=5))
    assert alice.texts() == ["hello", "public 1", "for alice", "public 2", "after"]
    assert bob.texts() == ["hello", "public 1", "public 2", "after"]
    assert all("to" not in e for s in (alice, bob) for e in s.transport.events())
    assert [len(s.transport.frames) for s in (alice, bob)] == [3, 3]
    assert alice.client in chat._step and bob.client in chat._step  # back in step


async def test_a_joining_client_holds_and_a_client_ahead_gets_no_repeats(
    chat: BroadcastChat,
) -> None:
    early = Socket(chat, "early")
    chat.dispatch(_events("one"))
    joining = Socket(chat, "joining")
    joining.client.state = ClientState.JOINING
    ahead = Socket(chat, "ahead")
    ahead.client.last_id = (4, 0)  # its history already showed "two" to "four"
    chat.dispatch(_events("two", "three", start=2))
    chat.dispatch(_events("four", start=4))
    chat.dispatch(_events("five", start=5))
    assert early.texts() == ["one", "two", "three", "four", "five"]
    assert ahead.texts() == ["five"]
    assert joining.transport.frames == []
    assert [e["text"] for e in joining.client.held] == ["two", "three", "four", "five"]


async def test_a_closing_socket_is_skipped_not_cut_as_slow(chat: BroadcastChat) -> None:
    a, b = Socket(chat, "a"), Socket(chat, "b")
    chat.dispatch(_events("1"))
    a.proto.close_sent = True  # e.g. the socket's own loop closed it (rate limit)
    chat.dispatch(_events("2", start=2))
    chat.dispatch(_events("3", start=3))
    assert a.texts() == ["1"] and b.texts() == ["1", "2", "3"]
    assert a.client.state is ClientState.CLOSED and chat.dropped_slow == 0
    assert a.client in chat.clients  # its receive loop detaches it


async def test_a_client_with_over_a_mebibyte_unsent_is_cut_others_unaffected(
    chat: BroadcastChat,
    clock: Clock,
) -> None:
    slow, ok = Socket(chat, "slow"), Socket(chat, "ok")
    chat.dispatch(_events("1"))
    slow.transport.unsent = MAX_BUFFERED  # at the limit: not yet
    clock.now += SWEEP_S
    chat.dispatch(_events("2", start=2))
    assert slow.client in chat.clients
    slow.transport.unsent = MAX_BUFFERED + 1
    clock.now += SWEEP_S
    chat.dispatch(_events("3", start=3))
    assert slow.client not in chat.clients and chat.dropped_slow == 1
    await asyncio.gather(*list(chat._reaper))
    assert slow.closed == [(CLOSE_TOO_SLOW, "too slow: messages were piling up")]
    chat.dispatch(_events("4", start=4))
    assert ok.texts() == ["1", "2", "3", "4"] and ok.closed == []
    assert slow.texts() == ["1", "2", "3"]


async def test_a_backlog_older_than_the_limit_is_cut(chat: BroadcastChat, clock: Clock) -> None:
    lagging, ok = Socket(chat, "lagging"), Socket(chat, "ok")
    chat.dispatch(_events("1"))
    clock.now += SWEEP_S
    lagging.transport.unsent = 10  # a few bytes, but for too long
    chat.dispatch(_events("2", start=2))
    clock.now += SLOW_AFTER_S / 2
    chat.dispatch(_events("3", start=3))
    lagging.transport.unsent = 0  # it caught up: the clock starts again
    clock.now += SWEEP_S
    chat.dispatch(_events("4", start=4))
    lagging.transport.unsent = 10
    clock.now += SWEEP_S
    chat.dispatch(_events("5", start=5))
    clock.now += SLOW_AFTER_S
    chat.dispatch(_events("6", start=6))
    assert lagging.client in chat.clients  # exactly the limit: not over it
    clock.now += SWEEP_S
    chat.dispatch(_events("7", start=7))
    assert lagging.client not in chat.clients and chat.dropped_slow == 1
    await asyncio.gather(*list(chat._reaper))
    assert lagging.closed == [(CLOSE_TOO_SLOW, "too slow: messages were piling up")]
    assert ok.texts() == [str(i) for i in range(1, 8)]


async def test_a_client_found_too_slow_by_its_own_frame_is_cut_at_the_next_sweep(
    chat: BroadcastChat,
    clock: Clock,
) -> None:
    s, ok = Socket(chat, "s"), Socket(chat, "ok")
    chat.dispatch(_events("1"))
    s.transport.unsent = MAX_BUFFERED + 1
    assert not s.client.offer('{"type":"error"}')  # e.g. an error event for it alone
    s.transport.unsent = 0  # drained since: it was too slow all the same
    chat.dispatch(_events("2", start=2))  # within SWEEP_S: not looked at yet
    assert s.client in chat.clients
    clock.now += SWEEP_S
    chat.dispatch(_events("3", start=3))
    assert s.client not in chat.clients and chat.dropped_slow == 1
    assert ok.texts() == ["1", "2", "3"]


async def test_send_text_clients_keep_their_queue(chat: BroadcastChat) -> None:
    """JANGTEO_CHAT_WIRE=0 (or no sansio protocol): each client its queue and sender task."""
    q = Socket(chat, "q", wired=False)
    w = Socket(chat, "w")
    q.client.start()
    chat.dispatch(_events("1", "2"))
    chat.dispatch(_events("3", start=3))
    assert q.client not in chat._step and w.client in chat._step
    assert await q.sent_texts(2) == [["1", "2"], ["3"]]
    assert q.transport.frames == [] and w.texts() == ["1", "2", "3"]
    await q.client.aclose()


async def test_a_send_text_client_whose_queue_fills_is_cut(chat: BroadcastChat) -> None:
    stuck, ok = Socket(chat, "stuck", wired=False), Socket(chat, "ok")  # stuck: no sender runs
    for i in range(SEND_QUEUE):
        chat.dispatch(_events(str(i), start=i + 1))
    assert stuck.client in chat.clients and chat.dropped_slow == 0
    assert not stuck.client.offer('{"type":"error"}')  # one more: the queue is full
    chat.dispatch(_events("last", start=SEND_QUEUE + 1))
    assert stuck.client not in chat.clients and chat.dropped_slow == 1
    await asyncio.gather(*list(chat._reaper))
    assert stuck.closed == [(CLOSE_TOO_SLOW, "too slow: messages were piling up")]
    assert ok.texts()[-1] == "last" and len(ok.texts()) == SEND_QUEUE + 1


# -- the cadence: a lone event waits for company, at most one more batch ---------------------------


class RecordedReads:
    """A real Redis client whose XREAD calls are recorded (the block each asked for) before they
    go to the server: the test waits for the reader to block, and sees how long it asked."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.blocks: list[int] = []
        self.called = asyncio.Event()

    async def xread(self, streams: dict[str, str], count: int, block: int) -> Any:
        self.blocks.append(block)
        self.called.set()
        return await self.redis.xread(streams, count=count, block=block)  # type: ignore[arg-type]

    async def block_of(self, wanted: int, since: int) -> None:
        """Until a read at index ``since`` or later asks for ``wanted`` ms."""
        while wanted not in self.blocks[since:]:
            self.called.clear()
            await self.called.wait()

    async def add(self, *texts: str) -> int:
        """Append events to the broadcast's stream (in one step); the reads made so far."""
        mark = len(self.blocks)
        async with self.redis.pipeline(transaction=True) as pipe:
            for t in texts:
                pipe.xadd(stream_key("b"), {"e": json.dumps({"type": "chat", "text": t})})
            await pipe.execute()
        return mark


async def test_a_lone_event_waits_for_company_at_most_one_more_batch(redis_url: str) -> None:
    client = Redis.from_url(redis_url)
    await client.delete(stream_key("b"))
    reads = RecordedReads(client)
    chat = BroadcastChat("b", reads, None, "p", batch_s=0.001)  # type: ignore[arg-type]
    clock = Clock()
    chat.clock = clock
    batches: list[list[str]] = []
    chat.listeners.append(lambda evs: batches.append([e["text"] for e in evs]))
    chat.cursor = "0-0"
    task = asyncio.create_task(chat._read())
    try:
        await reads.block_of(XREAD_BLOCK_MS, 0)  # idle
        mark = await reads.add("first")  # after a quiet spell: out at once, alone
        await reads.block_of(XREAD_BLOCK_MS, mark + 1)
        assert batches == [["first"]]
        mark = await reads.add("second")  # within a batch of the last: waits for company...
        await reads.block_of(1, mark)
        assert batches == [["first"]]
        mark = await reads.add("third")  # ...which comes: both in one frame
        await reads.block_of(XREAD_BLOCK_MS, mark)
        assert batches == [["first"], ["second", "third"]]
        mark = await reads.add("fourth")
        await reads.block_of(1, mark)
        clock.now += 0.001  # ...which does not come in time: it goes alone
        await reads.block_of(XREAD_BLOCK_MS, len(reads.blocks))
        assert batches[-1] == ["fourth"]
        mark = await reads.add("fifth", "sixth")  # two at once go together
        await reads.block_of(XREAD_BLOCK_MS, mark + 1)
        assert batches[-1] == ["fifth", "sixth"]
    finally:
        await cancel_and_wait(task)  # redis-py may swallow a first cancel mid-XREAD
        await chat.aclose()
        await client.aclose()


def test_wire_is_a_small_value() -> None:
    t = Transport()
    w = Wire(WebSocketsSansIOProtocol(), t.write, t.is_closing, t.get_write_buffer_size)
    assert not w.gone()
    t.closing = True
    assert w.gone()


# -- on a real server ------------------------------------------------------------------------------


async def test_without_the_wire_every_socket_has_its_sender(redis_url: str) -> None:
    """JANGTEO_CHAT_WIRE=0: ``send_text`` through the ASGI stack, the same events in order."""
    from conftest import make_settings
    from jangteo.testkit.server import running_server

    from .chat_client import ChatClient

    async with running_server(make_settings(redis_url, chat_wire=False)) as s:
        b = await s.create_broadcast()
        bid = b["id"]
        h = await ChatClient.open(s.base_url, bid, b["host_token"])
        v = await ChatClient.open(s.base_url, bid, await s.token(bid, "viewer", "v"))
        await v.wait(lambda c: bool(c.of("viewers")))
        clients = s.ctx.chat.broadcasts[bid].clients
        assert len(clients) == 2 and all(c.wire is None and c.task for c in clients)
        for i in range(12):
            await h.send(type="chat", text=f"줄 {i}")
        want = [f"줄 {i}" for i in range(12)]
        for c in (h, v):
            await c.wait(lambda c: len(c.of("chat")) == 12)
            assert [e["text"] for e in c.of("chat")] == want
        await asyncio.gather(h.aclose(), v.aclose())
