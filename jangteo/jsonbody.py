"""JSON request bodies: read (size- and type-checked), parsed, an object or a 400."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from .context import read_body
from .problems import BadRequest

MAX_JSON = 16 * 1024


async def json_body(request: Request) -> dict[str, Any]:
    return parse_json_object(await read_body(request, MAX_JSON, ("application/json",)))


def parse_json_object(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body is not valid JSON", code="bad_json") from None
    if not isinstance(doc, dict):
        raise BadRequest("the body must be a JSON object", code="bad_json")
    return doc
