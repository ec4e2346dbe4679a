"""Prices shown in a visitor's currency: the operator's rates file (checked, reloaded when it
changes), ``GET /api/fx``, and orders charged in won that record what the buyer saw."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from commerce.fx import FxRates, parse_rates
from conftest import make_settings
from jangteo.testkit.server import RunningServer, running_server

from .test_api import assert_problem
from .test_orders import _order, _shop

SAMPLE = Path(__file__).parents[1] / "jangteo" / "fx-rates.sample.json"


def test_the_sample_rates_parse() -> None:
    rates = parse_rates(json.loads(SAMPLE.read_text()))
    assert rates.date and {"USD", "CNY", "JPY"} <= set(rates.rates)
    assert rates.rates["JPY"].decimals == 0 and rates.rates["USD"].decimals == 2


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        ({"rates": {"USD": 0.0007}}, "date"),
        ({"date": "yesterday", "rates": {"USD": 0.0007}}, "date"),
        ({"date": "2026-12-01", "rates": {}}, "rates"),
        ({"date": "2026-12-01", "rates": {"usd": 0.0007}}, "ISO 4217"),
        ({"date": "2026-12-01", "rates": {"KRW": 1}}, "ISO 4217"),
        ({"date": "2026-12-01", "rates": {"USD": -1}}, "per_won"),
        ({"date": "2026-12-01", "rates": {"USD": "0.0007"}}, "per_won"),
        ({"date": "2026-12-01", "rates": {"USD": {"per_won": 0.0007, "decimals": 9}}}, "decimals"),
        ([], "object"),
    ],
)
def test_bad_rates_files_say_what_is_wrong(doc: Any, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_rates(doc)


def test_rates_follow_the_file_and_survive_a_half_written_update(tmp_path: Path) -> None:
    path = tmp_path / "rates.json"
    path.write_text(json.dumps({"date": "2026-12-01", "rates": {"USD": 0.0007}}))
    fx = FxRates(str(path))
    assert fx.current().rates["USD"].per_won == 0.0007
    path.write_text(json.dumps({"date": "2026-12-02", "rates": {"USD": 0.0008}}))
    os.utime(path, (1, 1))  # a new stamp, whatever the clock's resolution
    assert fx.current().date == "2026-12-02"
    path.write_text('{"date": "2026-12-03", "rat')  # an editor mid-save
    os.utime(path, (2, 2))
    assert fx.current().date == "2026-12-02"  # the last good rates stay
    broken = tmp_path / "broken.json"
    broken.write_text("{}")
    with pytest.raises(ValueError, match=r"broken\.json"):
        FxRates(str(broken))  # at start, a bad file stops the server with its name


@pytest.fixture
async def fx_server(redis_url: str) -> AsyncIterator[RunningServer]:
    async with running_server(make_settings(redis_url, fx_rates_file=str(SAMPLE))) as s:
        yield s


async def test_the_rates_are_public(fx_server: RunningServer, server: RunningServer) -> None:
    r = await fx_server.http.get("/api/fx")
    assert r.status_code == 200 and "max-age" in r.headers["cache-control"]
    doc = r.json()
    assert doc["base"] == "KRW" and doc["date"] == "2026-12-01"
    assert doc["rates"]["USD"] == {"per_won": 0.000719, "decimals": 2}
    empty = (await server.http.get("/api/fx")).json()  # none configured
    assert empty["rates"] == {} and empty["date"] is None


async def test_an_order_records_the_amount_the_buyer_saw(fx_server: RunningServer) -> None:
    bid, _host = await _shop(fx_server, price=29900, stock=10)
    buyer = await fx_server.token(bid, "viewer", "Tourist")
    r = await _order(fx_server.http, bid, buyer, qty=2, currency="USD")
    assert r.status_code == 201, r.text
    order = r.json()
    assert order["total"] == 59800  # charged in won
    assert order["shown"]["converted"] == {"currency": "USD", "amount": 43.0,
                                           "rates_date": "2026-12-01"}  # fmt: skip
    r = await _order(fx_server.http, bid, buyer, currency="JPY")
    assert r.json()["shown"]["converted"]["amount"] == 3277  # 29,900 × 0.1096, no decimals
    r = await _order(fx_server.http, bid, buyer, currency="KRW")  # won is won: nothing added
    assert "converted" not in r.json()["shown"]
    assert_problem(await _order(fx_server.http, bid, buyer, currency="XAU"), 422,
                   "unknown_currency")  # fmt: skip
    assert_problem(await _order(fx_server.http, bid, buyer, currency=5), 400, "bad_currency")
    # nothing half-written: the refused ones took no stock
    products = (await fx_server.http.get(f"/api/broadcasts/{bid}/products")).json()
    assert products["products"][0]["stock"] == 10 - 2 - 1 - 1
