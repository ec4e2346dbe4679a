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
from urllib.parse import parse_qsl, unquote, urlsplit

from cryptography.fernet import Fernet, InvalidToken
from redis.asyncio import Redis

from core.keys import key
from core.problems import Conflict, Unprocessable

MAX_DESTINATIONS = 5
SCHEMES = {"rtmp": 1935, "rtmps": 443}


class BadDestination(Unprocessable):
    default_code = "bad_destination_url"


class PrivateDestination(Unprocessable):
    default_code = "private_destination"


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """A parsed destination URL: ``scheme://host:port/app/key`` (the key may carry ``?…``)."""

    scheme: str
    host: str
    port: int
    app: str  # one or more path segments: "live2", "a/b"
    key: str  # the stream key: the last path segment and the query, if any

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def tc_url(self) -> str:
        """What RTMP's ``connect`` calls the application's URL (no key)."""
        return f"{self.scheme}://{self.netloc}/{self.app}"

    @property
    def url(self) -> str:
        return f"{self.tc_url}/{self.key}"

    @property
    def secret_parts(self) -> list[str]:
        """The pieces of the key that must not be seen: the whole key, the key without its
        query, each query value (as written and decoded) of 4 characters or more."""
        bare, _, query = self.key.partition("?")
        pieces = [self.key, bare, unquote(self.key), unquote(bare)]
        for _name, value in parse_qsl(query, keep_blank_values=True):
            pieces.append(value)
        for part in query.split("&"):
            pieces.append(part.partition("=")[2])
        return sorted({p for p in pieces if len(p) >= 4}, key=len, reverse=True)


def parse(url: str) -> Target:
    if not isinstance(url, str) or len(url) > 2000:
        raise BadDestination("url must be a string of at most 2000 characters")
    try:
        parts = urlsplit(url.strip())
        port = parts.port or SCHEMES.get(parts.scheme, 0)
    except ValueError:
        raise BadDestination("the url's host or port is not valid") from None
    if parts.scheme not in SCHEMES:
        raise BadDestination("the url must start with rtmp:// or rtmps://")
    if not parts.hostname or parts.username or parts.password:
        raise BadDestination("the url needs a host (and no user:password@)")
    try:  # what the resolver does first (socket.getaddrinfo): "a..b" is no name
        parts.hostname.encode("idna")
    except UnicodeError:
        raise BadDestination("the url's host is not a valid name") from None
    if parts.fragment:
        raise BadDestination("a stream url has no #fragment")
    if any(ch.isspace() or not ch.isprintable() for ch in parts.path + parts.query):
        # "…/app/key #" kept "key " (and "…/app/ #" a blank key): stored, it read back otherwise
        raise BadDestination("the url's path has spaces or control characters")
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) < 2:
        raise BadDestination("the url must end in /app/streamkey")
    key = segments[-1] + (f"?{parts.query}" if parts.query else "")  # some platforms' keys
    return Target(parts.scheme, parts.hostname, port, "/".join(segments[:-1]), key)


def masked(url: str) -> str:
    """``rtmp://host/app/****``: the URL without its stream key."""
    try:
        t = parse(url)
    except BadDestination:
        return "****"
    netloc = t.netloc.rsplit(":", 1)[0] if t.port == SCHEMES[t.scheme] else t.netloc
    return f"{t.scheme}://{netloc}/{t.app}/****"


def scrub(text: str, url: str) -> str:
    """``text`` (an error message, a server's words) without the stream key or any piece of it."""
    out = text.replace(url, masked(url))
    try:
        pieces = parse(url).secret_parts
    except BadDestination:
        pieces = [url]
    for piece in pieces:
        out = out.replace(piece, "****")
    return out


def public_address(address: str) -> bool:
    """Whether ``address`` is on the public internet, IPv4 inside IPv6 (mapped, 6to4, Teredo)
    included; carrier-grade NAT (100.64/10, where some clouds keep their metadata) is not."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if (inner is not None and not public_address(str(inner))) or ip.is_site_local:
            return False
    return ip.is_global and not ip.is_multicast


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
