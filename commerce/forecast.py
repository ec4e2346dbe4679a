"""A forecast for a merchant's next show, from its past shows: expected units per product with a
low–high range, and the hour that sold best. Plain and explainable:

- the audience: Holt's linear smoothing of viewer-minutes per show (level and trend; a growing
  channel is forecast to keep growing);
- each product's sales rate, units per viewer-minute: recent shows weigh more (each older show
  ``DECAY`` as much), shrunk toward the merchant's average rate per product by ``PRIOR`` median
  shows' worth of viewer-minutes (a product seen once does not get a wild rate);
- expected units = rate × the audience forecast; the range is 90 %: Poisson noise plus the spread
  of the product's own past rates.

``backtest`` replays a history show by show (each forecast from the shows before it only) against
the naive "same as last show", by mean absolute percentage error. ``synthetic_history`` makes the
history the tests, the benchmark and the demo use (a known trend, seeded noise).
"""

from __future__ import annotations

import dataclasses
import math
import random
import statistics
from collections.abc import Sequence
from typing import Any

ALPHA, BETA = 0.5, 0.2  # Holt: level and trend smoothing
DECAY = 0.8  # weight of a show one older than the next
PRIOR = 0.1  # shrinkage strength, in median shows of viewer-minutes
Z90 = 1.645
KST_OFFSET_H = 9


@dataclasses.dataclass(frozen=True)
class Show:
    """One past show, as the forecast needs it."""

    bid: str
    started_at: int  # epoch ms
    viewer_minutes: float
    units: dict[str, int]  # product id → units sold (reserved or paid)
    names: dict[str, str] = dataclasses.field(default_factory=dict)
    hourly_gmv: dict[int, int] = dataclasses.field(default_factory=dict)  # KST hour → won


def holt(series: Sequence[float]) -> float:
    """The next value of ``series`` by Holt's linear method (never below 0)."""
    if not series:
        return 0.0
    level, trend = series[0], (series[1] - series[0] if len(series) > 1 else 0.0)
    for x in series[1:]:
        last = level
        level = ALPHA * x + (1 - ALPHA) * (level + trend)
        trend = BETA * (level - last) + (1 - BETA) * trend
    return max(0.0, level + trend)


def forecast(shows: Sequence[Show]) -> dict[str, Any]:
    """``{shows, viewer_minutes, per_product: [{product_id, name, expected_units, low, high}],
    best_hour}`` for the next show after ``shows`` (any order)."""
    past = sorted(shows, key=lambda s: s.started_at)
    if not past:
        return {"shows": 0, "viewer_minutes": 0.0, "per_product": [], "best_hour": None}
    audience = holt([s.viewer_minutes for s in past])
    n = len(past)
    weights = [DECAY ** (n - 1 - i) for i in range(n)]
    products = sorted({pid for s in past for pid in s.units})
    names = {pid: name for s in past for pid, name in s.names.items()}
    # the merchant's average rate per product, and the prior's weight in viewer-minutes
    total_vm = sum(w * s.viewer_minutes for w, s in zip(weights, past, strict=True))
    total_units = sum(w * sum(s.units.values()) for w, s in zip(weights, past, strict=True))
    mean_rate = total_units / total_vm / max(1, len(products)) if total_vm else 0.0
    prior_vm = PRIOR * statistics.median(s.viewer_minutes for s in past)
    rows: list[dict[str, Any]] = []
    for pid in products:
        units = sum(w * s.units.get(pid, 0) for w, s in zip(weights, past, strict=True))
        vm = sum(w * s.viewer_minutes for w, s in zip(weights, past, strict=True) if pid in s.units)
        rate = (units + prior_vm * mean_rate) / (vm + prior_vm) if vm + prior_vm else 0.0
        expected = rate * audience
        rates = [
            s.units[pid] / s.viewer_minutes for s in past if pid in s.units and s.viewer_minutes
        ]
        spread = 0.5  # a product seen in one show: wide
        if len(rates) > 1 and any(rates):
            spread = statistics.pstdev(rates) / statistics.fmean(rates)
        sd = math.sqrt(expected + (spread * expected) ** 2)
        rows.append({"product_id": pid, "name": names.get(pid, pid),
                     "expected_units": round(expected, 1),
                     "low": max(0, math.floor(expected - Z90 * sd)),
                     "high": math.ceil(expected + Z90 * sd)})  # fmt: skip
    rows.sort(key=lambda r: (-float(r["expected_units"]), str(r["product_id"])))
    return {"shows": n, "viewer_minutes": round(audience, 1), "per_product": rows,
            "best_hour": best_hour(past)}  # fmt: skip


def best_hour(shows: Sequence[Show]) -> int | None:
    """The hour of the day (KST, 0–23) with the most GMV per show that was on air then."""
    totals: dict[int, list[int]] = {}
    for s in shows:
        for hour, gmv in s.hourly_gmv.items():
            totals.setdefault(hour, []).append(gmv)
    if not totals:
        return None
    return max(totals, key=lambda h: (statistics.fmean(totals[h]), -h))


def kst_hour(epoch_ms: int) -> int:
    return (epoch_ms // 3_600_000 + KST_OFFSET_H) % 24


def backtest(shows: Sequence[Show], warmup: int = 3) -> dict[str, Any]:
    """Each show from ``warmup`` on, forecast from the ones before it: MAPE of ours and of the
    naive "same as last show" (products with sales in the show forecast), and how often the
    actual units fell in our range."""
    past = sorted(shows, key=lambda s: s.started_at)
    ours: list[float] = []
    naive: list[float] = []
    inside = total = 0
    for i in range(warmup, len(past)):
        predicted = {r["product_id"]: r for r in forecast(past[:i])["per_product"]}
        for pid, actual in past[i].units.items():
            if actual <= 0 or pid not in predicted:
                continue
            ours.append(abs(predicted[pid]["expected_units"] - actual) / actual)
            naive.append(abs(past[i - 1].units.get(pid, 0) - actual) / actual)
            inside += predicted[pid]["low"] <= actual <= predicted[pid]["high"]
            total += 1
    return {"forecasts": total, "mape": round(statistics.fmean(ours), 4) if ours else None,
            "naive_mape": round(statistics.fmean(naive), 4) if naive else None,
            "in_range": round(inside / total, 3) if total else None}  # fmt: skip


# -- a synthetic merchant --------------------------------------------------------------------------
SAMPLE_PRODUCTS = {  # product id → (name, price, units per 1,000 viewer-minutes)
    "hallabong": ("한라봉 3kg", 29900, 6.0),
    "gamgyul": ("제주 감귤 5kg", 25900, 9.0),
    "tea": ("감귤 녹차 티백", 12000, 3.0),
    "jam": ("한라봉 잼 2병", 15800, 2.0),
}


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth for small means, a rounded normal for large ones)."""
    if mean > 50:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def synthetic_history(
    shows: int = 12, *, seed: int = 7, start_ms: int = 1_788_256_800_000, growth: float = 0.08
) -> tuple[list[Show], dict[str, float], float]:
    """A merchant's weekly evening shows: the audience grows ``growth`` a show (the trend), each
    product sells at its own rate per viewer-minute with Poisson noise. Returns the shows, the
    true rates (units per viewer-minute) and the true viewer-minutes of the next show."""
    rng = random.Random(seed)
    base_vm = 6000.0
    out = []
    for i in range(shows):
        vm = base_vm * (1 + growth * i) * rng.uniform(0.9, 1.1)
        at = start_ms + i * 7 * 86_400_000
        units = {pid: poisson(rng, rate / 1000 * vm) for pid, (_, _, rate) in
                 SAMPLE_PRODUCTS.items()}  # fmt: skip
        gmv = sum(units[p] * SAMPLE_PRODUCTS[p][1] for p in units)
        hour = kst_hour(at)
        out.append(Show(bid=f"past{i:02d}", started_at=at, viewer_minutes=round(vm, 1),
                        units=units, names={p: v[0] for p, v in SAMPLE_PRODUCTS.items()},
                        hourly_gmv={hour: gmv * 2 // 3, (hour + 1) % 24: gmv // 3}))  # fmt: skip
    true_rates = {pid: rate / 1000 for pid, (_, _, rate) in SAMPLE_PRODUCTS.items()}
    return out, true_rates, base_vm * (1 + growth * shows)
