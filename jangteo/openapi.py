"""The OpenAPI 3.1 document served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from stream.compose.layout import LAYOUTS

from . import __version__


def _problem(desc: str) -> dict[str, Any]:
    return {
        "description": desc,
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        },
    }


def _sdp(desc: str) -> dict[str, Any]:
    return {"description": desc, "content": {"application/sdp": {"schema": {"type": "string"}}}}


_ERRORS = {
    "400": _problem("bad input (bad SDP, bad JSON)"),
    "401": _problem("no token, bad or expired token"),
    "403": _problem("the token's role may not do this"),
    "404": _problem("unknown broadcast or session"),
}

_LAYOUTS = list(LAYOUTS)


def _json_object(properties: dict[str, Any]) -> dict[str, Any]:
    schema = {"type": "object", "required": list(properties), "properties": properties}
    return {"required": True, "content": {"application/json": {"schema": schema}}}


_BID = {"name": "bid", "in": "path", "required": True, "schema": {"type": "string"}}
_SID = {"name": "sid", "in": "path", "required": True, "schema": {"type": "string"}}


def _media(kind: str, who: str) -> dict[str, Any]:
    created = {
        "description": "session created; body is the SDP answer",
        "headers": {
            "Location": {"schema": {"type": "string"}},
            "ETag": {"schema": {"type": "string"}},
        },
        "content": {"application/sdp": {"schema": {"type": "string"}}},
    }
    return {
        f"/{kind}/{{bid}}": {
            "parameters": [_BID],
            "post": {
                "summary": f"{kind.upper()}: {who}",
                "security": [{"bearer": []}],
                "requestBody": {"required": True, **_sdp("SDP offer")},
                "responses": {
                    "201": created,
                    **_ERRORS,
                    "409": _problem("another host is live, or the broadcast ended"),
                    "413": _problem("offer too large"),
                    "415": _problem("not application/sdp"),
                },
            },
            "options": {"summary": "CORS preflight", "responses": {"204": {"description": "ok"}}},
        },
        f"/{kind}/{{bid}}/{{sid}}": {
            "parameters": [_BID, _SID],
            "delete": {
                "summary": "end the session (same token, or the host)",
                "security": [{"bearer": []}],
                "responses": {"200": {"description": "ended"}, **_ERRORS},
            },
            "patch": {
                "summary": "trickle ICE / ICE restart: not supported",
                "responses": {"405": _problem("not supported")},
            },
        },
    }


def document() -> dict[str, Any]:
    broadcast = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "string", "enum": ["scheduled", "live", "ended"]},
            "viewers": {"type": "integer"},
            "publishers": {"type": "integer"},
            "pinned": {"type": ["object", "null"]},
            "created_at": {"type": "integer", "description": "epoch ms"},
            "started_at": {"type": ["integer", "null"], "description": "epoch ms"},
            "ended_at": {"type": ["integer", "null"], "description": "epoch ms"},
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
            },
        },
        "paths": {
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
                                        "title": {"type": "string"},
                                        "host_name": {"type": "string"},
                                    },
                                }
                            }
                        }
                    },
                    "responses": {
                        "201": {
                            "description": "created; carries host_token",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Broadcast"}
                                }
                            },
                        },
                        **_ERRORS,
                    },
                }
            },
            "/api/broadcasts/{bid}": {
                "parameters": [_BID],
                "get": {
                    "summary": "broadcast status",
                    "responses": {
                        "200": {
                            "description": "ok",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Broadcast"}
                                }
                            },
                        },
                        "404": _ERRORS["404"],
                    },
                },
            },
            "/api/broadcasts/{bid}/tokens": {
                "parameters": [_BID],
                "post": {
                    "summary": "role token: host or admin for any role; anyone for a guest viewer",
                    "requestBody": {
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "role": {
                                            "type": "string",
                                            "enum": ["host", "cohost", "moderator", "viewer"],
                                        },
                                        "name": {"type": "string"},
                                    },
                                }
                            }
                        }
                    },
                    "responses": {
                        "201": {
                            "description": "{token, role, user_id, name, expires_at (epoch ms)}"
                        },
                        **_ERRORS,
                    },
                },
            },
            "/api/broadcasts/{bid}/end": {
                "parameters": [_BID],
                "post": {
                    "summary": "end the broadcast (host or admin)",
                    "security": [{"bearer": []}],
                    "responses": {
                        "200": {"description": "ended"},
                        **_ERRORS,
                        "409": _problem("already ended"),
                    },
                },
            },
            "/api/broadcasts/{bid}/chat": {
                "parameters": [_BID],
                "get": {
                    "summary": "a page of chat history (any token); ?after=<sid>&limit=N",
                    "security": [{"bearer": []}],
                    "responses": {"200": {"description": "{events, deleted}"}, **_ERRORS},
                },
            },
            "/api/broadcasts/{bid}/chat/{id}": {
                "parameters": [
                    _BID,
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
                ],
                "delete": {
                    "summary": "delete a message for everyone (host, moderator)",
                    "security": [{"bearer": []}],
                    "responses": {"204": {"description": "deleted"}, **_ERRORS},
                },
            },
            "/api/broadcasts/{bid}/bans": {
                "parameters": [_BID],
                "post": {
                    "summary": "timeout (duration_s 10..1209600) or ban (no duration)",
                    "security": [{"bearer": []}],
                    "responses": {
                        "201": {"description": "applied"},
                        **_ERRORS,
                        "422": _problem("bad duration"),
                    },
                },
            },
            "/api/broadcasts/{bid}/chat/settings": {
                "parameters": [_BID],
                "put": {
                    "summary": "slow_mode_s, frozen, banned_words (host, moderator)",
                    "security": [{"bearer": []}],
                    "responses": {"200": {"description": "the new settings"}, **_ERRORS},
                },
            },
            "/api/broadcasts/{bid}/chat/announcement": {
                "parameters": [_BID],
                "put": {
                    "summary": "announcement pinned at the top of chat (host); text null clears",
                    "security": [{"bearer": []}],
                    "responses": {"200": {"description": "{text}"}, **_ERRORS},
                },
            },
            "/api/broadcasts/{bid}/layout": {
                "parameters": [_BID],
                "get": {
                    "summary": "the layout of the publishers' pictures (anyone)",
                    "responses": {"200": {"description": "{layout}"}, "404": _ERRORS["404"]},
                },
                "put": {
                    "summary": "switch the layout live: solo, side_by_side (default) or pip (host)",
                    "security": [{"bearer": []}],
                    "requestBody": _json_object({"layout": {"type": "string", "enum": _LAYOUTS}}),
                    "responses": {"200": {"description": "{layout}"}, **_ERRORS},
                },
            },
            "/api/broadcasts/{bid}/cohost": {
                "parameters": [_BID],
                "get": {
                    "summary": "what co-hosts may do (anyone)",
                    "responses": {"200": {"description": "{can_pin}"}, "404": _ERRORS["404"]},
                },
                "put": {
                    "summary": "allow co-hosts to pin and unpin products, or not (host)",
                    "security": [{"bearer": []}],
                    "requestBody": _json_object({"can_pin": {"type": "boolean"}}),
                    "responses": {"200": {"description": "{can_pin}"}, **_ERRORS},
                },
            },
            **_media("whip", "publish (host, cohost)"),
            **_media("whep", "play (any role)"),
            "/metrics": {
                "get": {
                    "summary": "Prometheus text format",
                    "responses": {"200": {"description": "metrics"}},
                }
            },
        },
    }
