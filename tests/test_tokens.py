"""core.tokens: signed, expiring role tokens scoped to one broadcast."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from core.problems import BadRequest, Forbidden, Unauthorized
from core.tokens import Claims, Role, TokenSigner, parse_role

NOW = 1_700_000_000.0


@pytest.fixture
def signer() -> TokenSigner:
    return TokenSigner("unit-test-secret", ttl_s=600)


def _payload(token: str) -> dict[str, object]:
    body = token.partition(".")[0]
    doc: dict[str, object] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    return doc


def _encode(doc: dict[str, object]) -> str:
    raw = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize("role", list(Role))
def test_issue_verify_round_trip(signer: TokenSigner, role: Role) -> None:
    token, issued = signer.issue("b42", role, "Seller", user_id="u_1", now=NOW)
    claims = signer.verify(token, now=NOW + 1)
    assert claims == issued
    assert claims == Claims("b42", role, "u_1", "Seller", int(NOW) + 600, joined_at=int(NOW * 1000))


def test_round_trip_keeps_hangul_names(signer: TokenSigner) -> None:
    name = "김사장님 🍎 장터"
    token, _ = signer.issue("b1", Role.HOST, name, now=NOW)
    assert token.isascii()  # safe for an Authorization header
    assert signer.verify(token, now=NOW).name == name
    assert _payload(token)["n"] == name


def test_user_id_is_generated_and_unique(signer: TokenSigner) -> None:
    ids = {signer.issue("b1", Role.VIEWER, "guest", now=NOW)[1].user_id for _ in range(50)}
    assert len(ids) == 50
    assert all(uid.startswith("u_") for uid in ids)


def test_explicit_ttl_overrides_the_default(signer: TokenSigner) -> None:
    _, claims = signer.issue("b1", Role.VIEWER, "g", ttl_s=5, now=NOW)
    assert claims.expires_at == int(NOW) + 5


def test_tampered_payload_is_rejected(signer: TokenSigner) -> None:
    token, _ = signer.issue("b1", Role.VIEWER, "guest", now=NOW)
    doc = _payload(token)
    doc["r"] = "host"  # promote ourselves, keep the old signature
    forged = f"{_encode(doc)}.{token.partition('.')[2]}"
    with pytest.raises(Unauthorized) as err:
        signer.verify(forged, now=NOW)
    assert err.value.code == "bad_token"
    assert err.value.status == 401


def test_tampered_signature_is_rejected(signer: TokenSigner) -> None:
    token, _ = signer.issue("b1", Role.VIEWER, "guest", now=NOW)
    body, _, sig = token.partition(".")
    flipped = sig[:-1] + ("A" if sig[-1] != "A" else "B")
    with pytest.raises(Unauthorized) as err:
        signer.verify(f"{body}.{flipped}", now=NOW)
    assert err.value.code == "bad_token"


def test_other_secret_is_rejected(signer: TokenSigner) -> None:
    token, _ = TokenSigner("another-secret", 600).issue("b1", Role.HOST, "x", now=NOW)
    with pytest.raises(Unauthorized) as err:
        signer.verify(token, now=NOW)
    assert err.value.code == "bad_token"


@pytest.mark.parametrize(
    "token",
    ["", ".", "abc", "abc.", ".abc", "한글.토큰", "abc.def.ghi", "bm90IGpzb24.c2ln"],
)
def test_malformed_tokens_are_unauthorized(signer: TokenSigner, token: str) -> None:
    with pytest.raises(Unauthorized) as err:
        signer.verify(token, now=NOW)
    assert err.value.code == "bad_token"


@pytest.mark.parametrize(
    "doc",
    [
        {"b": "b1", "r": "emperor", "u": "u", "n": "n", "x": 2_000_000_000},
        {"b": "b1", "r": "host", "u": "u", "n": "n"},
        {"b": "b1", "r": "host", "u": "u", "n": "n", "x": "soon"},
        ["b1", "host"],
    ],
)
def test_validly_signed_but_bad_claims_are_unauthorized(signer: TokenSigner, doc: object) -> None:
    body = _encode(doc)  # type: ignore[arg-type]
    token = f"{body}.{signer._sign(body)}"
    with pytest.raises(Unauthorized) as err:
        signer.verify(token, now=NOW)
    assert err.value.code == "bad_token"


def test_non_ascii_signature_is_unauthorized_not_a_crash(signer: TokenSigner) -> None:
    token, _ = signer.issue("b1", Role.VIEWER, "guest", now=NOW)
    body = token.partition(".")[0]
    with pytest.raises(Unauthorized):
        signer.verify(f"{body}.sig\u00e9", now=NOW)


def test_expired_token(signer: TokenSigner) -> None:
    token, claims = signer.issue("b1", Role.HOST, "host", ttl_s=60, now=NOW)
    assert signer.verify(token, now=claims.expires_at).expires_at == claims.expires_at
    with pytest.raises(Unauthorized) as err:
        signer.verify(token, now=claims.expires_at + 1)
    assert err.value.code == "token_expired"


def test_expiry_uses_the_clock_when_now_is_omitted(signer: TokenSigner) -> None:
    token, _ = signer.issue("b1", Role.HOST, "host", ttl_s=60, now=NOW)  # long ago
    with pytest.raises(Unauthorized) as err:
        signer.verify(token)
    assert err.value.code == "token_expired"
    fresh, _ = signer.issue("b1", Role.HOST, "host")
    assert signer.verify(fresh).role is Role.HOST


def test_wrong_broadcast_is_forbidden(signer: TokenSigner) -> None:
    token, _ = signer.issue("b1", Role.HOST, "host", now=NOW)
    claims = signer.verify(token, now=NOW)
    claims.require_broadcast("b1")
    with pytest.raises(Forbidden) as err:
        claims.require_broadcast("b2")
    assert err.value.code == "wrong_broadcast"
    assert err.value.status == 403


@pytest.mark.parametrize("role", list(Role))
def test_role_checks(role: Role) -> None:
    claims = Claims("b1", role, "u", "n", 0)
    publishers = (Role.HOST, Role.COHOST)
    if role in publishers:
        claims.require_role(*publishers)
    else:
        with pytest.raises(Forbidden) as err:
            claims.require_role(*publishers)
        assert err.value.code == "wrong_role"
        assert role.value in err.value.detail
    claims.require_role(*Role)
    others = [r for r in Role if r is not role]
    with pytest.raises(Forbidden):
        claims.require_role(*others)


def test_parse_role() -> None:
    for role in Role:
        assert parse_role(role.value) is role
    for bad in ("HOST", "admin", "", None, 3):
        with pytest.raises(BadRequest) as err:
            parse_role(bad)
        assert err.value.code == "bad_role"


def test_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        TokenSigner("", 60)


def test_guest_keys_make_one_person_of_many_tokens(signer: TokenSigner) -> None:
    key = signer.issue_guest(now=NOW)
    guest = signer.verify_guest(key)
    assert guest.created_at == int(NOW * 1000) and not guest.verified
    a, ca = signer.issue("b1", Role.VIEWER, "a", guest=guest, now=NOW + 100)
    b, cb = signer.issue("b1", Role.VIEWER, "b", guest=guest, now=NOW + 200)
    assert a != b and ca.user_id == cb.user_id == guest.user_id
    assert signer.verify(b, now=NOW + 201).joined_at == int(NOW * 1000)
    assert signer.issue_guest(now=NOW) != key  # another person
    verified = signer.verify_guest(signer.issue_guest(now=NOW, verified_as="p_abc"))
    assert verified.verified and verified.user_id == "g_p_abc"
    assert signer.verify(signer.issue("b1", Role.VIEWER, "v", guest=verified)[0]).verified


@pytest.mark.parametrize("mangle", [
    lambda k: k + "x", lambda k: k.replace(".", ""), lambda k: "e30." + k.split(".")[1],
    lambda k: k.split(".")[0] + ".\u00e9", lambda k: "",
])  # fmt: skip
def test_forged_guest_keys_are_refused(signer: TokenSigner, mangle: Any) -> None:
    with pytest.raises(Unauthorized):
        signer.verify_guest(mangle(signer.issue_guest(now=NOW)))


def test_a_role_token_is_not_a_guest_key_and_back(signer: TokenSigner) -> None:
    token, _ = signer.issue("b1", Role.HOST, "h")
    with pytest.raises(Unauthorized):
        signer.verify_guest(token)
    with pytest.raises(Unauthorized):
        signer.verify(signer.issue_guest())
