"""Order webhooks to the merchant's shop, in the Standard Webhooks format, from a durable queue.

The order scripts append ``order.created`` / ``order.paid`` / ``order.cancelled`` to the
broadcast's outbox stream (``jt:{bid}:outbox``) in the same atomic call that changes the order,
so no change goes unannounced. Every process reads the outboxes through one consumer group: each
entry goes to one process; it is acknowledged only after the shop answers 2xx. Unacknowledged
entries are retried with exponential backoff (their delivery count is Redis's), by whichever
process claims them (a crashed process's entries too), and after ``max_attempts`` they move to
``jt:{bid}:outbox:dead``.

Each request carries ``webhook-id`` (stable across retries), ``webhook-timestamp`` and
``webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>``, the key being
the base64 part of the ``whsec_…`` secret.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
import time
from typing import Any

import httpx
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from core.broadcasts import recent_ids
from core.keys import key, text
from core.storage import keep_doing
from core.tasks import cancel_and_wait

from .orders import Orders, public_order

log = logging.getLogger(__name__)

GROUP = "webhooks"
DEAD_MAXLEN = 10_000


def signing_key(secret: str) -> bytes:
    raw = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(raw, validate=True)
    except ValueError:
        return raw.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(signing_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


class Webhooks:
    def __init__(
        self,
        redis: Redis,
        orders: Orders,
        url: str,
        secret: str,
        *,
        retry_base_s: float = 1.0,
        max_attempts: int = 10,
        poll_s: float = 0.2,
    ) -> None:
        self.redis = redis
        self.orders = orders
        self.url = url
        self.secret = secret
        self.retry_base_s = retry_base_s
        self.max_attempts = max_attempts
        self.poll_s = poll_s
        self.consumer = "c-" + secrets.token_hex(4)
        self.delivered = 0
        self.failed_attempts = 0
        self._groups: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._http = httpx.AsyncClient(timeout=5)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="webhooks")

    async def aclose(self) -> None:
        await cancel_and_wait(self._task)
        await self._http.aclose()

    def backofftext(self, deliveries: int) -> float:
        return float(min(3600.0, self.retry_base_s * 2 ** max(0, deliveries - 1)))

    async def _run(self) -> None:
        await keep_doing(self.pump, lambda: self.poll_s, "webhooks", log)

    async def _outboxes(self) -> list[tuple[str, str]]:
        out = []
        for bid in await recent_ids(self.redis):
            box = key(bid, "outbox")
            if box not in self._groups:
                with contextlib.suppress(ResponseError):  # BUSYGROUP: it exists
                    await self.redis.xgroup_create(box, GROUP, id="0", mkstream=True)
                self._groups.add(box)
            out.append((bid, box))
        return out

    async def pump(self) -> int:
        """One round: deliver new entries, retry due ones. How many were delivered."""
        done = 0
        boxes = await self._outboxes()
        if not boxes:
            return 0
        got: Any = await self.redis.xreadgroup(
            GROUP, self.consumer, {box: ">" for _, box in boxes}, count=100
        )
        bids = {box: bid for bid, box in boxes}
        for box_raw, entries in got or []:
            box = text(box_raw)
            for entry_id, fields in entries:
                done += await self._attempt(bids[box], box, text(entry_id), fields, 1)
        for bid, box in boxes:
            done += await self._retry(bid, box)
        return done

    async def _retry(self, bid: str, box: str) -> int:
        idle_ms = int(self.retry_base_s * 1000)
        pending: Any = await self.redis.xpending_range(box, GROUP, "-", "+", 50, idle=idle_ms)
        done = 0
        for p in pending:
            entry_id, deliveries = text(p["message_id"]), int(p["times_delivered"])
            if p["time_since_delivered"] < self.backofftext(deliveries) * 1000:
                continue
            claimed: Any = await self.redis.xclaim(
                box, GROUP, self.consumer, int(self.backofftext(deliveries) * 1000), [entry_id]
            )
            for cid, fields in claimed:
                if deliveries >= self.max_attempts:
                    await self.redis.xadd(f"{box}:dead", {k: v for k, v in fields.items()},
                                          maxlen=DEAD_MAXLEN, approximate=True)  # fmt: skip
                    await self._done(box, text(cid))
                    log.error("webhook %s gave up after %d attempts", entry_id, deliveries,
                              extra={"bid": bid})  # fmt: skip
                    continue
                done += await self._attempt(bid, box, text(cid), fields, deliveries + 1)
        return done

    async def _done(self, box: str, entry_id: str) -> None:
        """Delivered (or given up): acknowledged and deleted, so the outbox holds only what is
        still to be sent."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(box, GROUP, entry_id)
            pipe.xdel(box, entry_id)
            await pipe.execute()

    async def _attempt(self, bid: str, box: str, entry_id: str, fields: Any, n: int) -> int:
        f = {text(k): text(v) for k, v in fields.items()}
        row = await self.orders.get(f["order"])
        if row is None:  # nothing to tell
            await self._done(box, entry_id)
            return 0
        data = public_order(row)
        if (f.get("reason") and f["reason"] != data.get("status")) or f.get("reason"):
            data["reason"] = f["reason"]
        payload = {
            "type": f["type"],
            "timestamp": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
            "data": data,
        }
        body = json.dumps(payload, ensure_ascii=False).encode()
        msg_id = f"{bid}:{entry_id}"
        ts = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(ts),
            "webhook-signature": sign(self.secret, msg_id, ts, body),
        }
        try:
            r = await self._http.post(self.url, content=body, headers=headers)
            ok = 200 <= r.status_code < 300
        except httpx.HTTPError:
            ok = False
        if ok:
            await self._done(box, entry_id)
            self.delivered += 1
            return 1
        self.failed_attempts += 1
        log.info("webhook %s attempt %d failed; will retry", msg_id, n, extra={"bid": bid})
        return 0
