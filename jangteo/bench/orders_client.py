"""The raw HTTP side of ``jangteo bench orders``: a small keep-alive HTTP/1.1 client and the shop.

One request at a time per connection, so each answer is matched to its request (httpx costs the
shared CPU too much at these rates): ``Call`` is one request, ``RawConn`` one connection (reopened
once when the server closed it), ``call_many`` runs many calls over a pool of connections, and
``Shop`` is the broadcast under test (put a product, read its stock and orders, make order calls).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""


class RawConn:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self.reader, self.writer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def call(self, c: Call) -> tuple[int, bytes]:
        for attempt in (0, 1):
            try:
                return await self._call(c)
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _call(self, c: Call) -> tuple[int, bytes]:
        reader, writer = await self._open()
        head = [f"{c.method} {c.path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                f"Content-Length: {len(c.body)}"]  # fmt: skip
        head += [f"{k}: {v}" for k, v in c.headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + c.body)
        line = await reader.readline()
        if not line:
            raise ConnectionResetError("closed")
        status = int(line.split()[1])
        length, chunked, close = 0, False, False
        while True:
            h = await reader.readline()
            if h in (b"\r\n", b"\n", b""):
                break
            name, _, value = h.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and b"close" in value.lower():
                close = True
        if chunked:
            parts = []
            while True:
                size = int((await reader.readline()).split(b";")[0], 16)
                if size == 0:
                    await reader.readline()
                    break
                parts.append(await reader.readexactly(size))
                await reader.readexactly(2)
            body = b"".join(parts)
        else:
            body = await reader.readexactly(length)
        if close:
            self.close()
        return status, body


async def call_many(
    host: str, port: int, calls: Sequence[Call], conns: int = 32
) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = [(0, b"")] * len(calls)
    it = iter(range(len(calls)))

    async def worker() -> None:
        conn = RawConn(host, port)
        try:
            for i in it:
                out[i] = await conn.call(calls[i])
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(max(1, min(conns, len(calls))))))
    return out


def expect_json(status: int, body: bytes, want: int | tuple[int, ...] = 200) -> Any:
    ok = (want,) if isinstance(want, int) else want
    if status not in ok:
        raise RuntimeError(f"HTTP {status}: {body[:300]!r}")
    return json.loads(body)


def json_body(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


JSON_CT = {"Content-Type": "application/json"}


@dataclass
class Shop:
    host: str
    port: int
    bid: str
    host_token: str
    tokens: list[str]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.host_token}"}

    async def call(self, c: Call) -> tuple[int, bytes]:
        return (await call_many(self.host, self.port, [c], 1))[0]

    async def put_product(self, pid: str, stock: int, limit: int) -> None:
        doc = {"name": f"타임딜 {pid}", "price": 19900, "list_price": 29900, "stock": stock,
               "per_buyer_limit": limit}  # fmt: skip
        st, body = await self.call(
            Call("PUT", f"/api/broadcasts/{self.bid}/products/{pid}", self.auth | JSON_CT,
                 json_body(doc))
        )  # fmt: skip
        expect_json(st, body, (200, 201))

    async def stock(self, pid: str) -> int | None:
        st, body = await self.call(Call("GET", f"/api/broadcasts/{self.bid}/products", {}))
        doc = expect_json(st, body)
        items = doc.get("products", doc) if isinstance(doc, dict) else doc
        for p in items:
            if str(p.get("id", p.get("product_id"))) == pid:
                return int(p["stock"])
        return None

    async def orders(self) -> list[dict[str, Any]]:
        st, body = await self.call(Call("GET", f"/api/broadcasts/{self.bid}/orders", self.auth))
        doc = expect_json(st, body)
        return list(doc["orders"] if isinstance(doc, dict) else doc)

    def order_call(self, pid: str, token: str, key: str, qty: int) -> Call:
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key} | JSON_CT
        path = f"/api/broadcasts/{self.bid}/orders"
        return Call("POST", path, headers, json_body({"product_id": pid, "qty": qty}))
