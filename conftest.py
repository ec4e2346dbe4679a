"""Shared fixtures: a real redis-server per test session, a real server per test."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from core.config import Settings
from core.redisproc import RedisServer
from jangteo.testkit.server import RunningServer, running_server

# aioice never gathers loopback; tests name it explicitly (or the netns veth address).
ICE_ADDRESS = os.environ.get("JANGTEO_TEST_ICE_ADDRESS", "127.0.0.1")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = RedisServer(tmp_path_factory.mktemp("redis"), port=0)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def make_settings(redis_url: str, **kw: object) -> Settings:
    base = dict(
        host="127.0.0.1",
        port=0,
        redis_url=redis_url,
        admin_key="test-admin-key",
        secret="test-secret",
        data_dir=Path("var"),
        ice_host_addresses=(ICE_ADDRESS,),
        video_width=640,
        video_height=360,
        video_fps=30,
        video_bitrate=1_000_000,
        # the buyer's confirm pays (tests of real payment flows set "external")
        payment_provider="test",
        cors_origins=("*",),  # the CORS tests' browsers come from elsewhere
        phone_verifier="test",
        # every test buyer is on loopback: one address stands for many people here
        open_orders_per_address=100_000,
        # viewers stay on their rung: the rendition tests turn switching on (test_ladder.py)
        abr=False,
        record=False,  # the recording tests turn it on, into their own directory
    )
    base.update(kw)
    return Settings(**base)  # type: ignore[arg-type]


@pytest.fixture
async def server(redis_url: str) -> AsyncIterator[RunningServer]:
    async with running_server(make_settings(redis_url)) as s:
        yield s


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves tasks of ours running on its loop."""
    before = set(asyncio.all_tasks())
    yield
    leftover = [
        t
        for t in asyncio.all_tasks() - before
        if not t.done() and not t.cancelling() and t is not asyncio.current_task() and _ours(t)
    ]
    for t in leftover:
        t.cancel()
    assert not leftover, f"tasks left running: {[t.get_name() for t in leftover]}"


def _ours(task: asyncio.Task[object]) -> bool:
    coro = task.get_coro()
    qual = getattr(coro, "__qualname__", "")
    if qual == "_query_consent":  # stream/deliver/rtc_hooks.py's loop runs as aioice's, owned by it
        return False
    module = getattr(getattr(coro, "cr_code", None), "co_filename", "")
    return any(part in module for part in ("/stream/", "/jangteo/", "/chat/", "/commerce/")) or (
        qual.startswith(("Compositor", "Publisher", "SyntheticStudio"))
    )
