"""The embedded Redis: a private ``redis-server`` child with AOF on, stopped on exit.

Used by ``jangteo serve``/``demo`` when no ``REDIS_URL`` is set, and by the tests (each test run
starts its own on a free port in a temp dir; none ever touches a shared Redis).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis


class EmbeddedRedisError(RuntimeError):
    """redis-server is missing or would not start."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server child process.

    ``port=None`` listens on a unix socket only (nothing on the network); ``port=0`` picks a free
    TCP port on 127.0.0.1.
    """

    def __init__(
        self, data_dir: Path, *, port: int | None = None, fsync: str = "always",
        cluster: bool = False, host: str = "127.0.0.1",
    ) -> None:  # fmt: skip
        self.data_dir = Path(data_dir).resolve()
        self.port = free_port() if port == 0 else port
        self.fsync = fsync
        self.cluster = cluster  # a Redis Cluster node (TCP only): jangteo/testkit/cluster.py
        self.host = host  # the address it listens on (TCP)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return self.data_dir / "redis.sock"

    @property
    def url(self) -> str:
        if self.port is None:
            return f"unix://{self.socket_path}"
        return f"redis://{self.host}:{self.port}/0"

    def command(self) -> list[str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise EmbeddedRedisError(
                "redis-server not found: install it (Debian: apt-get install -y redis-server) "
                "or point REDIS_URL at a Redis you run"
            )
        args = [
            binary,
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes",
            "--appendfsync", self.fsync,
            "--daemonize", "no",
            "--logfile", str(self.data_dir / "redis.log"),
        ]  # fmt: skip
        if self.port is None:
            args += [
                "--port",
                "0",
                "--unixsocket",
                str(self.socket_path),
                "--unixsocketperm",
                "700",
            ]
        else:
            args += ["--port", str(self.port), "--bind", self.host]
            if self.host != "127.0.0.1":  # a test network's address (jangteo/testkit/deployment)
                args += ["--protected-mode", "no"]
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                     "--cluster-node-timeout", "5000"]  # fmt: skip
        return args

    def start(self, timeout: float = 10.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        self.proc = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        client = redis.Redis.from_url(self.url, socket_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.proc.poll() is not None:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    log = self.data_dir / "redis.log"
                    tail = log.read_text()[-800:] if log.exists() else ""
                    raise EmbeddedRedisError(f"redis-server exited: {err or tail}")
                try:
                    if client.ping():
                        return self.url
                except (redis.ConnectionError, redis.TimeoutError, FileNotFoundError):
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise EmbeddedRedisError(f"redis-server did not answer PING in {timeout}s")
                time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL, as a crash would (for durability tests)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            if self.proc.stderr:
                self.proc.stderr.close()
            self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
