"""Three nodes on one machine: three network namespaces, a Redis Cluster, three `jangteo serve`.

Inside scripts/netns-run's private namespace ("the hub" here, where the tests and the Redis
Cluster run), each node gets a namespace of its own (``jt-n1`` … ``jt-n3``) joined to the hub by a
veth pair: the hub side 10.216.N.1, the node side 10.216.N.2, a default route back through the
hub, which forwards between them. So the nodes reach the cluster (on the hub's 10.213.0.1), each
other (relay, through the hub) and the test's WebRTC peers (on 10.213.0.1), and a node killed with
``kill -9`` is gone the way a machine's process is: its sockets closed by the kernel, nothing
said. Needs what :func:`jangteo.testkit.netns.available` checks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from .cluster import RedisCluster3
from .netns import available

__all__ = ["Deployment", "Node", "available"]

HUB_ADDRESS = "10.213.0.1"  # scripts/netns-run's v0: the tests' peers and the Redis Cluster
HTTP_PORT, RELAY_PORT = 8080, 7070


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=10)


@dataclasses.dataclass
class Node:
    name: str  # also its node id
    index: int
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def netns(self) -> str:
        return f"jt-{self.name}"

    @property
    def address(self) -> str:
        return f"10.216.{self.index}.2"

    @property
    def url(self) -> str:
        return f"http://{self.address}:{HTTP_PORT}"

    def kill(self) -> None:
        """``kill -9``: no shutdown, no goodbye in Redis."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


class Deployment:
    """The namespaces, the cluster and the nodes (``n1`` … ``n3``); :meth:`start`, :meth:`stop`."""

    def __init__(self, root: Path, secret: str, admin_key: str, **env: str) -> None:
        self.root = root
        self.secret, self.admin_key = secret, admin_key
        self.env = env  # more JANGTEO_* for every node (video size, …)
        self.cluster = RedisCluster3(root / "redis", host=HUB_ADDRESS)
        self.nodes = [Node(f"n{i}", i, root / f"n{i}.log") for i in (1, 2, 3)]

    def network_up(self) -> None:
        _run("sysctl", "-qw", "net.ipv4.ip_forward=1")  # in the private namespace only
        for n in self.nodes:
            hub_side, hub_address = f"d{n.index}", f"10.216.{n.index}.1"
            _run("ip", "netns", "add", n.netns)
            _run("ip", "link", "add", hub_side, "type", "veth", "peer", "name", "e0",
                 "netns", n.netns)  # fmt: skip
            _run("ip", "addr", "add", f"{hub_address}/24", "dev", hub_side)
            _run("ip", "link", "set", hub_side, "up")
            for args in (("link", "set", "lo", "up"),
                         ("addr", "add", f"{n.address}/24", "dev", "e0"),
                         ("link", "set", "e0", "up"),
                         ("route", "add", "default", "via", hub_address)):  # fmt: skip
                _run("ip", "netns", "exec", n.netns, "ip", *args)

    def network_down(self) -> None:
        for n in self.nodes:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                _run("ip", "netns", "del", n.netns)

    def node_env(self, n: Node) -> dict[str, str]:
        return (
            os.environ
            | {
                "REDIS_URL": self.cluster.url,
                "JANGTEO_REDIS_CLUSTER": "1",
                "JANGTEO_NODE_ID": n.name,
                "JANGTEO_NODE_URL": n.url,
                "JANGTEO_HOST": n.address,
                "JANGTEO_PORT": str(HTTP_PORT),
                "JANGTEO_RELAY_PORT": str(RELAY_PORT),
                "JANGTEO_ICE_HOST_ADDRESSES": n.address,
                "JANGTEO_SECRET": self.secret,
                "JANGTEO_ADMIN_KEY": self.admin_key,
                "JANGTEO_DATA_DIR": str(self.root / n.name),
                "JANGTEO_CORS_ORIGINS": "*",
            }
            | self.env
        )

    def start_node(self, n: Node) -> None:
        with open(n.log, "ab") as log:
            n.proc = subprocess.Popen(
                ["ip", "netns", "exec", n.netns, sys.executable, "-m", "jangteo.cli", "serve"],
                env=self.node_env(n), stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2) as http:
            for n in self.nodes:
                while True:
                    if n.proc is not None and n.proc.poll() is not None:
                        raise RuntimeError(f"node {n.name} exited: {n.log.read_text()[-2000:]}")
                    with contextlib.suppress(httpx.TransportError):
                        if http.get(f"{n.url}/healthz").status_code == 200:
                            break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"node {n.name} did not start: see {n.log}")
                    time.sleep(0.1)  # another process starting: nothing to await

    def start(self) -> None:
        self.network_up()
        self.cluster.start()
        for n in self.nodes:
            self.start_node(n)
        self.wait_ready()

    def stop(self) -> None:
        for n in self.nodes:
            if n.proc is not None and n.proc.poll() is None:
                n.proc.terminate()
                try:
                    n.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    n.kill()
        self.cluster.stop()
        self.network_down()
