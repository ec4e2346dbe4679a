"""Answers whole kinds of operations give, added to every operation of the kind that does not
list them itself (its own description of a status wins):

- an operation that takes a token: 401 and, unless only the operator may call it, 403, from the
  access guard that runs before every handler (jangteo/access.py);
- an operation with a JSON body: 400 (not JSON, or not an object), 413, 415 and 422 (nested too
  deep), from the one reader every such handler uses (core/web.py ``read_body``, ``json_body``).
"""

from __future__ import annotations

from typing import Any

from ..access import ACCESS, ADMIN
from .parts import ERRORS, problem

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
GUARD = {"401": ERRORS["401"], "403": ERRORS["403"]}
JSON_BODY = {
    "400": problem("the body is not a JSON object (bad_json), or a field is bad"),
    "413": problem("body too large (too_large)"),
    "415": problem("not application/json (unsupported_media_type)"),
    "422": problem("a rule broken, or the body nests too deep (too_deep)"),
}


def common_answers(path: str, method: str, op: dict[str, Any]) -> dict[str, Any]:
    """The answers of ``op`` that come from the guard and the body reader."""
    answers: dict[str, Any] = {}
    if "security" in op:
        rule = ACCESS.get((method.upper(), path))
        answers["401"] = GUARD["401"]
        if rule is None or rule.who != {ADMIN}:
            answers["403"] = GUARD["403"]
    if "application/json" in op.get("requestBody", {}).get("content", {}):
        answers |= JSON_BODY
    return answers


def with_common_answers(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with every operation's common answers added where it does not list them, and
    each operation's answers in the order of their status codes."""
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            responses = common_answers(path, method, op) | op["responses"]
            op["responses"] = dict(sorted(responses.items()))
    return doc
