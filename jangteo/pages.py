"""The pages (plain HTML from static/), served in the visitor's language where they have one:
``<html lang data-lang>`` is set from Accept-Language, which the pages' script follows unless
``?lang=`` or an earlier choice says otherwise (static/i18n.js)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

LANGS = ("ko", "en", "zh", "ja")
# pages and their scripts change with the server: browsers revalidate instead of keeping old copies
NO_CACHE = {"Cache-Control": "no-cache", "Referrer-Policy": "no-referrer"}


def pick_language(header: str | None, default: str = "ko") -> str:
    """The best of :data:`LANGS` for an Accept-Language header (``zh-TW``, ``ja;q=0.8``, …):
    the highest weight, the first listed among equals; ``default`` when none is offered."""
    choices: list[tuple[float, int, str]] = []
    for i, part in enumerate((header or "").split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        base = tag.strip().lower().split("-")[0]
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        if base in LANGS and q > 0:
            choices.append((q, -i, base))
    return max(choices)[2] if choices else default


def page(path: Path) -> Callable[[Request], Awaitable[Response]]:
    """The handler of one page: its HTML, told which language the visitor's browser asks for."""

    async def handler(request: Request) -> Response:
        html = await asyncio.to_thread(path.read_text, "utf-8")
        lang = pick_language(request.headers.get("accept-language"))
        html = html.replace('<html lang="ko">', f'<html lang="{lang}" data-lang="{lang}">', 1)
        headers = NO_CACHE | {"Vary": "Accept-Language"}
        return Response(html, media_type="text/html; charset=utf-8", headers=headers)

    return handler
