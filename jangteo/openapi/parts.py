"""Building blocks of the OpenAPI document: responses, parameters, bodies, the WHIP/WHEP pair."""

from __future__ import annotations

from typing import Any

from stream.compose.layout import LAYOUTS


def problem(desc: str) -> dict[str, Any]:
    return {
        "description": desc,
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        },
    }


def sdp(desc: str) -> dict[str, Any]:
    return {"description": desc, "content": {"application/sdp": {"schema": {"type": "string"}}}}


ERRORS = {
    "400": problem("bad input (bad SDP, bad JSON)"),
    "401": problem("no token, bad or expired token"),
    "403": problem("the token's role may not do this"),
    "404": problem("unknown broadcast or session"),
}

LAYOUT_NAMES = list(LAYOUTS)
ID = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,40}$"}  # product and option ids
INT = {"type": "integer"}
STR = {"type": "string"}


def json_object(properties: dict[str, Any]) -> dict[str, Any]:
    schema = {"type": "object", "required": list(properties), "properties": properties}
    return {"required": True, "content": {"application/json": {"schema": schema}}}


BID = {"name": "bid", "in": "path", "required": True, "schema": {"type": "string"}}
SID = {"name": "sid", "in": "path", "required": True, "schema": {"type": "string"}}
PID = {"name": "pid", "in": "path", "required": True, "schema": ID}
OID = {"name": "oid", "in": "path", "required": True, "schema": {"type": "string"}}


def json_body(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """A JSON object request body whose ``required`` properties must be there (others may)."""
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def json(desc: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": desc, "content": {"application/json": {"schema": schema}}}


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def html(desc: str) -> dict[str, Any]:
    return {"description": desc, "content": {"text/html": {"schema": {"type": "string"}}}}


BODY_ERRORS = {
    "413": problem("body too large"),
    "415": problem("not application/json"),
}


RENDITION = {
    "name": "rendition",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "examples": ["180p"]},
    "description": "pins the viewer to one rung of the broadcast's renditions (a data saver); "
    "without it the server picks the rung per viewer and switches it from its link's feedback",
}


def media(
    kind: str,
    who: str,
    *,
    query: tuple[dict[str, Any], ...] = (),
    responses: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The POST, DELETE, PATCH and OPTIONS of WHIP or WHEP; ``query``: the POST's query
    parameters, ``responses``: its answers beside (or over) the common ones."""
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
            "parameters": [BID],
            "post": {
                "summary": f"{kind.upper()}: {who}",
                "security": [{"bearer": []}],
                **({"parameters": list(query)} if query else {}),
                "requestBody": {"required": True, **sdp("SDP offer")},
                "responses": {
                    "201": created,
                    **ERRORS,
                    "409": problem("another host is live, or the broadcast ended"),
                    "413": problem("offer too large"),
                    "415": problem("not application/sdp"),
                    **(responses or {}),
                },
            },
            "options": {"summary": "CORS preflight", "responses": {"204": {"description": "ok"}}},
        },
        f"/{kind}/{{bid}}/{{sid}}": {
            "parameters": [BID, SID],
            "delete": {
                "summary": "end the session (same token, or the host)",
                "security": [{"bearer": []}],
                "responses": {"200": {"description": "ended"}, **ERRORS},
            },
            "patch": {
                "summary": "trickle ICE / ICE restart: not supported",
                "responses": {"405": problem("not supported")},
            },
            "options": {"summary": "CORS preflight", "responses": {"204": {"description": "ok"}}},
        },
    }


TOKEN_REQUEST = json_body(
    {
        "role": {
            "type": "string",
            "enum": ["host", "cohost", "moderator", "viewer"],
            "description": "default: viewer",
        },
        "name": STR,
        "guest": {
            "type": "string",
            "description": "the guest key a guest viewer kept: the same person (user_id) again; "
            "without it a new guest, at most guest_identities_per_min from one address",
        },
    }
)
TOKEN_ISSUED = json(
    "the token; a guest viewer's answer carries the guest key to keep",
    {
        "type": "object",
        "required": ["token", "role", "user_id", "name", "expires_at"],
        "properties": {
            "token": STR,
            "role": {"type": "string", "enum": ["host", "cohost", "moderator", "viewer"]},
            "user_id": STR,
            "name": STR,
            "expires_at": {"type": "integer", "description": "epoch ms"},
            "guest": STR,
        },
    },
)

# what API.md promises in the answers (add fields freely; these are always there)
BROADCAST_CREATED = {
    "allOf": [
        ref("Broadcast"),
        {"required": ["id", "title", "status", "host_token"], "properties": {"host_token": STR}},
    ]
}
READ_FIELDS = ["id", "title", "status", "viewers", "pinned", "started_at", "ended_at"]
BROADCAST_READ = {
    "allOf": [ref("Broadcast"), {"required": [*READ_FIELDS, "orientation", "renditions"]}]
}
LAYOUT_ANSWER = {
    "type": "object",
    "required": ["layout"],
    "properties": {"layout": {"type": "string", "enum": LAYOUT_NAMES}},
}
COHOST_ANSWER = {
    "type": "object",
    "required": ["can_pin"],
    "properties": {"can_pin": {"type": "boolean"}},
}
