"""The OpenAPI 3.1 document served at ``/openapi.json`` (tests/test_openapi.py holds it to the
app's routes): broadcasts, tokens, guests, media and pages here; chat and commerce beside."""

from __future__ import annotations

from typing import Any

from .. import __version__
from .chat import chat_paths, chat_socket
from .commerce import ORDER, PIN, PRODUCT, PRODUCT_INPUT, commerce
from .common import with_common_answers
from .media_out import hls_paths, replay_paths, restream_paths
from .numbers import numbers_paths
from .parts import (
    BID,
    BODY_ERRORS,
    BROADCAST_CREATED,
    BROADCAST_READ,
    COHOST_ANSWER,
    ERRORS,
    INT,
    LAYOUT_ANSWER,
    LAYOUT_NAMES,
    RENDITION,
    STR,
    TOKEN_ISSUED,
    TOKEN_REQUEST,
    html,
    json,
    json_body,
    json_object,
    media,
    problem,
    ref,
)

LAYOUT = {"type": "string", "enum": LAYOUT_NAMES}
TITLE = "^[^\\s\\x00-\\x1f][^\\x00-\\x1f]{0,199}$"  # 1-200 characters, no controls
PHONE = "^[\\s().-]*\\+?(?:[\\s().-]*[0-9]){8,15}[\\s().-]*$"
BINARY = {"type": "string", "format": "binary"}


def document() -> dict[str, Any]:
    return with_common_answers(_document())


def _document() -> dict[str, Any]:
    broadcast = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "string", "enum": ["scheduled", "live", "ended"]},
            "viewers": {"type": "integer", "description": "watching now, on every node"},
            "publishers": {"type": "integer"},
            "pinned": {"type": ["object", "null"]},
            "created_at": {"type": "integer", "description": "epoch ms"},
            "started_at": {"type": ["integer", "null"], "description": "epoch ms"},
            "ended_at": {"type": ["integer", "null"], "description": "epoch ms"},
            "orientation": {
                "type": "string",
                "enum": ["landscape", "portrait"],
                "description": "the shape of the picture (in GET /api/broadcasts/{bid})",
            },
            "merchant_id": {"type": "string", "description": "whose show"},
            "origin": {
                "type": ["object", "null"],
                "description": "the node carrying the media while a publisher is on (in GET "
                "/api/broadcasts/{bid}): {node, url}; the host's WHIP publisher makes its node the "
                "origin",
            },
            "nodes": {
                "type": "array",
                "items": {"type": "string", "format": "uri"},
                "description": "the live nodes' URLs, the answering node's first (in GET /api/"
                "broadcasts/{bid}; [] for one node; draining nodes left out): a player whose "
                "node fails tries the next",
            },
            "draining": {
                "type": "boolean",
                "description": "the answering node is being drained (in GET /api/broadcasts/"
                "{bid}): the pages move their calls and chat to one of `nodes`",
            },
            "renditions": {
                "type": "array",
                "description": "the rungs the picture is encoded at, highest first (in GET "
                "/api/broadcasts/{bid}); a viewer pins one with POST /whep/{bid}?rendition=NAME",
                "items": {
                    "type": "object",
                    "required": ["name", "width", "height", "bitrate"],
                    "properties": {
                        "name": {"type": "string", "examples": ["360p"]},
                        "width": {"type": "integer", "description": "pixels"},
                        "height": {"type": "integer", "description": "pixels"},
                        "bitrate": {"type": "integer", "description": "bit/s"},
                    },
                },
            },
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Jangteo",
            "version": __version__,
            "description": "Live-commerce broadcasting: WHIP in, WHEP out, chat and orders.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Problem": {
                    "type": "object",
                    "properties": {
                        k: {"type": "string"}
                        for k in ("type", "title", "code", "detail", "instance")
                    }
                    | {"status": {"type": "integer"}},
                },
                "Broadcast": broadcast,
                "ProductInput": PRODUCT_INPUT,
                "Product": PRODUCT,
                "Pin": PIN,
                "Order": ORDER,
            },
        },
        "paths": {
            **chat_paths(),
            "/api/broadcasts": {
                "post": {
                    "summary": "create a broadcast (admin key)",
                    "security": [{"bearer": []}],
                    "requestBody": {
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["title"],
                                    "properties": {
                                        "title": {"type": "string", "pattern": TITLE},
                                        "host_name": {"type": "string"},
                                        "orientation": {
                                            "type": "string",
                                            "enum": ["landscape", "portrait"],
                                        },
                                        "merchant_id": {
                                            "type": "string",
                                            "pattern": "^[A-Za-z0-9_-]{1,40}$",
                                            "description": "whose show (default: one merchant "
                                            "per broadcast); a merchant's shows add up",
                                        },
                                    },
                                }
                            }
                        }
                    },
                    "responses": {
                        "201": json("created; carries host_token", BROADCAST_CREATED),
                        **ERRORS,
                    },
                }
            },
            "/api/broadcasts/{bid}": {
                "parameters": [BID],
                "get": {
                    "summary": "broadcast status",
                    "responses": {
                        "200": json("ok", BROADCAST_READ),
                        "404": ERRORS["404"],
                    },
                },
            },
            "/api/broadcasts/{bid}/tokens": {
                "parameters": [BID],
                "post": {
                    "summary": "role token: host or admin for any role; anyone for a guest viewer",
                    "requestBody": TOKEN_REQUEST,
                    "responses": {
                        "201": TOKEN_ISSUED,
                        **ERRORS,
                        "429": problem("too many new guests from one address (too_many_guests)"),
                    },
                },
            },
            "/api/broadcasts/{bid}/tokens/revoke": {
                "parameters": [BID],
                "post": {
                    "summary": "revoke every token of the broadcast issued so far (host, admin)",
                    "security": [{"bearer": []}],
                    "responses": {
                        "200": json(
                            "{generation, host_token}: a fresh host token",
                            {
                                "type": "object",
                                "properties": {"generation": INT, "host_token": STR},
                            },
                        ),
                        **ERRORS,
                    },
                },
            },
            "/api/guests/phone": {
                "post": {
                    "summary": "phone verification: send a code to the guest's phone",
                    "description": "With the test verifier the code is answered instead of "
                    "texted. At most 3 codes per phone and 10 per address per 10 minutes.",
                    "requestBody": json_body(
                        {
                            "guest": {"type": "string", "description": "the guest key kept"},
                            "phone": {
                                "type": "string",
                                "pattern": PHONE,
                                "description": "8 to 15 digits (spaces, dots, dashes, brackets "
                                "between them are dropped)",
                            },
                        },
                        required=("guest", "phone"),
                    ),
                    "responses": {
                        "202": json(
                            "{expires_in_s[, code]}",
                            {
                                "type": "object",
                                "properties": {"expires_in_s": INT, "code": STR},
                            },
                        ),
                        "400": problem("bad_guest_key, bad_phone or bad JSON"),
                        "401": problem("the guest key is not ours"),
                        "404": problem("phone verification is not configured here"),
                        **BODY_ERRORS,
                        "429": problem("too many codes asked for (too_many_codes)"),
                    },
                },
            },
            "/api/guests/phone/confirm": {
                "post": {
                    "summary": "phone verification: confirm the code; answers a verified guest key",
                    "requestBody": json_body(
                        {
                            "guest": STR,
                            "phone": {"type": "string", "pattern": PHONE},
                            "code": {"type": "string", "pattern": "^[0-9]{6}$"},
                        },
                        required=("guest", "phone", "code"),
                    ),
                    "responses": {
                        "200": json(
                            "{guest, user_id, verified: true}",
                            {
                                "type": "object",
                                "properties": {
                                    "guest": STR,
                                    "user_id": STR,
                                    "verified": {"type": "boolean"},
                                },
                            },
                        ),
                        "400": problem("bad_guest_key, bad_phone or bad JSON"),
                        "401": problem("the guest key is not ours"),
                        "404": problem("phone verification is not configured here"),
                        **BODY_ERRORS,
                        "422": problem("no code is waiting (no_code), or a wrong_code"),
                        "429": problem("too many wrong codes (too_many_tries)"),
                    },
                },
            },
            "/api/broadcasts/{bid}/end": {
                "parameters": [BID],
                "post": {
                    "summary": "end the broadcast (host or admin)",
                    "security": [{"bearer": []}],
                    "responses": {
                        "200": json("ended: the broadcast", ref("Broadcast")),
                        **ERRORS,
                        "409": problem("already ended"),
                    },
                },
            },
            "/api/broadcasts/{bid}/layout": {
                "parameters": [BID],
                "get": {
                    "summary": "the layout of the publishers' pictures (anyone)",
                    "responses": {"200": json("{layout}", LAYOUT_ANSWER), "404": ERRORS["404"]},
                },
                "put": {
                    "summary": "switch the layout live: solo, side_by_side (default) or pip (host)",
                    "security": [{"bearer": []}],
                    "requestBody": json_object(
                        {"layout": {"type": "string", "enum": LAYOUT_NAMES}}
                    ),
                    "responses": {"200": json("{layout}", LAYOUT_ANSWER), **ERRORS},
                },
            },
            "/api/broadcasts/{bid}/cohost": {
                "parameters": [BID],
                "get": {
                    "summary": "what co-hosts may do (anyone)",
                    "responses": {"200": json("{can_pin}", COHOST_ANSWER), "404": ERRORS["404"]},
                },
                "put": {
                    "summary": "allow co-hosts to pin and unpin products, or not (host)",
                    "security": [{"bearer": []}],
                    "requestBody": json_object({"can_pin": {"type": "boolean"}}),
                    "responses": {"200": json("{can_pin}", COHOST_ANSWER), **ERRORS},
                },
            },
            **commerce(),
            **media(
                "whip",
                "publish (host, cohost)",
                responses={
                    "409": problem(
                        "host_live, cohost_limit, broadcast_ended, or origin_elsewhere: a "
                        "co-host reached a node that does not compose the show (`origin: "
                        "{node, url}` and `Location` say where to publish)"
                    ),
                },
            ),
            **media(
                "whep",
                "play (any role)",
                query=(RENDITION,),
                responses={
                    "404": problem(
                        "unknown broadcast or session, or rendition_not_found: ?rendition= "
                        "names no rung of the broadcast's renditions"
                    )
                },
            ),
            **chat_socket(),
            **hls_paths(),
            **replay_paths(),
            **restream_paths(),
            **numbers_paths(),
            "/metrics": {
                "get": {
                    "summary": "Prometheus text format (admin key)",
                    "security": [{"bearer": []}],
                    "responses": {
                        "200": {
                            "description": "metrics",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "401": ERRORS["401"],
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "this document",
                    "responses": {"200": json("OpenAPI 3.1", {"type": "object"})},
                }
            },
            "/healthz": {
                "get": {
                    "summary": "liveness: this process answers and reaches Redis",
                    "responses": {
                        "200": json(
                            "{ok: true}",
                            {"type": "object", "properties": {"ok": {"type": "boolean"}}},
                        ),
                        "503": problem("Redis is not reachable"),
                    },
                }
            },
            "/watch/{bid}": {
                "parameters": [BID],
                "get": {
                    "summary": "the viewer's page",
                    "responses": {"200": html("HTML")},
                },
            },
            "/replay/{bid}": {
                "parameters": [BID],
                "get": {
                    "summary": "the replay page: the recorded show with its chapters, to buy from",
                    "responses": {"200": html("HTML")},
                },
            },
            "/screen/{bid}": {
                "parameters": [BID],
                "get": {
                    "summary": "the market-screen page: the live show over LL-HLS, full window",
                    "responses": {"200": html("HTML")},
                },
            },
            "/studio/{bid}": {
                "parameters": [BID],
                "get": {
                    "summary": "the host's studio page (its calls carry the host's token)",
                    "responses": {"200": html("HTML")},
                },
            },
            "/static/{name}": {
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": STR},
                ],
                "get": {
                    "summary": "the pages' scripts, styles and pictures",
                    "responses": {
                        "200": {"description": "the file"},
                        "404": problem("no such file"),
                    },
                },
            },
            "/static/icons/{name}": {
                "parameters": [
                    {"name": "name", "in": "path", "required": True, "schema": STR},
                ],
                "get": {
                    "summary": "the app's icons (PNG, and the favicon), cached for a week",
                    "responses": {
                        "200": {
                            "description": "the icon",
                            "content": {
                                "image/png": {"schema": BINARY},
                                "image/x-icon": {"schema": BINARY},
                            },
                        },
                        "404": problem("no such icon"),
                    },
                },
            },
            "/favicon.ico": {
                "get": {
                    "summary": "the favicon (16, 32 and 48 px), cached for a week",
                    "responses": {
                        "200": {
                            "description": "the icon",
                            "content": {"image/x-icon": {"schema": BINARY}},
                        },
                    },
                },
            },
            "/manifest.webmanifest": {
                "get": {
                    "summary": "the web app manifest: name, colours and icons to install the app",
                    "responses": {
                        "200": {
                            "description": "the manifest",
                            "content": {
                                "application/manifest+json": {"schema": {"type": "object"}}
                            },
                        },
                    },
                },
            },
        },
    }
