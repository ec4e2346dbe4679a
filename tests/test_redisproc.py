"""jangteo.redisproc: the embedded redis-server child."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
from pathlib import Path

import pytest
import redis

from core.redisproc import EmbeddedRedisError, RedisServer, free_port
from jangteo.testkit.server import eventually, start_serve_process, stop_process


def _config(url: str, name: str) -> str:
    client = redis.Redis.from_url(url, socket_timeout=5, decode_responses=True)
    try:
        return str(client.config_get(name)[name])
    finally:
        client.close()


def _refused(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_missing_binary_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert shutil.which("redis-server") is None
    server = RedisServer(tmp_path / "data", port=0)
    with pytest.raises(EmbeddedRedisError) as err:
        server.start()
    message = str(err.value)
    assert "redis-server" in message
    assert "apt-get install" in message
    assert "REDIS_URL" in message
    assert server.proc is None
    server.stop()  # nothing to stop: no error


def test_missing_binary_via_which(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name, *a, **kw: None)
    with pytest.raises(EmbeddedRedisError, match="redis-server"), RedisServer(tmp_path, port=0):
        pass


def test_embedded_error_is_a_runtime_error() -> None:
    assert issubclass(EmbeddedRedisError, RuntimeError)


def test_started_server_is_durable_and_stops_cleanly(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, port=0)
    assert server.port is not None and server.port > 0
    url = server.start()
    proc = server.proc
    assert proc is not None and proc.poll() is None
    try:
        assert url == server.url == f"redis://127.0.0.1:{server.port}/0"
        assert _config(url, "appendonly") == "yes"
        assert _config(url, "appendfsync") == "always"
        assert _config(url, "save") == ""
        assert Path(_config(url, "dir")).resolve() == tmp_path.resolve()
        assert _config(url, "bind").split() == ["127.0.0.1"]
        client = redis.Redis.from_url(url, socket_timeout=5)
        try:
            client.set("jt:{t}:k", "값")
            assert client.get("jt:{t}:k") == "값".encode()
        finally:
            client.close()
    finally:
        server.stop()
    assert server.proc is None
    assert proc.returncode == 0  # a clean SIGTERM shutdown, not a kill
    assert _refused(server.port)
    assert any(tmp_path.rglob("*.aof")), "AOF files are written to the data dir"
    server.stop()  # idempotent


def test_fsync_policy_is_configurable(tmp_path: Path) -> None:
    with RedisServer(tmp_path, port=0, fsync="everysec") as server:
        assert _config(server.url, "appendfsync") == "everysec"
        assert _config(server.url, "appendonly") == "yes"
    assert server.proc is None


def test_unix_socket_only(tmp_path: Path) -> None:
    with RedisServer(tmp_path, port=None) as server:
        assert server.url == f"unix://{tmp_path / 'redis.sock'}"
        assert server.socket_path.exists()
        assert _config(server.url, "port") == "0"  # nothing on the network
        assert (server.socket_path.stat().st_mode & 0o777) == 0o700
    assert server.proc is None


def test_data_survives_a_kill(tmp_path: Path) -> None:
    """appendfsync always: an acknowledged write survives SIGKILL of redis-server."""
    port = free_port()
    first = RedisServer(tmp_path, port=port)
    first.start()
    client = redis.Redis.from_url(first.url, socket_timeout=5)
    try:
        client.hset("jt:{b1}:orders", "o1", "paid")
    finally:
        client.close()
    proc = first.proc
    first.kill()
    assert proc is not None and proc.returncode == -9
    with RedisServer(tmp_path, port=port) as second:
        client = redis.Redis.from_url(second.url, socket_timeout=5)
        try:
            assert client.hget("jt:{b1}:orders", "o1") == b"paid"
        finally:
            client.close()
    first.stop()


def test_a_server_that_cannot_start_reports_why(tmp_path: Path) -> None:
    # an impossible fsync policy makes redis-server exit at once with a message
    bad = RedisServer(tmp_path / "bad", port=0, fsync="sometimes")
    with pytest.raises(EmbeddedRedisError, match="exited"):
        bad.start()
    bad.stop()
    assert bad.proc is None


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


async def test_sigterm_stops_the_embedded_redis_too(tmp_path: Path) -> None:
    """As found: after SIGTERM the server was gone but its redis-server child lived on."""
    env = {"REDIS_URL": "", "JANGTEO_DATA_DIR": str(tmp_path), "JANGTEO_LOG_LEVEL": "warning"}
    proc, _ = await start_serve_process(env)
    try:
        redis_pid = _redis_child(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 20) == 0
        await eventually(lambda: _zombie(redis_pid), "redis-server stopped with the server", 10)
    finally:
        if proc.poll() is None:
            stop_process(proc)


def _redis_child(pid: int) -> int:
    """The redis-server child of ``pid`` (started from one of its threads)."""
    tasks = Path(f"/proc/{pid}/task").iterdir()
    children = [c for t in tasks for c in (t / "children").read_text().split()]
    (found,) = [int(c) for c in children if b"redis" in Path(f"/proc/{c}/cmdline").read_bytes()]
    return found


def _zombie(pid: int) -> bool:
    """Gone, or dead and waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except FileNotFoundError:
        return True
