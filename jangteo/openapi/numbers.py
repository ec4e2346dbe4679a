"""The merchant's numbers in the OpenAPI document: live stats and the show report."""

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


def numbers_paths() -> dict[str, Any]:
    return {
        "/api/nodes": {
            "get": {
                "summary": "the deployment's nodes heard from in the last 15 s (admin)",
                "security": [{"bearer": []}],
                "responses": {
                    "200": json(
                        "{nodes: [{id, url, broadcasts, viewers, load (this process's cores "
                        "busy), loadavg (per core), cores, started_at, at, age_ms}]}",
                        {"type": "object"},
                    ),
                    **ERRORS,
                },
            }
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
                        {"type": "object"},
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
                "responses": {"200": json(NUMBERS, {"type": "object"}), **ERRORS},
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
                            "application/json": {"schema": {"type": "object"}},
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
