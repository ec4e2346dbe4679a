"""Viewers summed over processes and nodes: MediaPresence reports the viewers of broadcasts
watched here without a chat here; watching() adds the others' fresh reports to our own."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from chat.presence import FRESH_S, MediaPresence, watching
from chat.store import ChatStore
from core.keys import text
from core.numbers import presence_key


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[ChatStore]:
    redis = Redis.from_url(redis_url)
    await redis.delete(*(presence_key(b) for b in ("pa", "pb", "pc")))
    yield ChatStore(redis)
    await redis.aclose()


async def test_viewers_without_a_chat_here_are_reported_and_summed(store: ChatStore) -> None:
    watched = {"pa": 2, "pb": 0, "pc": 4}
    presence = MediaPresence(store, "node-1", lambda: dict(watched), lambda bid: bid == "pc")
    await presence.report()
    raw = {text(k): text(v) for k, v in (await store.redis.hgetall(presence_key("pa"))).items()}
    assert list(raw) == ["node-1"] and raw["node-1"].startswith("2|")
    # no viewers: nothing written; a chat here reports for itself (chat/hub.py)
    assert not await store.redis.exists(presence_key("pb"), presence_key("pc"))
    # another process sees ours and adds its own; ours counts our number now, not our report
    assert await watching(store, "pa", "node-2", 1) == 3
    assert await watching(store, "pa", "node-1", 5) == 5
    # a process not heard from for FRESH_S is gone
    old = int((time.time() - FRESH_S - 1) * 1000)
    await store.redis.hset(presence_key("pa"), "node-3", f"7|{old}")
    assert await watching(store, "pa", "node-2", 0) == 2
    # the last viewer here left: reported once as 0, then no more
    del watched["pa"]
    await presence.report()
    assert await watching(store, "pa", "node-2", 0) == 0
    await store.redis.hdel(presence_key("pa"), "node-1")
    await presence.report()
    assert not await store.redis.hexists(presence_key("pa"), "node-1")
