"""Two network namespaces joined by a veth pair, with the server's side shaped per viewer.

Traffic between two addresses of one namespace goes over ``lo`` and cannot be shaped; here the
server runs in ``jt-srv`` (10.214.0.1) and the clients in ``jt-cli`` (10.214.0.2), and the
server's egress is an HTB tree: everything in an unlimited default class, and a viewer can be
moved into a class of its own, by its UDP port, capped at a rate with a short FIFO behind it (a
link that queues a little, then drops -- what a weak mobile link does). ``netem`` does not exist
on these machines; HTB does.

Needs root, ``ip`` and ``tc``, and a private mount namespace for ``ip netns`` (scripts/netns-run
gives the tests one: ``unshare --net --mount`` with a tmpfs on /run/netns). The test process
enters ``jt-cli`` with :func:`entered` (setns on the calling thread, restored on exit); the server
is a child started with :meth:`SplitNet.exec` in ``jt-srv``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000
SERVER, CLIENT = "jt-srv", "jt-cli"
SERVER_ADDRESS, CLIENT_ADDRESS = "10.214.0.1", "10.214.0.2"


def available() -> str | None:
    """Why a split network cannot be made here (None: it can)."""
    if os.geteuid() != 0:
        return "needs root"
    if not os.environ.get("JANGTEO_NETNS"):
        return "runs only inside scripts/netns-run (a private network and mount namespace)"
    if not (shutil.which("ip") and shutil.which("tc")):
        return "needs ip and tc (iproute2)"
    if not os.path.ismount("/run/netns"):
        return "needs a private /run/netns (scripts/netns-run mounts one)"
    return None


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=10)


def _setns(fd: int) -> None:
    if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def entered(name: str) -> Iterator[None]:
    """Run the calling thread in namespace ``name`` (sockets made meanwhile stay in it)."""
    with open("/proc/thread-self/ns/net") as home, open(f"/run/netns/{name}") as there:
        _setns(there.fileno())
        try:
            yield
        finally:
            _setns(home.fileno())


class SplitNet:
    """``jt-srv`` ⇄ ``jt-cli``, shaped on the server's side (see the module docstring)."""

    DEV = "s0"

    def __init__(self) -> None:
        self.classes: dict[int, int] = {}  # UDP port → HTB class minor

    def up(self) -> None:
        _run("ip", "netns", "add", SERVER)
        _run("ip", "netns", "add", CLIENT)
        _run("ip", "link", "add", self.DEV, "netns", SERVER, "type", "veth", "peer", "name", "c0",
             "netns", CLIENT)  # fmt: skip
        for ns, dev, addr in ((SERVER, self.DEV, SERVER_ADDRESS), (CLIENT, "c0", CLIENT_ADDRESS)):
            self.ip(ns, "link", "set", "lo", "up")
            self.ip(ns, "addr", "add", f"{addr}/24", "dev", dev)
            self.ip(ns, "link", "set", dev, "up")
        self.tc("qdisc", "add", "dev", self.DEV, "root", "handle", "1:", "htb", "default", "10")
        self.tc("class", "add", "dev", self.DEV, "parent", "1:", "classid", "1:10", "htb",
                "rate", "10gbit")  # fmt: skip

    def down(self) -> None:
        for ns in (SERVER, CLIENT):
            with contextlib.suppress(subprocess.CalledProcessError):
                _run("ip", "netns", "del", ns)

    def ip(self, ns: str, *args: str) -> None:
        _run("ip", "netns", "exec", ns, "ip", *args)

    def tc(self, *args: str) -> None:
        _run("ip", "netns", "exec", SERVER, "tc", *args)

    def cap(self, port: int, kbit: int, queue_bytes: int = 30_000) -> None:
        """Everything the server sends to UDP ``port`` goes through ``kbit`` kbit/s with a FIFO of
        ``queue_bytes`` behind it (drops beyond)."""
        if port in self.classes:
            self.set_rate(port, kbit)
            return
        minor = 20 + len(self.classes)
        self.classes[port] = minor
        rate = f"{kbit}kbit"
        self.tc("class", "add", "dev", self.DEV, "parent", "1:", "classid", f"1:{minor}", "htb",
                "rate", rate, "ceil", rate, "burst", "6k", "cburst", "6k")  # fmt: skip
        self.tc("qdisc", "add", "dev", self.DEV, "parent", f"1:{minor}", "handle", f"{minor}:",
                "bfifo", "limit", str(queue_bytes))  # fmt: skip
        self.tc("filter", "add", "dev", self.DEV, "protocol", "ip", "parent", "1:", "prio", "1",
                "u32", "match", "ip", "protocol", "17", "0xff", "match", "ip", "dport", str(port),
                "0xffff", "flowid", f"1:{minor}")  # fmt: skip

    def set_rate(self, port: int, kbit: int) -> None:
        rate = f"{kbit}kbit"
        self.tc("class", "change", "dev", self.DEV, "parent", "1:", "classid",
                f"1:{self.classes[port]}", "htb", "rate", rate, "ceil", rate)  # fmt: skip

    def lift(self, port: int) -> None:
        self.set_rate(port, 10_000_000)

    def exec(self, argv: list[str], **popen: object) -> subprocess.Popen[bytes]:
        """A child process in the server's namespace."""
        cmd = ["ip", "netns", "exec", SERVER, *argv]
        return subprocess.Popen(cmd, **popen)  # type: ignore[call-overload, no-any-return]
