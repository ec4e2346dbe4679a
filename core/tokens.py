"""Signed, expiring role tokens scoped to one broadcast.

Format: ``<payload>.<signature>``, both base64url without padding; the payload is compact JSON
``{"b": bid, "r": role, "u": user_id, "n": name, "x": expires_epoch_s}`` (plus ``"j"``, when the
holder's identity was made, epoch ms, and ``"v": 1`` for a verified phone) and the
signature is HMAC-SHA256 over the encoded payload with ``JANGTEO_SECRET``. Any process with the
secret can verify a token without Redis.

Guest keys are the identity a guest viewer keeps (the page stores it): ``{"g": id, "t":
made_epoch_ms[, "p": 1]}`` signed the same way under another label, valid for every broadcast of
the deployment. A guest token issued for a key carries the user id ``g_<id>``, so bans, slow mode,
chat limits and per-buyer limits follow the person, not the token.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import hashlib
import hmac
import json
import secrets
import time

from .problems import BadRequest, Forbidden, Unauthorized


class Role(enum.StrEnum):
    HOST = "host"
    COHOST = "cohost"
    MODERATOR = "moderator"
    VIEWER = "viewer"


@dataclasses.dataclass(frozen=True)
class Claims:
    broadcast_id: str
    role: Role
    user_id: str
    name: str
    expires_at: int  # epoch seconds
    joined_at: int = 0  # epoch ms the holder's identity was made (0: unknown)
    verified: bool = False  # the identity carries a verified phone
    generation: int = 0  # the broadcast's token generation at issue (jangteo/revocation.py)

    def require_broadcast(self, bid: str) -> None:
        if self.broadcast_id != bid:
            raise Forbidden("this token belongs to another broadcast", code="wrong_broadcast")

    def require_role(self, *roles: Role) -> None:
        if self.role not in roles:
            allowed = ", ".join(r.value for r in roles)
            raise Forbidden(f"role {self.role.value} may not do this (needs {allowed})")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def parse_role(value: object) -> Role:
    try:
        return Role(str(value))
    except ValueError:
        names = ", ".join(r.value for r in Role)
        raise BadRequest(f"role must be one of {names}", code="bad_role") from None


CACHE_SIZE = 50_000
GUEST_LABEL = b"guest-key."


@dataclasses.dataclass(frozen=True)
class Guest:
    id: str
    created_at: int  # epoch ms
    verified: bool = False

    @property
    def user_id(self) -> str:
        return f"g_{self.id}"


class TokenSigner:
    def __init__(self, secret: str, ttl_s: int) -> None:
        if not secret:
            raise ValueError("token secret is empty")
        self._key = secret.encode()
        self.ttl_s = ttl_s
        self._cache: dict[str, Claims] = {}

    def issue(
        self,
        broadcast_id: str,
        role: Role,
        name: str,
        user_id: str | None = None,
        ttl_s: int | None = None,
        now: float | None = None,
        guest: Guest | None = None,
        generation: int = 0,
    ) -> tuple[str, Claims]:
        now = time.time() if now is None else now
        claims = Claims(
            broadcast_id=broadcast_id,
            role=role,
            user_id=guest.user_id if guest else user_id or "u_" + secrets.token_hex(6),
            name=name,
            expires_at=int(now) + (self.ttl_s if ttl_s is None else ttl_s),
            joined_at=guest.created_at if guest else int(now * 1000),
            verified=guest.verified if guest else False,
            generation=generation,
        )
        doc: dict[str, object] = {
            "b": claims.broadcast_id,
            "r": claims.role.value,
            "u": claims.user_id,
            "n": claims.name,
            "x": claims.expires_at,
            "j": claims.joined_at,
        }
        if claims.verified:
            doc["v"] = 1
        if generation:
            doc["g"] = generation
        body = _b64(json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode())
        return f"{body}.{self._sign(body)}", claims

    def issue_guest(self, now: float | None = None, verified_as: str | None = None) -> str:
        """A new guest key (a new person), or -- ``verified_as``, a phone's stable id -- the key
        of that verified person (every identity verified with one phone is one person)."""
        doc: dict[str, object] = {
            "g": verified_as or secrets.token_hex(8),
            "t": int((time.time() if now is None else now) * 1000),
        }
        if verified_as:
            doc["p"] = 1
        body = _b64(json.dumps(doc, separators=(",", ":")).encode())
        return f"{body}.{self._sign(body, GUEST_LABEL)}"

    def verify_guest(self, key: str) -> Guest:
        body, dot, sig = key.partition(".")
        try:
            ok = (
                bool(dot)
                and sig.isascii()
                and hmac.compare_digest(self._sign(body, GUEST_LABEL), sig)
            )
            raw = json.loads(_unb64(body)) if ok else None
            guest = Guest(str(raw["g"]), int(raw["t"]), bool(raw.get("p"))) if raw else None
        except (ValueError, KeyError, TypeError, UnicodeEncodeError):
            guest = None
        if guest is None or not 0 < len(guest.id) <= 40:
            raise Unauthorized("this guest key is not one of ours", code="bad_guest_key")
        return guest

    def _sign(self, body: str, label: bytes = b"") -> str:
        mac = hmac.new(self._key, label + body.encode("ascii"), hashlib.sha256)
        return _b64(mac.digest())

    def verify(self, token: str, now: float | None = None) -> Claims:
        """The token's claims; Unauthorized if forged, malformed or expired.

        A token seen before is answered from a bounded cache (its expiry is still checked):
        buyers and chatters present the same token on every request.
        """
        now = time.time() if now is None else now
        cached = self._cache.get(token)
        if cached is not None:
            if cached.expires_at < now:
                raise Unauthorized("token expired", code="token_expired")
            return cached
        claims = self._verify(token, now)
        if len(self._cache) >= CACHE_SIZE:
            self._cache.pop(next(iter(self._cache)))  # oldest first: a FIFO is enough here
        self._cache[token] = claims
        return claims

    def _verify(self, token: str, now: float) -> Claims:
        body, dot, sig = token.partition(".")
        if not dot or not body or not sig:
            raise Unauthorized("malformed token", code="bad_token")
        try:
            expected = self._sign(body)
        except UnicodeEncodeError:
            raise Unauthorized("malformed token", code="bad_token") from None
        if not sig.isascii() or not hmac.compare_digest(expected, sig):
            raise Unauthorized("token signature does not match", code="bad_token")
        try:
            raw = json.loads(_unb64(body))
            claims = Claims(
                broadcast_id=str(raw["b"]),
                role=Role(raw["r"]),
                user_id=str(raw["u"]),
                name=str(raw["n"]),
                expires_at=int(raw["x"]),
                joined_at=int(raw.get("j", 0)),
                verified=bool(raw.get("v")),
                generation=int(raw.get("g", 0)),
            )
        except (ValueError, KeyError, TypeError):
            raise Unauthorized("malformed token", code="bad_token") from None
        if claims.expires_at < now:
            raise Unauthorized("token expired", code="token_expired")
        return claims
