"""Fixtures of the media tests: Chromium and its contexts for the page tests (Debian's Chromium
driven by Playwright: media_tests/test_browser.py says how it stays on this machine), and a
server that records its shows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from conftest import make_settings
from jangteo.testkit.server import RunningServer, running_server

from .helpers import CHROMIUM, CHROMIUM_FLAGS, Contexts

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext


def _errors_of(ctx: BrowserContext, errors: list[str]) -> None:
    """Collect the uncaught exceptions of our pages' scripts in ``ctx``."""
    ctx.on("weberror", lambda e: errors.append(f"{e.page.url if e.page else '?'}: {e.error}"))


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    playwright = pytest.importorskip("playwright.async_api")
    async with playwright.async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    """One desktop context (camera and microphone granted: media permission is what lets
    Chromium gather loopback at all); fails the test on uncaught page errors."""
    ctx = await browser.new_context(
        permissions=["camera", "microphone"], viewport={"width": 1024, "height": 700},
        locale="ko-KR",
    )  # fmt: skip
    errors: list[str] = []
    _errors_of(ctx, errors)
    try:
        yield ctx
    finally:
        await ctx.close()
    assert not errors, f"uncaught errors in the pages: {errors}"


@pytest.fixture
async def contexts(browser: Browser) -> AsyncIterator[Contexts]:
    """Makes browser contexts (each with camera + mic granted); fails on uncaught page errors."""
    made: list[BrowserContext] = []
    errors: list[str] = []

    async def make(**options: Any) -> BrowserContext:
        # a Korean phone unless a test says otherwise (the pages follow the browser's language)
        options.setdefault("locale", "ko-KR")
        ctx = await browser.new_context(permissions=["camera", "microphone"], **options)
        _errors_of(ctx, errors)
        made.append(ctx)
        return ctx

    try:
        yield make
    finally:
        for ctx in made:
            await ctx.close()
    assert not errors, f"uncaught errors in the pages: {errors}"


@pytest.fixture
async def recording(redis_url: str, tmp_path: Path) -> AsyncIterator[RunningServer]:
    """A server that records its shows into ``tmp_path``."""
    async with running_server(make_settings(redis_url, record=True, data_dir=tmp_path)) as s:
        yield s
