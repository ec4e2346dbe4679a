"""Limits on what a client controls, each refused with a clear problem (and counted): JSON nested
too deep, too many products in a broadcast; nothing half-written, the server stays up."""

from __future__ import annotations

import pytest

from commerce.catalog import MAX_PRODUCTS
from core.problems import Unprocessable
from core.web import MAX_JSON_DEPTH, json_depth, parse_json_object
from jangteo.testkit.server import RunningServer, bearer


def test_json_depth_counts_nesting_without_recursion() -> None:
    assert json_depth({}) == 1 and json_depth({"a": 1}) == 1
    assert json_depth({"a": [{"b": []}]}) == 4
    deep: object = []
    for _ in range(100_000):  # far past Python's recursion limit
        deep = [deep]
    assert json_depth({"x": deep}) == 100_002


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 5_000, 15_000])
def test_json_nested_too_deep_is_refused(depth: int) -> None:
    raw = b'{"a":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"
    with pytest.raises(Unprocessable) as caught:
        parse_json_object(raw)
    assert caught.value.code == "too_deep"


async def test_a_deep_body_is_a_422_and_the_server_goes_on(server: RunningServer) -> None:
    b = await server.create_broadcast()
    bid, host = b["id"], bearer(b["host_token"])
    body = b'{"name":"x","price":1,"stock":1,"options":' + b"[" * 8000 + b"]" * 8000 + b"}"
    r = await server.http.put(f"/api/broadcasts/{bid}/products/p1", content=body,
                              headers=host | {"Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "too_deep"
    listed = await server.http.get(f"/api/broadcasts/{bid}/products")
    assert listed.status_code == 200 and listed.json()["products"] == []


async def test_a_broadcast_sells_at_most_so_many_products(server: RunningServer) -> None:
    b = await server.create_broadcast()
    bid, host = b["id"], bearer(b["host_token"])
    for i in range(MAX_PRODUCTS):
        product = {"name": f"상품 {i}", "price": 1000, "stock": 1}
        r = await server.http.put(f"/api/broadcasts/{bid}/products/p{i}", headers=host,
                                  json=product)  # fmt: skip
        assert r.status_code == 201, r.text
    r = await server.http.put(f"/api/broadcasts/{bid}/products/one-more", headers=host,
                              json={"name": "하나 더", "price": 1000, "stock": 1})  # fmt: skip
    assert r.status_code == 422 and r.json()["code"] == "too_many_products", r.text
    # an existing product can still be changed
    r = await server.http.put(f"/api/broadcasts/{bid}/products/p0", headers=host,
                              json={"name": "상품 0", "price": 900, "stock": 2})  # fmt: skip
    assert r.status_code == 200, r.text
    products = (await server.http.get(f"/api/broadcasts/{bid}/products")).json()["products"]
    assert len(products) == MAX_PRODUCTS and "one-more" not in {p["id"] for p in products}


async def test_names_the_file_system_refuses_are_404_not_500(server: RunningServer) -> None:
    for path in ("/static/" + "a" * 300, "/static/icons/" + "a" * 300 + ".png"):
        r = await server.http.get(path)
        assert r.status_code == 404, (path[:20], r.status_code)
        assert r.headers["content-type"].startswith("application/problem+json")
