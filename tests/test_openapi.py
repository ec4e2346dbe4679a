"""The OpenAPI document lists exactly the routes the app serves, no more, no less.

The app is built (create_app) but never started: building it connects nowhere, the lifespan does.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route, WebSocketRoute

from conftest import make_settings
from jangteo import openapi
from jangteo.access import ACCESS
from jangteo.app import create_app
from stream.encode.ladder import Rung

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
UNUSED_REDIS = "redis://127.0.0.1:1/0"  # never dialled: only the lifespan connects
_PARAM = re.compile(r"\{([^}:]+)(?::[^}]+)?\}")  # Starlette's {name} or {name:converter}


def _openapi_path(path: str) -> str:
    return _PARAM.sub(lambda m: "{" + m.group(1) + "}", path)


@pytest.fixture(scope="module")
def routes() -> list[BaseRoute]:
    app = create_app(make_settings(UNUSED_REDIS))
    inner = getattr(app, "app", app)  # create_app wraps the Starlette app in OrderFastPath
    assert isinstance(inner, Starlette)
    return list(inner.routes)


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    document = openapi.document()
    # what /openapi.json serves: it must survive JSON
    parsed: dict[str, Any] = json.loads(json.dumps(document))
    assert parsed == document
    return parsed


def _http_operations(routes: list[BaseRoute]) -> set[tuple[str, str]]:
    ops = set()
    for r in routes:
        if isinstance(r, Route):
            assert r.methods, r.path
            # HEAD is Starlette's automatic twin of GET; explicit OPTIONS routes (the WHIP/WHEP
            # preflights) are real routes and are documented
            ops |= {(_openapi_path(r.path), m.lower()) for m in r.methods if m != "HEAD"}
    return ops


def _socket_paths(routes: list[BaseRoute]) -> set[str]:
    return {_openapi_path(r.path) for r in routes if isinstance(r, WebSocketRoute)}


def _documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(p, m) for p, item in doc["paths"].items() for m in item if m in HTTP_METHODS}


def test_the_app_has_routes(routes: list[BaseRoute]) -> None:
    ops = _http_operations(routes)
    assert ("post", "/api/broadcasts") in {(m, p) for p, m in ops}
    assert _socket_paths(routes) == {"/ws/{bid}"}
    assert len(ops) > 30


def test_every_http_route_is_documented(routes: list[BaseRoute], doc: dict[str, Any]) -> None:
    missing = _http_operations(routes) - _documented(doc)
    assert not missing, sorted(missing)


def test_the_chat_socket_is_documented_as_its_upgrade_request(
    routes: list[BaseRoute], doc: dict[str, Any]
) -> None:
    for path in _socket_paths(routes):
        item = doc["paths"][path]
        assert {m for m in item if m in HTTP_METHODS} == {"get"}  # the handshake is a GET
        op = item["get"]
        assert "101" in op["responses"]
        query = {p["name"]: p for p in op["parameters"] if p["in"] == "query"}
        assert query["token"]["required"] is True  # sockets carry the token in ?token=
        assert query["last_id"]["required"] is False


def test_nothing_is_documented_that_the_app_does_not_serve(
    routes: list[BaseRoute], doc: dict[str, Any]
) -> None:
    served = _http_operations(routes) | {(p, "get") for p in _socket_paths(routes)}
    extra = _documented(doc) - served
    assert not extra, sorted(extra)
    assert set(doc["paths"]) == {p for p, _ in served}


def test_path_parameters_match_the_path(doc: dict[str, Any]) -> None:
    for path, item in doc["paths"].items():
        names = set(_PARAM.findall(path))
        for method, op in item.items():
            if method not in HTTP_METHODS:
                continue
            params = [*item.get("parameters", []), *op.get("parameters", [])]
            in_path = [p for p in params if p["in"] == "path"]
            assert sorted(p["name"] for p in in_path) == sorted(names), (path, method)
            assert all(p["required"] is True for p in in_path), (path, method)


def test_every_operation_has_a_summary_and_responses(doc: dict[str, Any]) -> None:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in HTTP_METHODS:
                assert op.get("summary"), (path, method)
                assert op["responses"], (path, method)
                for status, answer in op["responses"].items():
                    assert re.fullmatch(r"[1-5][0-9][0-9]", status), (path, method, status)
                    assert answer.get("description"), (path, method, status)


def test_security_follows_the_access_table(doc: dict[str, Any]) -> None:
    """A route that takes a bearer token says so; a public one does not (jangteo/access.py)."""
    for (method, path), rule in ACCESS.items():
        if method == "WEBSOCKET":
            continue  # the token is the ?token= parameter (checked above)
        op = doc["paths"][path][method.lower()]
        assert ("security" in op) is (not rule.public), (method, path)


def test_every_reference_resolves(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    refs: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    assert refs
    for ref in refs:
        prefix, _, name = ref.rpartition("/")
        assert prefix == "#/components/schemas" and name in schemas, ref


def test_whep_documents_the_rendition_and_the_broadcast_its_renditions(
    doc: dict[str, Any],
) -> None:
    """``?rendition=`` pins a WHEP viewer to a rung (404 rendition_not_found for an unknown one);
    WHIP, built by the same helper, takes none; GET /api/broadcasts/{bid} lists the rungs."""
    whep = doc["paths"]["/whep/{bid}"]["post"]
    query = {p["name"]: p for p in whep.get("parameters", []) if p["in"] == "query"}
    assert query["rendition"]["required"] is False
    assert query["rendition"]["schema"]["type"] == "string"
    assert query["rendition"]["description"]
    assert "rendition_not_found" in whep["responses"]["404"]["description"]
    whip = doc["paths"]["/whip/{bid}"]["post"]
    assert not [p for p in whip.get("parameters", []) if p["in"] == "query"]
    assert "rendition_not_found" not in whip["responses"]["404"]["description"]
    broadcast = doc["components"]["schemas"]["Broadcast"]["properties"]
    assert broadcast["orientation"]["enum"] == ["landscape", "portrait"]
    renditions = broadcast["renditions"]
    assert renditions["type"] == "array"
    item = renditions["items"]["properties"]
    assert set(item) == {"name", "width", "height", "bitrate"} == set(Rung("", 0, 0, 0).public())
    assert item["name"]["type"] == "string"
    assert all(item[k]["type"] == "integer" for k in ("width", "height", "bitrate"))
    assert "bit/s" in item["bitrate"]["description"]
