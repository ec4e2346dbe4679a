"""Guests: the identity a guest keeps, display names, and phone verification for strict sales.

A guest viewer asks for a token with the guest key it kept (``POST …/tokens {"guest"}``) and is
the same person again (user id ``g_<id>``); without one it gets a new identity, at most
``guest_identities_per_min`` a minute from one address (429 ``too_many_guests``).

Phone verification (``JANGTEO_PHONE_VERIFIER``; ``test`` answers the code instead of sending a
text message, for demos and tests; ``none`` turns it off):

    POST /api/guests/phone          {guest, phone}        202 {expires_in_s[, code]}
    POST /api/guests/phone/confirm  {guest, phone, code}  200 {guest, user_id, verified: true}

The confirmed key's identity is derived from the phone number (``g_p_<hmac>``), so every device
verified with one phone is one buyer to per-buyer limits, and deals pinned with ``eligible:
"verified"`` sell only to such buyers. Codes: 6 digits, 5 minutes, 5 tries; at most 3 codes per
phone per 10 minutes and 10 per address.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from chat.normalize import TextRejected, check_text, fold
from core.keys import text
from core.problems import BadRequest, NotFound, TooManyRequests, Unauthorized, Unprocessable
from core.tokens import Guest
from core.web import client_address, json_body

from .context import ctx

MAX_NAME = 40
# names a guest may not take: they would pass for the merchant's staff or the service itself
_STAFF_WORDS = ("admin", "moderator", "관리자", "운영자", "모더레이터", "공지", "official", "공식",
                "system", "시스템", "staff", "스태프", "jangteo")  # fmt: skip
_STAFF_NAMES = ("host", "호스트", "사장님", "장터", "판매자", "seller")
CODE_TTL_S = 300
CODE_TRIES = 5
_PHONE = re.compile(r"\+?[0-9]{8,15}")


def display_name(doc: dict[str, Any], default: str, *, guest: bool) -> str:
    """A display name under the chat's text rules (no control, bidi or zero-width characters);
    a guest's may not look like staff."""
    value = doc.get("name", default)
    if not isinstance(value, str):
        raise BadRequest("name must be a string", code="bad_name")
    try:
        name = check_text(value, MAX_NAME)
    except TextRejected as exc:
        raise BadRequest(f"name: {exc.detail}", code="bad_name") from None
    folded = fold(name)
    if guest and (folded in _STAFF_NAMES or any(w in folded for w in _STAFF_WORDS)):
        raise Unprocessable("that name is kept for the broadcast's staff", code="reserved_name")
    return name


def _retry(wait: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(wait)))}


async def guest_identity(request: Request, bid: str, presented: object) -> tuple[str, Guest]:
    """The guest's kept identity, or a new one within the per-address rate."""
    app = ctx(request)
    if isinstance(presented, str) and presented:
        try:
            return presented, app.signer.verify_guest(presented)
        except Unauthorized:
            pass  # not ours (another deployment, an old secret): a new identity, as if none
    per_min = app.settings.guest_identities_per_min
    address = client_address(request)
    wait = await app.buckets.take(f"jt:{{{bid}}}:guests:{address}", per_min, per_min)
    if wait:
        raise TooManyRequests(
            "too many new guests from your address; keep your guest key, or try again shortly",
            code="too_many_guests",
            headers=_retry(wait),
        )
    fresh = app.signer.issue_guest()
    return fresh, app.signer.verify_guest(fresh)


def _phone(doc: dict[str, Any]) -> str:
    raw = doc.get("phone")
    digits = re.sub(r"[\s().-]", "", raw) if isinstance(raw, str) else ""
    if not _PHONE.fullmatch(digits):
        raise BadRequest("phone: 8 to 15 digits, e.g. 010-1234-5678", code="bad_phone")
    return digits


def _phone_id(secret: str, phone: str) -> str:
    return (
        "p_"
        + hmac.new(secret.encode(), b"phone:" + phone.encode(), hashlib.sha256).hexdigest()[:16]
    )


async def _verifying(request: Request) -> tuple[dict[str, Any], Guest, str]:
    app = ctx(request)
    if app.settings.phone_verifier == "none":
        raise NotFound("phone verification is not configured here", code="verification_unavailable")
    doc = await json_body(request)
    key = doc.get("guest")
    if not isinstance(key, str):
        raise BadRequest("send the guest key you keep", code="bad_guest_key")
    guest = app.signer.verify_guest(key)
    return doc, guest, _phone_id(app.settings.secret, _phone(doc))


async def send_code(request: Request) -> JSONResponse:
    app = ctx(request)
    _, guest, pid = await _verifying(request)
    for bucket, per_10min in ((f"jt:{{{pid}}}:phone:sends", 3),
                              (f"jt:{{phone}}:sends:{client_address(request)}", 10)):  # fmt: skip
        wait = await app.buckets.take(bucket, per_10min / 10, per_10min)
        if wait:
            raise TooManyRequests("too many codes asked for; try again later",
                                  code="too_many_codes", headers=_retry(wait))  # fmt: skip
    code = f"{secrets.randbelow(1_000_000):06d}"
    k = f"jt:{{{pid}}}:phone:code"
    async with app.redis.pipeline(transaction=True) as pipe:
        pipe.delete(k)
        pipe.hset(k, mapping={"code": code, "guest": guest.id, "tries": 0})
        pipe.expire(k, CODE_TTL_S)
        await pipe.execute()
    body: dict[str, Any] = {"expires_in_s": CODE_TTL_S}
    if app.settings.phone_verifier == "test":  # no text message: the code comes back here
        body["code"] = code
    return JSONResponse(body, status_code=202)


async def confirm_code(request: Request) -> JSONResponse:
    app = ctx(request)
    doc, guest, pid = await _verifying(request)
    k = f"jt:{{{pid}}}:phone:code"
    tries = await app.redis.hincrby(k, "tries", 1)
    stored: Any = await app.redis.hmget(k, "code", "guest")
    if stored[0] is None:
        await app.redis.delete(k)
        raise Unprocessable("no code is waiting for this phone; ask for one", code="no_code")
    if tries > CODE_TRIES:
        await app.redis.delete(k)
        raise TooManyRequests("too many wrong codes; ask for a new one", code="too_many_tries")
    given = doc.get("code")
    if (
        not isinstance(given, str)
        or text(stored[1]) != guest.id
        or not hmac.compare_digest(given.encode(), stored[0])
    ):
        raise Unprocessable("that code is not the one we sent", code="wrong_code")
    await app.redis.delete(k)
    verified = app.signer.issue_guest(verified_as=pid)
    return JSONResponse({"guest": verified, "user_id": f"g_{pid}", "verified": True})


routes = [
    Route("/api/guests/phone", send_code, methods=["POST"]),
    Route("/api/guests/phone/confirm", confirm_code, methods=["POST"]),
]
