"""The forecast for a merchant's next show: on a synthetic history with a known trend the true
expected units land in the range, the backtest beats "same as last show", and over HTTP on a real
redis-server a merchant's ended shows add up (and only its hosts may read them)."""

from __future__ import annotations

import pytest

from commerce.forecast import SAMPLE_PRODUCTS, backtest, forecast, holt, synthetic_history
from commerce.merchant import store_show
from jangteo.testkit.server import RunningServer, bearer

pytestmark = pytest.mark.timeout(60)
PRICES = {pid: price for pid, (_, price, _) in SAMPLE_PRODUCTS.items()}


def test_holt_follows_a_trend() -> None:
    assert holt([100, 110, 120, 130, 140]) == pytest.approx(150, rel=0.02)
    assert holt([50.0]) == 50.0 and holt([]) == 0.0
    assert holt([100, 60, 20]) >= 0.0  # never a negative audience


@pytest.mark.parametrize("seed", [1, 7, 23])
def test_the_truth_lands_in_the_range_on_a_growing_history(seed: int) -> None:
    shows, rates, next_vm = synthetic_history(12, seed=seed, growth=0.08)
    f = forecast(shows)
    assert f["shows"] == 12
    assert f["viewer_minutes"] == pytest.approx(next_vm, rel=0.15)  # the trend is followed
    for row in f["per_product"]:
        truth = rates[row["product_id"]] * next_vm
        assert row["low"] <= truth <= row["high"], (row, truth)
        assert row["name"] == SAMPLE_PRODUCTS[row["product_id"]][0]
    assert f["best_hour"] == 19  # the shows start at 19:00 in Korea


def test_the_backtest_beats_the_same_as_last_show() -> None:
    result = [backtest(synthetic_history(12, seed=s)[0]) for s in range(10)]
    ours = sum(r["mape"] for r in result) / len(result)
    naive = sum(r["naive_mape"] for r in result) / len(result)
    assert ours < naive, (ours, naive)
    assert sum(r["in_range"] for r in result) / len(result) >= 0.85  # a 90 % range, honestly


def test_no_history_forecasts_nothing() -> None:
    assert forecast([]) == {"shows": 0, "viewer_minutes": 0.0, "per_product": [],
                            "best_hour": None}  # fmt: skip


async def test_a_merchants_shows_add_up_over_http(server: RunningServer) -> None:
    shows, _, _ = synthetic_history(8, seed=3)
    for s in shows:
        await store_show(server.ctx, "jeju-market", s, PRICES, "지난 방송")
    # another merchant's show does not count
    other, _, _ = synthetic_history(1, seed=4)
    await store_show(server.ctx, "other-shop", other[0], PRICES, "남의 방송")

    body = {"title": "다음 방송", "merchant_id": "jeju-market"}
    r = await server.http.post("/api/broadcasts", headers=server.admin(), json=body)
    assert r.status_code == 201, r.text
    host = r.json()["host_token"]
    assert r.json()["merchant_id"] == "jeju-market"

    r = await server.http.get("/api/merchants/jeju-market/forecast", headers=bearer(host))
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["merchant_id"] == "jeju-market" and doc["shows"] == 8  # the live one is not past
    expected = {row["product_id"]: row for row in forecast(shows)["per_product"]}
    for row in doc["per_product"]:
        assert row["name"] == SAMPLE_PRODUCTS[row["product_id"]][0]
        assert row["expected_units"] == pytest.approx(
            expected[row["product_id"]]["expected_units"], rel=0.02
        )
    assert doc["best_hour"] == 19

    # the operator may; a host of another merchant, a viewer, nobody may not
    assert (await server.http.get("/api/merchants/jeju-market/forecast",
                                  headers=server.admin())).status_code == 200  # fmt: skip
    stranger = await server.create_broadcast("다른 가게")
    r = await server.http.get("/api/merchants/jeju-market/forecast",
                              headers=bearer(stranger["host_token"]))  # fmt: skip
    assert r.status_code == 403 and r.json()["code"] == "not_your_merchant"
    viewer = await server.token(stranger["id"], "viewer", "손님")
    r = await server.http.get("/api/merchants/jeju-market/forecast", headers=bearer(viewer))
    assert r.status_code == 403
    assert (await server.http.get("/api/merchants/jeju-market/forecast")).status_code == 401


async def test_merchant_ids_are_checked_and_default_to_one_per_broadcast(
    server: RunningServer,
) -> None:
    for bad in ("", "공백 있음", "x" * 41, 7):
        r = await server.http.post("/api/broadcasts", headers=server.admin(),
                                   json={"title": "t", "merchant_id": bad})  # fmt: skip
        assert r.status_code == 400 and r.json()["code"] == "bad_merchant_id", bad
    b = await server.create_broadcast("혼자")
    r = await server.http.get(f"/api/broadcasts/{b['id']}")
    assert r.json()["merchant_id"] == f"m_{b['id']}"
