"""Load clients for ``jangteo bench chat``: many chat sockets in one process, as cheap as possible.

A load client must cost less than the server it loads, so these speak just enough WebSocket: the
handshake, then they count the sender's stamps (``"text":"t=<epoch ms>``) straight in the byte
stream (server frames are unmasked, so the JSON is there as sent) without parsing frames or JSON.
Every stamp is a delivery; the first stamp of every ``sample_every``-th chunk gives a latency
sample (stamp → bytes here). Prints one JSON line for ``[start_at, stop_at]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import time
from typing import Any
from urllib.parse import urlsplit

MARK = b'"text":"t='
STATE: dict[str, Any] = {"deliveries": 0, "lat": [], "closed": 0, "window": False, "chunks": 0}


class Counter(asyncio.Protocol):
    def __init__(self, request: bytes, sample_every: int) -> None:
        self.request = request
        self.sample_every = sample_every
        self.upgraded = False
        self.tail = b""
        self.ready = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if not self.upgraded:
            head, sep, rest = data.partition(b"\r\n\r\n")
            if not sep:
                return
            if not self.ready.done():
                self.ready.set_result(head.startswith(b"HTTP/1.1 101"))
            self.upgraded = True
            data = rest
        if not STATE["window"]:
            self.tail = data[-(len(MARK) - 1) :]
            return
        buf = self.tail + data
        hits = buf.count(MARK)
        self.tail = buf[-(len(MARK) - 1) :]
        if not hits:
            return
        STATE["deliveries"] += hits
        STATE["chunks"] += 1
        if STATE["chunks"] % self.sample_every == 0:
            at = buf.index(MARK) + len(MARK)
            end = buf.find(b" ", at)
            if end > 0:
                STATE["lat"].append(time.time() * 1000 - float(buf[at:end]))

    def connection_lost(self, exc: Exception | None) -> None:
        STATE["closed"] += 1
        if not self.ready.done():
            self.ready.set_result(False)


async def main(args: argparse.Namespace) -> None:
    url = urlsplit(args.url)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {url.path}?{url.query} HTTP/1.1\r\nHost: {url.netloc}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    transports = []
    failed = 0
    began = time.time()
    for _ in range(args.clients):
        host, port = url.hostname or "127.0.0.1", url.port or 80
        transport, proto = await loop.create_connection(
            lambda: Counter(request, args.sample_every), host, port
        )
        transports.append(transport)
        if not await proto.ready:
            failed += 1
    ready_at = time.time()
    await asyncio.sleep(max(0.0, args.start_at - time.time()))
    STATE["window"] = True
    closed0, cpu0 = STATE["closed"], time.process_time()
    await asyncio.sleep(max(0.0, args.stop_at - time.time()))
    STATE["window"] = False
    cpu = time.process_time() - cpu0
    print(
        json.dumps(
            {
                "clients": args.clients,
                "deliveries": STATE["deliveries"],
                "latencies": STATE["lat"],
                "closed": STATE["closed"] - closed0 + failed,
                "cpu_s": cpu,
                "connect_s": round(ready_at - began, 2),
                "late_s": round(max(0.0, ready_at - args.start_at), 2),
            }
        ),
        flush=True,
    )
    for t in transports:
        t.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--clients", type=int, required=True)
    p.add_argument("--start-at", type=float, required=True)
    p.add_argument("--stop-at", type=float, required=True)
    p.add_argument("--sample-every", type=int, default=10)
    asyncio.run(main(p.parse_args()))
