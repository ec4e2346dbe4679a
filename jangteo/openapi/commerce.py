"""The commerce part of the OpenAPI document: catalog, pin, orders, the payment callback."""

from __future__ import annotations

from typing import Any

from .parts import BID, BODY_ERRORS, ERRORS, ID, INT, OID, PID, STR, json, json_body, problem, ref

OPTION_INPUT = {
    "type": "object",
    "required": ["id", "stock"],
    "properties": {
        "id": ID,
        "name": {"type": "string", "minLength": 1, "maxLength": 60, "description": "default: id"},
        "stock": {"type": "integer", "minimum": 0, "maximum": 10_000_000},
    },
}
PRODUCT_INPUT = {
    "type": "object",
    "required": ["name", "price"],
    "description": "money in won; `stock` is required unless `options` carry it",
    "anyOf": [
        {"required": ["stock"]},
        {"required": ["options"], "properties": {"options": {"minItems": 1}}},
    ],
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 100, "pattern": "\\S"},
        "price": {"type": "integer", "minimum": 0, "maximum": 100_000_000},
        "list_price": {"type": "integer", "maximum": 100_000_000, "description": ">= price"},
        "stock": {"type": "integer", "minimum": 0, "maximum": 10_000_000},
        "per_buyer_limit": {"type": ["integer", "null"], "minimum": 1, "maximum": 10_000},
        "mode": {
            "type": "string",
            "enum": ["hold", "fpfs"],
            "description": "hold: stock taken on order; fpfs: first paid, first served",
        },
        "image": {
            "type": ["string", "null"],
            "maxLength": 2000,
            "pattern": "^(?:(?:[Hh][Tt][Tt][Pp][Ss]?://[^\\s/]|/[^/\\s])\\S*)?$",
            "description": "an http(s) URL or a path on this server",
        },
        "keyword": {
            "type": ["string", "null"],
            "minLength": 1,
            "maxLength": 20,
            "pattern": "^[A-Za-z0-9가-힣_-]{1,20}$",
            "description": "chat orders name the product with #keyword (after NFKC)",
        },
        "options": {"type": "array", "maxItems": 100, "items": OPTION_INPUT},
    },
}
PRODUCT = {
    "type": "object",
    "properties": {
        "id": STR,
        "name": STR,
        "price": INT,
        "list_price": INT,
        "per_buyer_limit": {"type": ["integer", "null"]},
        "mode": {"type": "string", "enum": ["hold", "fpfs"]},
        "image": {"type": ["string", "null"]},
        "keyword": {"type": ["string", "null"]},
        "options": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"id": STR, "name": STR, "stock": INT},
            },
        },
        "stock": {"type": "integer", "description": "units left (all options together)"},
    },
}
PIN = {
    "type": "object",
    "properties": {
        "product_id": STR,
        "deal_price": {"type": ["integer", "null"]},
        "deal_ends_at": {"type": ["integer", "null"], "description": "epoch ms"},
        "pinned_at": {"type": "integer", "description": "epoch ms"},
        "eligible": {"type": "string", "enum": ["anyone", "joined_before", "verified"]},
    },
}
ORDER = {
    "type": "object",
    "properties": {
        "id": STR,
        "status": {"type": "string", "enum": ["reserved", "paid", "cancelled", "expired"]},
        "product_id": STR,
        "option": {"type": ["string", "null"]},
        "qty": INT,
        "unit_price": INT,
        "total": INT,
        "shown": {
            "type": "object",
            "description": "what the buyer was shown when ordering",
            "properties": {
                "name": STR,
                "price": INT,
                "list_price": INT,
                "deal": {"type": ["object", "null"]},
            },
        },
        "mode": {"type": "string", "enum": ["hold", "fpfs"]},
        "created_at": {"type": "integer", "description": "epoch ms"},
        "expires_at": {"type": "integer", "description": "epoch ms: the hold runs out"},
        "buyer": {"type": "object", "properties": {"id": STR, "name": STR}},
        "paid_at": {"type": "integer", "description": "epoch ms"},
        "closed_at": {"type": "integer", "description": "epoch ms"},
        "payment": {
            "type": "object",
            "description": "GET of a reserved order: what the buyer's page needs to pay",
        },
    },
}
ORDER_ERRORS = {
    **ERRORS,
    "403": problem("not the order's buyer, nor the host"),
    "404": problem("unknown order (unknown_order)"),
    "409": problem("the order is not reserved (order_expired, bad_order_state)"),
}


def commerce() -> dict[str, Any]:
    """Catalog, pin, orders and the payment callback."""
    product_written = json("the product, with its live stock", ref("Product"))
    return {
        "/api/broadcasts/{bid}/products": {
            "parameters": [BID],
            "get": {
                "summary": "the catalog with live stock, and the pin (anyone)",
                "responses": {
                    "200": json(
                        "{products, pinned}",
                        {
                            "type": "object",
                            "properties": {
                                "products": {"type": "array", "items": ref("Product")},
                                "pinned": {"oneOf": [ref("Pin"), {"type": "null"}]},
                            },
                        },
                    ),
                    "404": ERRORS["404"],
                },
            },
        },
        "/api/broadcasts/{bid}/products/snapshot": {
            "parameters": [BID],
            "post": {
                "summary": "flash product: its picture is the live frame now (host, admin)",
                "security": [{"bearer": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "allOf": [
                                    ref("ProductInput"),
                                    {
                                        "properties": {
                                            "id": {**ID, "description": "default: flash-<random>"}
                                        }
                                    },
                                ]
                            }
                        }
                    },
                },
                "responses": {
                    "201": product_written,
                    **ERRORS,
                    "409": problem("nothing is live to take a picture of (no_picture)"),
                    **BODY_ERRORS,
                },
            },
        },
        "/api/broadcasts/{bid}/products/{pid}": {
            "parameters": [BID, PID],
            "put": {
                "summary": "create or replace a product (host, admin)",
                "security": [{"bearer": []}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref("ProductInput")}},
                },
                "responses": {
                    "200": {**product_written, "description": "replaced"},
                    "201": {**product_written, "description": "created"},
                    **ERRORS,
                    **BODY_ERRORS,
                },
            },
        },
        "/api/broadcasts/{bid}/products/{pid}/image": {
            "parameters": [BID, PID],
            "get": {
                "summary": "a product picture stored here (a flash product's snapshot)",
                "responses": {
                    "200": {
                        "description": "JPEG",
                        "content": {"image/jpeg": {"schema": {"type": "string"}}},
                    },
                    "404": problem("no picture for this product"),
                },
            },
        },
        "/api/broadcasts/{bid}/pin": {
            "parameters": [BID],
            "post": {
                "summary": "pin a product, with an optional deal (host, admin; co-hosts when "
                "the host allows it)",
                "security": [{"bearer": []}],
                "requestBody": json_body(
                    {
                        "product_id": ID,
                        "deal_price": {
                            "type": "integer",
                            "minimum": 0,
                            "description": "won, at most the price",
                        },
                        "deal_ends_at": {
                            "type": "integer",
                            "description": "epoch ms; 1 s to 7 days from now; needs deal_price",
                        },
                        "eligible": {
                            "type": "string",
                            "enum": ["anyone", "joined_before", "verified"],
                        },
                    },
                    required=("product_id",),
                ),
                "responses": {
                    "200": json(
                        "the pin, with the product",
                        {"allOf": [ref("Pin"), {"properties": {"product": ref("Product")}}]},
                    ),
                    **ERRORS,
                    "422": problem("deal_ends_at without deal_price (bad_deal)"),
                    **BODY_ERRORS,
                },
            },
            "delete": {
                "summary": "unpin (host, admin; co-hosts when the host allows it)",
                "security": [{"bearer": []}],
                "responses": {"204": {"description": "unpinned"}, **ERRORS},
            },
        },
        "/api/broadcasts/{bid}/orders": {
            "parameters": [BID],
            "post": {
                "summary": "order: reserve units of a product (any role but the host)",
                "security": [{"bearer": []}],
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": True,
                        "description": "one per tap: the same key answers the same order",
                        "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,100}$"},
                    }
                ],
                "requestBody": json_body(
                    {
                        "product_id": ID,
                        "qty": {"type": "integer", "minimum": 1, "maximum": 99},
                        "option": {**ID, "description": "required for products with options"},
                        "via": {"type": "string", "enum": ["live", "replay"]},
                        "currency": {
                            "type": "string",
                            "description": "the currency the price was also shown in (ISO "
                            "4217, one of GET /api/fx): charged in won, `shown.converted` "
                            "records the approximate amount",
                        },
                    },
                    required=("product_id", "qty"),
                ),
                "responses": {
                    "201": {
                        **json("reserved (or the first answer again)", ref("Order")),
                        "headers": {
                            "Location": {"schema": STR},
                            "Idempotent-Replayed": {"schema": {"type": "string", "enum": ["true"]}},
                        },
                    },
                    **ERRORS,
                    "403": problem("the host, or a deal not open to this buyer (not_eligible)"),
                    "404": problem("unknown broadcast or product"),
                    "409": problem("sold_out, oversubscribed or broadcast_ended"),
                    **BODY_ERRORS,
                    "422": problem(
                        "limit_exceeded, deal_ended, idempotency_key_reused or unknown_currency"
                    ),
                    "429": problem("too_many_open_orders or hold_cooldown (Retry-After)"),
                },
            },
            "get": {
                "summary": "the broadcast's orders (host, admin); ?format=csv for Excel",
                "security": [{"bearer": []}],
                "parameters": [
                    {
                        "name": "format",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": ["csv"]},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                    {
                        "name": "after",
                        "in": "query",
                        "required": False,
                        "description": "the last order id of the previous page",
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "{orders[, next]} (next: the after of the next page); "
                        "CSV: UTF-8 with BOM",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "orders": {"type": "array", "items": ref("Order")},
                                        "next": {"type": ["string", "null"]},
                                    },
                                }
                            },
                            "text/csv": {"schema": {"type": "string"}},
                        },
                    },
                    **ERRORS,
                },
            },
        },
        "/api/orders/{oid}": {
            "parameters": [OID],
            "get": {
                "summary": "an order (its buyer, the host, admin); a reserved one carries payment",
                "security": [{"bearer": []}],
                "responses": {
                    "200": json("the order", ref("Order")),
                    **ERRORS,
                    "403": ORDER_ERRORS["403"],
                    "404": ORDER_ERRORS["404"],
                },
            },
        },
        "/api/orders/{oid}/confirm": {
            "parameters": [OID],
            "post": {
                "summary": "reserved → paid (host, admin; the buyer only with the test "
                "payment provider)",
                "security": [{"bearer": []}],
                "responses": {
                    "200": json("the paid order", ref("Order")),
                    **ORDER_ERRORS,
                    "403": problem("not yours, or pay through the payment page (payment_required)"),
                    "409": problem("order_expired, bad_order_state, or sold_out (fpfs)"),
                },
            },
        },
        "/api/orders/{oid}/cancel": {
            "parameters": [OID],
            "post": {
                "summary": "reserved → cancelled, the stock goes back on sale (buyer, host, admin)",
                "security": [{"bearer": []}],
                "responses": {"200": json("the cancelled order", ref("Order")), **ORDER_ERRORS},
            },
        },
        "/api/payments/callback": {
            "post": {
                "summary": "the payment provider's signed outcome of a payment",
                "description": "Jangteo-Signature: v1=<hex HMAC-SHA256(secret, "
                '"<timestamp>.<raw body>")>; the timestamp within 300 s of now. A replayed '
                "payment_id answers 200 with replayed: true and changes nothing.",
                "parameters": [
                    {
                        "name": "Jangteo-Timestamp",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "unix seconds",
                    },
                    {
                        "name": "Jangteo-Signature",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "v1=<hex>[,v1=<hex>…]",
                    },
                ],
                "requestBody": json_body(
                    {
                        "order_id": STR,
                        "payment_id": {"type": "string", "minLength": 1, "maxLength": 100},
                        "status": {"type": "string", "enum": ["paid", "failed"]},
                        "amount": {"type": "integer", "description": "won; required for paid"},
                    },
                    required=("order_id", "payment_id", "status"),
                ),
                "responses": {
                    "200": json(
                        "the order, paid or cancelled",
                        {
                            "allOf": [
                                ref("Order"),
                                {"properties": {"replayed": {"type": "boolean"}}},
                            ]
                        },
                    ),
                    "400": problem("bad_json, bad_status or bad_amount"),
                    "401": problem("unsigned_callback, bad_signature or stale_callback"),
                    "404": ORDER_ERRORS["404"],
                    "409": ORDER_ERRORS["409"],
                    **BODY_ERRORS,
                    "422": problem("the amount is not the order's total (amount_mismatch)"),
                },
            },
        },
        "/api/fx": {
            "get": {
                "summary": "the operator's exchange rates prices are shown at (anyone)",
                "responses": {
                    "200": json(
                        "{base: KRW, date, source, rates: {CODE: {per_won, decimals}}}; no "
                        "rates configured: rates is empty",
                        {"type": "object"},
                    )
                },
            }
        },
    }
