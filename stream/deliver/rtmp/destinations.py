"""Where a broadcast is restreamed: RTMP(S) destinations, their checks and their records.

A destination's URL is ``rtmp://`` or ``rtmps://host[:port]/app[/…]/streamkey``; the last path
segment is the stream key, a secret: answers show ``…/app/****`` (:func:`masked`), logs never
carry it, and the record keeps the URL encrypted with a key derived from the deployment's
secret (``jt:{bid}:destinations``). What each destination is doing right now is kept beside it
(``jt:{bid}:restream``), written by the process pushing it, read by any.

A destination must not point into the server's own network: every address its host resolves to
is checked (loopback, private, link-local, multicast, reserved → refused unless
``JANGTEO_RESTREAM_ALLOW_PRIVATE=1``), when it is added and again right before each connection,
which then goes to the very address that was checked (no DNS rebinding in between).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import ipaddress
import json
import secrets
import socket
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cryptography.fernet import Fernet, InvalidToken
from redis.asyncio import Redis

from core.keys import key
from core.problems import Conflict, Unprocessable

MAX_DESTINATIONS = 5
SCHEMES = {"rtmp": 1935, "rtmps": 443}
STATUSES = ("idle", "connecting", "live", "retrying", "failed")


class BadDestination(Unprocessable):
    default_code = "bad_destination_url"


class PrivateDestination(Unprocessable):
    default_code = "private_destination"


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """A parsed destination URL."""

    scheme: str
    host: str
    port: int
    path: str  # /app/…/streamkey (the key may end in ?…)

    @property
    def url(self) -> str:
        return urlunsplit((self.scheme, f"{self.host}:{self.port}", self.path, "", ""))

    def at(self, address: str) -> str:
        """The URL with its host replaced by ``address`` (what is actually connected to)."""
        host = f"[{address}]" if ":" in address else address
        return urlunsplit((self.scheme, f"{host}:{self.port}", self.path, "", ""))


def parse(url: str) -> Target:
    if not isinstance(url, str) or len(url) > 2000:
        raise BadDestination("url must be a string of at most 2000 characters")
    parts = urlsplit(url.strip())
    if parts.scheme not in SCHEMES:
        raise BadDestination("the url must start with rtmp:// or rtmps://")
    if not parts.hostname or parts.username or parts.password:
        raise BadDestination("the url needs a host (and no user:password@)")
    try:
        port = parts.port or SCHEMES[parts.scheme]
    except ValueError:
        raise BadDestination("the url's port is not a number") from None
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) < 2:
        raise BadDestination("the url must end in /app/streamkey")
    if parts.fragment:
        raise BadDestination("a stream url has no #fragment")
    query = f"?{parts.query}" if parts.query else ""  # some platforms' keys carry one
    return Target(parts.scheme, parts.hostname, port, "/" + "/".join(segments) + query)


def masked(url: str) -> str:
    """``rtmp://host/app/****``: the URL without its stream key."""
    try:
        t = parse(url)
    except BadDestination:
        return "****"
    app = t.path.rsplit("/", 1)[0]
    port = "" if t.port == SCHEMES[t.scheme] else f":{t.port}"
    return f"{t.scheme}://{t.host}{port}{app}/****"


def scrub(text: str, url: str) -> str:
    """``text`` (an error message) without the destination's URL or stream key in it."""
    key_ = url.rstrip("/").rsplit("/", 1)[-1]
    out = text.replace(url, masked(url))
    return out.replace(key_, "****") if len(key_) >= 4 else out


def public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    return not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
                or ip.is_reserved or ip.is_unspecified)  # fmt: skip


async def resolve(target: Target, allow_private: bool) -> list[str]:
    """The addresses to connect to; PrivateDestination if any is not public (unless allowed)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise BadDestination(f"cannot resolve {target.host!r}: {exc.strerror or exc}") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise BadDestination(f"{target.host!r} has no address")
    if not allow_private and not all(public_address(a) for a in addresses):
        raise PrivateDestination(
            f"{target.host!r} is a loopback or private address: restreaming goes to the internet"
        )
    return addresses


def _fernet(secret: str) -> Fernet:
    digest = hashlib.sha256(f"jangteo-restream:{secret}".encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def destinations_key(bid: str) -> str:
    return key(bid, "destinations")


def status_key(bid: str) -> str:
    return key(bid, "restream")


@dataclasses.dataclass(frozen=True)
class Destination:
    id: str
    name: str
    url: str  # the real one (decrypted): never in an answer or a log
    rendition: str
    created_at: int

    def public(self, status: dict[str, Any] | None = None) -> dict[str, Any]:
        status = status or {"status": "idle", "since": self.created_at, "bytes_sent": 0,
                            "last_error": None}  # fmt: skip
        return {"id": self.id, "name": self.name, "url": masked(self.url),
                "rendition": self.rendition, "created_at": self.created_at} | status  # fmt: skip


class DestinationStore:
    def __init__(self, redis: Redis, secret: str) -> None:
        self.redis = redis
        self._fernet = _fernet(secret)

    async def add(self, bid: str, name: str, url: str, rendition: str) -> Destination:
        d = Destination("d" + secrets.token_hex(4), name, url, rendition, int(time.time() * 1000))
        record = {"id": d.id, "name": d.name, "rendition": rendition, "created_at": d.created_at,
                  "url": self._fernet.encrypt(url.encode()).decode()}  # fmt: skip
        # at most MAX_DESTINATIONS, checked and written in one step
        added = await self.redis.eval(_ADD, 1, destinations_key(bid), d.id, json.dumps(record),
                                      MAX_DESTINATIONS)  # fmt: skip
        if not added:
            raise TooManyDestinations(f"at most {MAX_DESTINATIONS} destinations per broadcast")
        return d

    async def all(self, bid: str) -> list[Destination]:
        raw: Any = await self.redis.hgetall(destinations_key(bid))
        out = []
        for value in raw.values():
            doc = json.loads(value)
            try:
                url = self._fernet.decrypt(doc["url"].encode()).decode()
            except InvalidToken:  # the secret changed: the key cannot be read back
                url = "rtmp://invalid/secret-changed/****"
            out.append(Destination(doc["id"], doc["name"], url, doc["rendition"],
                                   int(doc["created_at"])))  # fmt: skip
        return sorted(out, key=lambda d: d.created_at)

    async def remove(self, bid: str, did: str) -> bool:
        removed = int(await self.redis.hdel(destinations_key(bid), did))
        await self.redis.hdel(status_key(bid), did)
        return removed > 0

    async def statuses(self, bid: str) -> dict[str, dict[str, Any]]:
        raw: Any = await self.redis.hgetall(status_key(bid))
        return {k.decode() if isinstance(k, bytes) else k: json.loads(v) for k, v in raw.items()}

    async def set_status(self, bid: str, did: str, status: dict[str, Any]) -> None:
        await self.redis.hset(status_key(bid), did, json.dumps(status))


class TooManyDestinations(Conflict):
    default_code = "too_many_destinations"


_ADD = """
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""
