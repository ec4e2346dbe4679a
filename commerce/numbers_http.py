"""The merchant's numbers over HTTP: ``GET …/stats`` (live) and ``GET …/report`` (JSON, CSV, or
a page with charts that prints on one A4 sheet). Host or operator only."""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from core.problems import BadRequest
from core.web import admin_or, bind

from . import report
from .shop import ShopApp
from .stats import live_numbers

FORMATS = ("json", "csv", "html")
NO_STORE = {"Cache-Control": "no-store"}


async def get_stats(request: Request, app: ShopApp) -> JSONResponse:
    admin_or(request)
    bid = request.path_params["bid"]
    await app.store.get(bid)
    doc = await live_numbers(app.redis, bid, await app.catalog.names(bid))
    return JSONResponse(doc, headers=NO_STORE)


async def get_report(request: Request, app: ShopApp) -> Response:
    admin_or(request)
    bid = request.path_params["bid"]
    fmt = request.query_params.get("format", "json")
    if fmt not in FORMATS:
        raise BadRequest(f"format: one of {', '.join(FORMATS)}", code="bad_format")
    broadcast = (await app.store.get(bid)).public()
    names = await app.catalog.names(bid)
    doc = await report.build(app.redis, broadcast, names, int(time.time() * 1000))
    if fmt == "csv":
        saved = {"Content-Disposition": f'attachment; filename="report-{bid}.csv"'}
        return Response(report.to_csv(doc), media_type="text/csv; charset=utf-8",
                        headers=NO_STORE | saved)  # fmt: skip
    if fmt == "html":
        return HTMLResponse(page(doc), headers=NO_STORE)
    return JSONResponse(doc, headers=NO_STORE)


def page(doc: dict[str, Any]) -> str:
    """The report page: the numbers embedded as JSON, drawn by /static/report.js with uPlot."""
    data = json.dumps(doc, ensure_ascii=False).replace("<", "\\u003c")
    title = html.escape(str(doc["broadcast"].get("title") or doc["broadcast"]["id"]))
    parts = {"title": title, "data": data}  # one pass: neither is searched for the other
    return re.sub(r"\{(title|data)\}", lambda m: parts[m.group(1)], PAGE)


PAGE = Path(__file__).with_name("report.html").read_text("utf-8")


def routes(app: Callable[[], ShopApp]) -> list[BaseRoute]:
    return [
        Route("/api/broadcasts/{bid}/stats", bind(get_stats, app), methods=["GET"]),
        Route("/api/broadcasts/{bid}/report", bind(get_report, app), methods=["GET"]),
    ]
