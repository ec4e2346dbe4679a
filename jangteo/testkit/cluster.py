"""A real Redis Cluster for tests: three ``redis-server --cluster-enabled yes`` masters on
loopback, joined by ``redis-cli --cluster create`` (no replicas), in a temp dir; stopped after."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import redis

from core.redisproc import EmbeddedRedisError, RedisServer


def cluster_port(host: str = "127.0.0.1") -> int:
    """A free port whose cluster bus port (+10,000) is free too (so at most 55,535)."""
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(20_000, 45_000)
        try:
            for p in (port, port + 10_000):
                with socket.socket() as s:
                    s.bind((host, p))
        except OSError:
            continue
        return port
    raise EmbeddedRedisError("no free port pair for a cluster node")


class RedisCluster3:
    """``host``: the address the masters listen on and announce (loopback, or an address other
    network namespaces reach: jangteo/testkit/deployment.py)."""

    def __init__(self, data_dir: Path, fsync: str = "everysec", host: str = "127.0.0.1") -> None:
        self.host = host
        self.nodes = [RedisServer(Path(data_dir) / f"n{i}", port=cluster_port(host), fsync=fsync,
                                  cluster=True, host=host) for i in range(3)]  # fmt: skip

    @property
    def ports(self) -> list[int]:
        return [int(n.port or 0) for n in self.nodes]

    @property
    def url(self) -> str:
        """Any node's address: the client learns the rest from it."""
        return self.nodes[0].url

    def start(self, timeout: float = 30.0) -> str:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise EmbeddedRedisError("redis-cli not found (Debian: apt-get install redis-tools)")
        for node in self.nodes:
            node.start()
        addresses = [f"{self.host}:{n.port}" for n in self.nodes]
        create = [
            cli,
            "--cluster",
            "create",
            *addresses,
            "--cluster-replicas",
            "0",
            "--cluster-yes",
        ]
        subprocess.run(create, check=True, capture_output=True, timeout=timeout)
        deadline = time.monotonic() + timeout
        for port in self.ports:  # every node agrees the cluster is whole
            client = redis.Redis(host=self.host, port=port, socket_timeout=2)
            try:
                while client.cluster("INFO").get("cluster_state") != "ok":
                    if time.monotonic() > deadline:
                        raise EmbeddedRedisError("the cluster did not become ok")
                    time.sleep(0.05)
            finally:
                client.close()
        return self.url

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> RedisCluster3:
        self.start()
        return self

    def __exit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType]) -> None:
        self.stop()
