"""Schemathesis against the OpenAPI document the running server serves: no 5xx, and every answer
is one the document lists (status, content type, body schema).

A real server and a real Redis (conftest.py's ``server``); the schema is read from the server's
own ``/openapi.json``. For every operation a fresh live broadcast with a product, a pin, an order
of its viewer and, for the routes that name them, a WHIP or WHEP session or a restream
destination. Each generated request goes out as whoever the access table lets in first
(jangteo/access.py), then as its host, its viewer, the operator (admin key) or no one. In three of
four its path parameters, and body fields such as ``product_id``, name that broadcast's real
things so that handlers get past the 404s; media POSTs carry a real aiortc offer as often
(WHIP/WHEP SDP goes out as ``application/sdp`` text), payment callbacks the provider's signature.
Data both positive (the schema's) and negative (breaking it). The show is ended after each
operation. A second test sends every JSON operation the bodies no generator makes (none,
text/plain, not JSON, nested too deep, too large).

Left out, or taken as they are:

- ``GET /ws/{bid}``: the chat WebSocket's upgrade; schemathesis speaks plain HTTP (the socket is
  fuzzed frame by frame in tests/test_fuzz_chat.py).
- the media sessions never connect (the offering peer is closed): ICE and media are the media
  tests' business, the HTTP answers are this one's.
- a 503 the operation documents (the media starting) is an answer, not a server error, when it
  carries Retry-After.

CI: derandomized, 15 examples per operation (the file in 20-50 s on two cores);
``JANGTEO_FUZZ_PROFILE=long``: 2 000 per operation, random, about half an hour
(``JANGTEO_FUZZ_EXAMPLES=n``: n/10 per operation; tests/fuzz_profiles.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import time
from typing import Any

import pytest
import requests
import requests.auth
import schemathesis
from aiortc import RTCConfiguration, RTCPeerConnection
from hypothesis import given
from hypothesis import strategies as st
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core import NotSet
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.schemas import APIOperation, BaseSchema

from commerce.payments import sign
from jangteo.access import ACCESS
from jangteo.app import ICONS, STATIC
from jangteo.testkit.server import RunningServer, bearer

from .fuzz_profiles import LONG, fuzz

Operation = APIOperation[Any, Any, Any, Any]
TCase = Case[Any]
SKIPPED = {("GET", "/ws/{bid}")}
WHO = ("host", "viewer", "admin", "nobody")
TIMEOUT_S = 10.0
MEDIA_FILES = ("init0.mp4", "seg0.m4s", "part0.0.m4s", "replay.mp4", "index.m3u8")
DEEP = 40  # past core/web.py's MAX_JSON_DEPTH
PAST_THE_STACK = 3_000  # past the JSON parser's recursion (and in 8 KiB)
BAD_BODIES: dict[str, tuple[str | None, bytes, int]] = {  # what: (Content-Type, body, status)
    "no body": (None, b"", 415),
    "text/plain": ("text/plain", b"{}", 415),
    "not JSON": ("application/json", b'{"name": ', 400),
    "not an object": ("application/json", b"[]", 400),
    "too deep": ("application/json", b'{"a": ' + b"[" * DEEP + b"]" * DEEP + b"}", 422),
    "past the parser's stack": (
        "application/json",
        b'{"a": ' + b"[" * PAST_THE_STACK + b"]" * PAST_THE_STACK + b"}",
        422,
    ),
    "too large": ("application/json", b'{"name": "' + b"x" * 100_000 + b'"}', 413),
}
CALLBACK = "/api/payments/callback"
SDP = "application/sdp"
DESTINATION = {"name": "elsewhere", "url": "rtmp://1.1.1.1/live/secret-key"}  # a public address
# body fields that name real things: the path parameter of the same thing, or the guest key
BODY_FIELDS = {"product_id": "pid", "user_id": "uid", "order_id": "oid", "guest": "guest"}
_keys = itertools.count()
# SDP offers go out as the text they are (the WHIP/WHEP POSTs)
schemathesis.serializer.alias("application/sdp", "text/plain")


def not_an_undocumented_server_error(ctx: CheckContext, response: Response, case: TCase) -> None:
    """``not_a_server_error``, but a 503 the operation documents (the media starting) is an
    answer when it says when to come back (Retry-After)."""
    if response.status_code == 503 and "503" in case.operation.definition.raw["responses"]:
        assert response.headers.get("retry-after"), "a 503 without Retry-After"
        return
    not_a_server_error(ctx, response, case)


CHECKS = [
    not_an_undocumented_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


class _Bearer(requests.auth.AuthBase):
    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self.token}"
        return r


def _often(data: st.DataObject, what: str) -> bool:
    """Three times in four (and in the simplest example): the real thing."""
    return data.draw(st.integers(0, 3), label=f"not the real {what}") < 3


@dataclasses.dataclass(frozen=True)
class World:
    """One live broadcast's real things: what path parameters and credentials name."""

    bid: str
    tokens: dict[str, str | None]
    params: dict[str, tuple[str, ...]]
    payment_secret: str
    offers: dict[str, str]  # path: an SDP offer of a real peer (WHIP sends, WHEP receives)
    sessions: dict[str, str]  # path of a session: a real one's id

    def signed(self, body: bytes) -> dict[str, str]:
        """The headers of a payment callback the provider signed."""
        ts = int(time.time())
        return {
            "Content-Type": "application/json",
            "Jangteo-Timestamp": str(ts),
            "Jangteo-Signature": sign(self.payment_secret, ts, body),
        }

    def values(self, op: Operation, name: str) -> tuple[str, ...]:
        if name == "name":  # /static/{name} and /static/icons/{name}
            folder = ICONS if op.path.startswith("/static/icons/") else STATIC
            return tuple(sorted(p.name for p in folder.iterdir() if p.is_file()))[:8]
        if name == "sid":
            return (self.sessions[op.path],) if op.path in self.sessions else ()
        return self.params.get(name, ())


async def _offer(direction: str) -> str:
    """The SDP offer of an aiortc peer with a video and an audio transceiver; the peer is gone
    by the time the offer is sent (the server's sessions never connect)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        for kind in ("video", "audio"):
            pc.addTransceiver(kind, direction=direction)
        await pc.setLocalDescription(await pc.createOffer())
        sdp: str = pc.localDescription.sdp
        return sdp
    finally:
        await pc.close()


async def _session(server: RunningServer, kind: str, bid: str, token: str, offer: str) -> str:
    r = await server.http.post(
        f"/{kind}/{bid}", content=offer, headers=bearer(token) | {"Content-Type": SDP}
    )
    r.raise_for_status()
    return r.headers["location"].rsplit("/", 1)[1]


async def _world(server: RunningServer, op: Operation, offers: dict[str, str]) -> World:
    b = await server.live_broadcast()
    bid, host = b["id"], b["host_token"]
    http = server.http
    product = {"name": "사과", "price": 1000, "stock": 50}
    r = await http.put(f"/api/broadcasts/{bid}/products/p1", json=product, headers=bearer(host))
    r.raise_for_status()
    r = await http.post(f"/api/broadcasts/{bid}/pin", json={"product_id": "p1"},
                        headers=bearer(host))  # fmt: skip
    r.raise_for_status()
    r = await http.post(f"/api/broadcasts/{bid}/tokens", json={"role": "viewer", "name": "손님"})
    r.raise_for_status()
    viewer = r.json()
    r = await http.post(
        f"/api/broadcasts/{bid}/orders",
        json={"product_id": "p1", "qty": 1},
        headers=bearer(viewer["token"]) | {"Idempotency-Key": f"world-{next(_keys)}"},
    )
    r.raise_for_status()
    oid = r.json()["id"]
    about = (await http.get(f"/api/broadcasts/{bid}")).json()
    tokens = {
        "host": host,
        "viewer": viewer["token"],
        "admin": server.settings.admin_key,
        "nobody": None,
    }
    params = {
        "bid": (bid,),
        "pid": ("p1",),
        "oid": (oid,),
        "uid": (viewer["user_id"],),
        "mid": (about["merchant_id"],),
        "rung": tuple(r["name"] for r in about["renditions"]),
        "file": MEDIA_FILES,
        "guest": (viewer["guest"],),
    }
    names = {p.name for p in op.path_parameters}
    if "id" in names:  # the stream ids of the broadcast's events so far
        r = await http.get(f"/api/broadcasts/{bid}/chat", headers=bearer(host))
        params["id"] = tuple(e["id"] for e in r.json()["events"])
    if "did" in names:  # a destination (pushed to only while media flows: none here)
        r = await http.post(f"/api/broadcasts/{bid}/destinations", json=DESTINATION,
                            headers=bearer(host))  # fmt: skip
        r.raise_for_status()
        params["did"] = (r.json()["id"],)
    sessions = {}
    if "sid" in names:  # a real session, for its routes
        kind, token = ("whip", host) if op.path.startswith("/whip/") else ("whep", viewer["token"])
        sessions[op.path] = await _session(server, kind, bid, token, offers[f"/{kind}/{{bid}}"])
    return World(bid, tokens, params, server.ctx.settings.payment_secret, offers, sessions)


def _run_operation(op: Operation, world: World, base: str) -> list[str]:
    """Fuzz ``op``; the failures found, one of a kind (check and status) each."""
    found: dict[tuple[str, int], str] = {}
    names = [p.name for p in op.path_parameters]
    modes = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    session = requests.Session()

    @fuzz(0.1, ci_max=15, shared_fixture=True)
    @given(
        case=st.one_of([op.as_strategy(m) for m in modes]),
        who=st.sampled_from(sorted(WHO, key=lambda w: w != _allowed(op))),
        data=st.data(),
    )
    def run(case: TCase, who: str, data: st.DataObject) -> None:
        for name in names:
            values = world.values(op, name)
            if values and _often(data, name):
                case.path_parameters[name] = data.draw(st.sampled_from(values), label=name)
        if isinstance(case.body, dict):
            for field, name in BODY_FIELDS.items():
                if field in case.body and _often(data, field):
                    case.body[field] = data.draw(st.sampled_from(world.params[name]), label=field)
        token = world.tokens[who]
        headers = bearer(token) if token is not None else {}
        # on the session, not the case: a negative case may drop the case's Authorization
        session.auth = _Bearer(token) if token is not None else None
        extra: dict[str, Any] = {}
        offer = world.offers.get(op.path) if op.method.upper() == "POST" else None
        if offer is not None and _often(data, "offer"):
            case.body = offer
        if op.path == CALLBACK and not isinstance(case.body, NotSet) and _often(data, "signed"):
            body = case.body  # signed as the payment provider signs it
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            extra = {"data": raw, "headers": world.signed(raw)}
            headers = extra["headers"]
        response = case.call(base_url=base, session=session, timeout=TIMEOUT_S, **extra)
        if offer is not None and response.status_code == 201:  # leave: the next one starts afresh
            session.delete(base + response.headers["location"][0], timeout=TIMEOUT_S)
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except FailureGroup as group:
            for failure in group.exceptions:
                key = (type(failure).__name__, response.status_code)
                found.setdefault(
                    key,
                    f"{failure.title} (as {who}): {failure.message[:300]}\n"
                    f"{response.status_code} {response.text[:300]!r}\n"
                    + case.as_curl_command(headers=headers),
                )

    try:
        run()
    finally:
        session.close()
    return [f"{op.label}: {v}" for v in found.values()]


async def _end(server: RunningServer, world: World) -> None:
    """End the world's show (its publishers and viewers go): the next starts on a quiet server."""
    r = await server.http.post(f"/api/broadcasts/{world.bid}/end", headers=server.admin())
    assert r.status_code in (200, 409), r.text  # 409: an example ended it already


def _json_body(op: Operation) -> bool:
    return any(alt.media_type == "application/json" for alt in op.body)


def _allowed(op: Operation) -> str:
    """Who may call ``op``: the credentials to send it with (to get past the guard)."""
    who = ACCESS[(op.method.upper(), op.path)].who
    return next((w for w in ("host", "viewer", "admin") if w in who), "nobody")


def _refusals(op: Operation, world: World, base: str) -> list[str]:
    """Send ``op`` (a JSON body operation) each of :data:`BAD_BODIES`, as whoever may call it;
    the answers that are not the refusal expected, or not as documented."""
    names = [p.name for p in op.path_parameters]
    case = op.Case(path_parameters={n: (world.values(op, n) or ("0",))[0] for n in names})
    token = world.tokens[_allowed(op)]
    found = []
    with requests.Session() as session:
        for what, (content_type, body, expected) in BAD_BODIES.items():
            headers = {"Idempotency-Key": f"bad-{next(_keys)}"}
            if op.path == CALLBACK:
                headers |= world.signed(body)
            headers.pop("Content-Type", None)
            if content_type is not None:
                headers["Content-Type"] = content_type
            session.auth = _Bearer(token) if token is not None else None
            response = case.call(base_url=base, session=session, data=body, headers=headers,
                                 timeout=TIMEOUT_S)  # fmt: skip
            try:
                case.validate_response(response, checks=CHECKS, headers=headers)
            except FailureGroup as group:
                found += [
                    f"{op.label} {what}: {f.title}: {f.message[:200]}" for f in group.exceptions
                ]
            if response.status_code != expected:
                found.append(f"{op.label} {what}: {response.status_code} {response.text[:200]!r}"
                             f" (not {expected})")  # fmt: skip
    return found


async def _load(server: RunningServer) -> tuple[list[Operation], dict[str, str]]:
    """The operations of the document the server serves, and a real SDP offer for each media
    POST (WHIP sends, WHEP receives)."""
    url = f"{server.base_url}/openapi.json"
    schema: BaseSchema = await asyncio.to_thread(schemathesis.openapi.from_url, url)
    ops = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # a document schemathesis cannot read
        ops.append(result.ok())
    offers = {"/whip/{bid}": await _offer("sendonly"), "/whep/{bid}": await _offer("recvonly")}
    return ops, offers


@pytest.mark.timeout(10_800 if LONG else 120)
async def test_every_operation_answers_as_documented(server: RunningServer) -> None:
    ops, offers = await _load(server)
    assert len(ops) > 60
    failures: list[str] = []
    for op in ops:
        if (op.method.upper(), op.path) in SKIPPED:
            continue
        world = await _world(server, op, offers)
        failures += await asyncio.to_thread(_run_operation, op, world, server.base_url)
        await _end(server, world)
    assert not failures, "\n\n".join(failures)


async def test_every_json_body_refusal_is_documented(server: RunningServer) -> None:
    """Bodies no generator makes (none, another type, not JSON, nested past the parser's stack,
    too large) to every operation that reads JSON: the one refusal each, as documented."""
    ops, offers = await _load(server)
    ops = [op for op in ops if _json_body(op)]
    assert len(ops) >= 15
    failures: list[str] = []
    for op in ops:
        world = await _world(server, op, offers)
        failures += await asyncio.to_thread(_refusals, op, world, server.base_url)
        await _end(server, world)
    assert not failures, "\n".join(failures)
