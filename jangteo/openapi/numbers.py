"""The merchant's numbers in the OpenAPI document: live stats and the show report; and the
operator's: the nodes and their drains."""

from __future__ import annotations

from typing import Any

from .parts import BID, ERRORS, json, problem

NUMBERS = (
    "viewers (now), viewers_peak, viewers_unique, hearts, chat_messages, orders, units, gmv "
    "(reserved or paid: not cancelled, not expired), paid_orders, paid_units, paid_gmv, "
    "cancelled, expired, conversion (orders per unique viewer), per_product: [{product_id, name, "
    "orders, units, gmv}], timeline: [{t, viewers, orders, gmv}] (epoch ms, one point per 10 s; "
    "orders and gmv so far), pins: [{at, product_id, name}], at"
)


INT = {"type": "integer"}


def _obj(required: list[str], **properties: Any) -> dict[str, Any]:
    """An object with these fields always there (and these typed): more may come."""
    return {"type": "object", "required": required, "properties": properties}


def _ints(*names: str) -> dict[str, Any]:
    return dict.fromkeys(names, INT)


COUNTS = ["orders", "units", "gmv"]
TOTALS = ["viewers", "viewers_peak", "viewers_unique", "chat_messages", "hearts", *COUNTS]
STATS = _obj(
    [*TOTALS, "per_product", "timeline"],
    **_ints(*TOTALS),
    per_product={
        "type": "array",
        "items": _obj(["product_id", "name", *COUNTS], **_ints(*COUNTS)),
    },
    timeline={
        "type": "array",
        "items": _obj(["t", "viewers", "orders", "gmv"], **_ints("t", "orders", "gmv")),
    },
)
REPORT = {"allOf": [STATS, _obj(["broadcast", "duration_s"], broadcast={"type": "object"})]}
FORECAST = _obj(
    ["shows", "per_product", "best_hour"],
    shows=INT,
    per_product={
        "type": "array",
        "items": _obj(["product_id", "name", "expected_units", "low", "high"]),
    },
    best_hour={"type": ["integer", "null"], "minimum": 0, "maximum": 23},
)
NODES = _obj(
    ["nodes"],
    nodes={
        "type": "array",
        "items": _obj(["id", "url", "broadcasts", "viewers", "load"], **_ints("broadcasts")),
    },
)


DRAIN = _obj(["node", "draining"], node={"type": "string"}, draining={"type": "boolean"})


def numbers_paths() -> dict[str, Any]:
    return {
        "/api/nodes": {
            "get": {
                "summary": "the deployment's nodes heard from in the last 15 s (admin)",
                "security": [{"bearer": []}],
                "responses": {
                    "200": json(
                        "{nodes: [{id, url, broadcasts, viewers, load (this process's cores "
                        "busy), loadavg (per core), cores, started_at, at, age_ms, draining, "
                        "drained (draining and nothing left), sessions: {publishers, viewers, "
                        "chat}, publishers: {bid: n} of the shows it composes}]}",
                        NODES,
                    ),
                    **ERRORS,
                },
            }
        },
        "/api/nodes/{node}/drain": {
            "parameters": [
                {"name": "node", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "post": {
                "summary": "take a node out of service (admin): it takes nobody new and lets "
                "its viewers, publishers and chat sockets go to the other nodes; GET /api/nodes "
                "says when it is drained",
                "security": [{"bearer": []}],
                "responses": {
                    "202": json("{node, draining: true}", DRAIN),
                    **ERRORS,
                    "404": problem("no live node of that id (node_not_found)"),
                },
            },
            "delete": {
                "summary": "put a drained node back in service (admin)",
                "security": [{"bearer": []}],
                "responses": {"200": json("{node, draining: false}", DRAIN), **ERRORS},
            },
        },
        "/api/merchants/{mid}/forecast": {
            "parameters": [
                {"name": "mid", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "get": {
                "summary": "the merchant's next show, from its ended shows (admin; a host of "
                "any of its broadcasts)",
                "security": [{"bearer": []}],
                "responses": {
                    "200": json(
                        "{merchant_id, shows, viewer_minutes (expected), per_product: "
                        "[{product_id, name, expected_units, low, high}] (a 90 % range), "
                        "best_hour (0-23, Korea time)}",
                        FORECAST,
                    ),
                    **ERRORS,
                    "403": problem("a host of another merchant (not_your_merchant)"),
                },
            },
        },
        "/api/broadcasts/{bid}/stats": {
            "parameters": [BID],
            "get": {
                "summary": "the show's numbers now (host, admin): fresh within 2 s",
                "security": [{"bearer": []}],
                "responses": {"200": json(NUMBERS, STATS), **ERRORS},
            },
        },
        "/api/broadcasts/{bid}/report": {
            "parameters": [
                BID,
                {
                    "name": "format",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "enum": ["json", "csv", "html"]},
                },
                {
                    "name": "token",
                    "in": "query",
                    "required": False,
                    "description": "the host's token, for a page opened from a link",
                    "schema": {"type": "string"},
                },
            ],
            "get": {
                "summary": "the show report (host, admin), after or during the show",
                "security": [{"bearer": []}],
                "responses": {
                    "200": {
                        "description": "JSON: the stats plus broadcast, duration_s, "
                        "orders_per_minute: [{t, orders, gmv}], pins: [{at, until, product_id, "
                        "name, price, orders, units, gmv, viewers, conversion}]; CSV (UTF-8 with "
                        "BOM) of the same; HTML: a page with charts that prints on one A4 page",
                        "content": {
                            "application/json": {"schema": REPORT},
                            "text/csv": {"schema": {"type": "string"}},
                            "text/html": {"schema": {"type": "string"}},
                        },
                    },
                    **ERRORS,
                    "400": problem("an unknown format (bad_format)"),
                },
            },
        },
    }
