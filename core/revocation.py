"""Revoking a broadcast's tokens: a generation counter.

Tokens carry the broadcast's token generation when they were issued (``"g"``); revoking bumps
``token_gen`` in ``jt:{bid}:meta`` and every token of an older generation is refused (401
``token_revoked``). Each process keeps a broadcast's generation for CACHE_S, so a revocation
holds everywhere within that time without a Redis read per request.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis

from .keys import key
from .problems import Unauthorized
from .tokens import Claims, TokenSigner

CACHE_S = 2.0
_MAX_CACHED = 10_000


class Revocations:
    def __init__(self, redis: Redis, cache_s: float = CACHE_S) -> None:
        self.redis = redis
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, int]] = {}

    async def generation(self, bid: str) -> int:
        now = time.monotonic()
        hit = self._cache.get(bid)
        if hit is not None and now - hit[0] < self.cache_s:
            return hit[1]
        gen = int(await self.redis.hget(key(bid, "meta"), "token_gen") or 0)
        if len(self._cache) >= _MAX_CACHED:
            self._cache.clear()
        self._cache[bid] = (now, gen)
        return gen

    async def check(self, claims: Claims) -> None:
        if claims.generation < await self.generation(claims.broadcast_id):
            raise Unauthorized("this token was revoked; ask for a new one", code="token_revoked")

    async def revoke(self, bid: str) -> int:
        """Every token of ``bid`` issued so far stops working; the new generation."""
        gen = int(await self.redis.hincrby(key(bid, "meta"), "token_gen", 1))
        self._cache[bid] = (time.monotonic(), gen)
        return gen


class Verifier:
    """A token to its claims for one broadcast: signature and expiry, scope, then revocation."""

    def __init__(self, signer: TokenSigner, revocations: Revocations) -> None:
        self.signer = signer
        self.revocations = revocations

    async def claims(self, token: str | None, bid: str) -> Claims:
        if token is None:
            raise Unauthorized("send a token: Authorization: Bearer <token>")
        c = self.signer.verify(token)
        c.require_broadcast(bid)
        await self.revocations.check(c)
        return c
