"""``jangteo drain``: the operator drains a node from the command line and follows it until the
node is empty; ``--undo`` puts it back. Against a running node (its own Redis), the command run
in a thread as it runs in a shell. And the drain's flag read by a heartbeat against a drain
asked of the node itself."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from jangteo.cli import main
from jangteo.testkit.server import RunningServer
from tests.chat_client import ChatClient


def _lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


async def test_drain_follows_the_node_until_it_is_empty_and_undo_puts_it_back(
    server: RunningServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JANGTEO_ADMIN_KEY", server.settings.admin_key)
    node_id = server.ctx.node_id
    doc = await server.create_broadcast()
    chat = await ChatClient.open(server.base_url, doc["id"], doc["host_token"])
    argv = ["drain", node_id, "--url", server.base_url]
    assert await asyncio.to_thread(main, [*argv, "--wait", "30"]) == 0
    lines = _lines(capsys.readouterr().out)
    assert lines[0] == {"node": node_id, "draining": True}
    assert lines[-1] == {"node": node_id, "drained": True,
                         "sessions": {"publishers": 0, "viewers": 0, "chat": 0}}  # fmt: skip
    code, _ = await chat.wait_closed()
    assert code == 1012  # the chat socket was let go
    assert (await server.http.get("/healthz")).status_code == 503

    assert await asyncio.to_thread(main, [*argv, "--undo"]) == 0
    assert _lines(capsys.readouterr().out) == [{"node": node_id, "draining": False}]
    assert not server.app.state.drain.active
    assert (await server.http.get("/healthz")).status_code == 200


async def test_drain_refuses_without_the_key_or_a_live_node(
    server: RunningServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JANGTEO_ADMIN_KEY", raising=False)
    argv = ["drain", server.ctx.node_id, "--url", server.base_url]
    assert await asyncio.to_thread(main, argv) == 2
    assert "JANGTEO_ADMIN_KEY" in capsys.readouterr().err
    monkeypatch.setenv("JANGTEO_ADMIN_KEY", "not-the-key")
    assert await asyncio.to_thread(main, argv) == 2
    monkeypatch.setenv("JANGTEO_ADMIN_KEY", server.settings.admin_key)
    assert await asyncio.to_thread(main, ["drain", "node-x", "--url", server.base_url]) == 2
    assert "node_not_found" in capsys.readouterr().err
    assert not server.app.state.drain.active


async def test_a_heartbeat_read_older_than_a_drain_asked_here_does_not_undo_it(
    server: RunningServer,
) -> None:
    drain = server.app.state.drain
    before = time.monotonic()  # a heartbeat reads the flag (not set yet) …
    r = await server.http.post(f"/api/nodes/{server.ctx.node_id}/drain", headers=server.admin())
    assert r.status_code == 202 and drain.active  # … the operator asks this node meanwhile …
    drain.heard(False, before)  # … and the heartbeat's answer arrives: out of date
    assert drain.active
    drain.heard(False, time.monotonic())  # a read after it (the flag deleted elsewhere) counts
    assert not drain.active
