"""Approximate prices in a visitor's own currency, from the operator's rates file.

Orders are charged and recorded in won; a buyer from abroad sees ``29,900원 ≈ US$21.50`` and the
order keeps what they saw (``shown.converted``). The rates come from a JSON file the operator
keeps current (``JANGTEO_FX_RATES``; a sample ships as ``jangteo/fx-rates.sample.json``), read
again whenever it changes on disk, with the date they are from::

    {"date": "2026-12-01", "source": "…", "rates": {"USD": {"per_won": 0.000719, "decimals": 2}}}

(``"USD": 0.000719`` also works: two decimals, none for currencies without minor units.)
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
from pathlib import Path
from typing import Any

from core.problems import Unprocessable

_CODE = re.compile(r"[A-Z]{3}")
NO_MINOR_UNITS = {"JPY", "KRW", "VND", "IDR", "CLP", "ISK", "TWD"}  # shown without decimals
MAX_CURRENCIES = 60


class UnknownCurrency(Unprocessable):
    default_code = "unknown_currency"


@dataclasses.dataclass(frozen=True, slots=True)
class Rate:
    per_won: float
    decimals: int

    def convert(self, won: int) -> float:
        return round(won * self.per_won, self.decimals)


@dataclasses.dataclass(frozen=True, slots=True)
class Rates:
    date: str | None
    source: str
    rates: dict[str, Rate]

    def public(self) -> dict[str, Any]:
        return {"base": "KRW", "date": self.date, "source": self.source,
                "rates": {c: {"per_won": r.per_won, "decimals": r.decimals}
                          for c, r in sorted(self.rates.items())}}  # fmt: skip

    def rate(self, code: str) -> Rate:
        found = self.rates.get(code)
        if found is None:
            offered = ", ".join(sorted(self.rates)) or "none configured"
            raise UnknownCurrency(f"no rate for {code!r} (offered: {offered})")
        return found


NONE = Rates(None, "", {})


def parse_rates(doc: Any) -> Rates:
    """The rates file's content, checked (ValueError says what is wrong)."""
    if not isinstance(doc, dict):
        raise ValueError("the rates file must hold a JSON object")
    date = doc.get("date")
    try:
        datetime.date.fromisoformat(str(date))
    except ValueError:
        raise ValueError("date: the day the rates are from, as YYYY-MM-DD") from None
    raw = doc.get("rates")
    if not isinstance(raw, dict) or not raw or len(raw) > MAX_CURRENCIES:
        raise ValueError(f'rates: 1-{MAX_CURRENCIES} currencies, e.g. {{"USD": 0.000719}}')
    rates: dict[str, Rate] = {}
    for code, value in raw.items():
        if not isinstance(code, str) or not _CODE.fullmatch(code) or code == "KRW":
            raise ValueError(f"rates: {code!r} is not an ISO 4217 code (other than KRW)")
        spec = value if isinstance(value, dict) else {"per_won": value}
        per_won = spec.get("per_won")
        decimals = spec.get("decimals", 0 if code in NO_MINOR_UNITS else 2)
        if (
            isinstance(per_won, bool)
            or not isinstance(per_won, int | float)
            or not (0 < per_won < 100)
        ):
            raise ValueError(f"rates.{code}: per_won, how much of it one won buys (0-100)")
        if isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= 3:
            raise ValueError(f"rates.{code}: decimals 0-3")
        rates[code] = Rate(float(per_won), decimals)
    source = doc.get("source", "")
    return Rates(date, source if isinstance(source, str) else "", rates)


class FxRates:
    """The operator's rates, read again when the file changes (daily updates, no restart)."""

    def __init__(self, path: str | None) -> None:
        self.path = Path(path) if path else None
        self._seen: tuple[float, int] | None = None
        self._rates = NONE
        if self.path is not None:
            self.current()  # a broken file stops the server at start, with the reason

    def current(self) -> Rates:
        if self.path is None:
            return NONE
        st = os.stat(self.path)
        stamp = (st.st_mtime, st.st_size)
        if stamp != self._seen:
            try:
                self._rates = parse_rates(json.loads(self.path.read_text("utf-8")))
            except (ValueError, UnicodeDecodeError) as exc:
                if self._seen is None:
                    raise ValueError(f"{self.path}: {exc}") from None
                return self._rates  # a half-written update: keep the last good rates
            self._seen = stamp
        return self._rates
