"""The chat part of the OpenAPI document: the socket (as its upgrade), history, moderation."""

from __future__ import annotations

from typing import Any

from .parts import BID, ERRORS, STR, json, json_body, problem

EVENT = {
    "type": "object",
    "required": ["type"],
    "properties": {"type": STR, "id": {"type": "string", "description": "the stream id"}},
}
HISTORY = {
    "type": "object",
    "required": ["events", "deleted"],
    "properties": {
        "events": {"type": "array", "items": EVENT},
        "deleted": {"type": "array", "items": STR, "description": "ids of deleted messages"},
    },
}
SETTINGS = {
    "type": "object",
    "required": ["slow_mode_s", "frozen", "banned_words"],
    "properties": {
        "slow_mode_s": {"type": "integer", "minimum": 0},
        "frozen": {"type": "boolean"},
        "banned_words": {"type": "array", "items": STR},
    },
}
ANNOUNCEMENT = {
    "type": "object",
    "required": ["text"],
    "properties": {"text": {"type": ["string", "null"]}},
}


def chat_socket() -> dict[str, Any]:
    """The chat WebSocket, as the HTTP request that opens it (OpenAPI has no WebSockets)."""
    return {
        "/ws/{bid}": {
            "parameters": [BID],
            "get": {
                "summary": "chat WebSocket (any role's token): upgrade with Upgrade: websocket",
                "description": "Client → server: {type: chat, text} and {type: heart, count "
                "1..50}. Server → client: one JSON event per frame, or an array of several "
                "(chat, deleted, system, pin, product, stock, order, order_pending, hearts, "
                "viewers, settings, announcement, reset, error {code, detail}). Frames over "
                "4 KiB close the socket with 1009; too many frames or sockets with 4029; a "
                "client too slow to read with 4008; a storage failure with 1011.",
                "parameters": [
                    {
                        "name": "token",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "a token of this broadcast",
                    },
                    {
                        "name": "last_id",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "replay every event after this id (or get reset)",
                    },
                ],
                "responses": {
                    "101": {"description": "switching to the WebSocket protocol"},
                    "403": {
                        "description": "no valid token of this broadcast, or an Origin "
                        "not allowed: the upgrade is refused"
                    },
                },
            },
        },
    }


def chat_paths() -> dict[str, Any]:
    """Chat history, moderation and rules over HTTP."""
    return {
        "/api/broadcasts/{bid}/chat": {
            "parameters": [BID],
            "get": {
                "summary": "a page of chat history (any token); ?after=<sid>&limit=N",
                "security": [{"bearer": []}],
                "parameters": [
                    {
                        "name": "after",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "pattern": "^[0-9]+(-[0-9]+)?$"},
                        "description": "the events after this stream id (else the latest)",
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer"},
                        "description": "at most this many (1-500, default 50; clamped)",
                    },
                ],
                "responses": {"200": json("{events, deleted}", HISTORY), **ERRORS},
            },
        },
        "/api/broadcasts/{bid}/chat/{id}": {
            "parameters": [
                BID,
                {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
            ],
            "delete": {
                "summary": "delete a message for everyone (host, moderator)",
                "security": [{"bearer": []}],
                "responses": {"204": {"description": "deleted"}, **ERRORS},
            },
        },
        "/api/broadcasts/{bid}/bans": {
            "parameters": [BID],
            "post": {
                "summary": "timeout (duration_s 10..1209600) or ban (no duration)",
                "security": [{"bearer": []}],
                "requestBody": json_body(
                    {
                        "user_id": {"type": "string", "minLength": 1, "maxLength": 64},
                        "duration_s": {
                            "type": ["integer", "null"],
                            "minimum": 10,
                            "maximum": 1209600,
                        },
                    },
                    required=("user_id",),
                ),
                "responses": {
                    "201": json(
                        "applied: {user_id, duration_s}",
                        {
                            "type": "object",
                            "properties": {
                                "user_id": STR,
                                "duration_s": {"type": ["integer", "null"]},
                            },
                        },
                    ),
                    **ERRORS,
                    "403": problem("the target is not of a lower rank (cannot_ban_staff)"),
                    "422": problem("bad duration, or yourself"),
                },
            },
        },
        "/api/broadcasts/{bid}/bans/{uid}": {
            "parameters": [
                BID,
                {"name": "uid", "in": "path", "required": True, "schema": {"type": "string"}},
            ],
            "delete": {
                "summary": "lift a ban or timeout (host, moderator)",
                "security": [{"bearer": []}],
                "responses": {"204": {"description": "lifted"}, **ERRORS},
            },
        },
        "/api/broadcasts/{bid}/chat/settings": {
            "parameters": [BID],
            "put": {
                "summary": "slow_mode_s, frozen, banned_words (host, moderator)",
                "security": [{"bearer": []}],
                "requestBody": json_body(
                    {
                        "slow_mode_s": {"type": "integer", "minimum": 0, "maximum": 3600},
                        "frozen": {"type": "boolean"},
                        "banned_words": {
                            "type": "array",
                            "maxItems": 500,
                            "items": {"type": "string", "minLength": 1, "maxLength": 50},
                        },
                    }
                ),
                "responses": {
                    "200": json("the new settings", SETTINGS),
                    **ERRORS,
                    "422": problem("bad slow_mode_s"),
                },
            },
        },
        "/api/broadcasts/{bid}/chat/announcement": {
            "parameters": [BID],
            "put": {
                "summary": "announcement pinned at the top of chat (host); text null clears",
                "security": [{"bearer": []}],
                "requestBody": json_body({"text": {"type": ["string", "null"]}}),
                "responses": {"200": json("{text}", ANNOUNCEMENT), **ERRORS},
            },
        },
    }
