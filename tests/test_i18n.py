"""The pages' words: every catalog has every key, with the same placeholders; the language a
browser asks for reaches the page."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from jangteo.pages import LANGS, pick_language
from jangteo.testkit.server import RunningServer

STATIC = Path(__file__).parents[1] / "jangteo" / "static"
PLACEHOLDER = re.compile(r"\{\w+\}")


def catalog(lang: str) -> dict[str, str]:
    doc: dict[str, str] = json.loads((STATIC / f"i18n-{lang}.json").read_text("utf-8"))
    return doc


def test_every_language_has_every_word() -> None:
    ko = catalog("ko")
    for lang in LANGS:
        words = catalog(lang)
        assert set(words) == set(ko), f"{lang}: {set(words) ^ set(ko)}"
        for key, text in words.items():
            assert text.strip(), f"{lang}.{key} is empty"
            assert set(PLACEHOLDER.findall(text)) == set(PLACEHOLDER.findall(ko[key])), (lang, key)
    assert catalog("zh")["product.buy"] != ko["product.buy"]  # translated, not copied


def test_the_pages_use_only_words_that_exist() -> None:
    """Every key a page or module asks for is in the catalogs (a typo would show the key)."""
    known = set(catalog("ko"))
    used: set[str] = set()
    for path in [*STATIC.glob("*.html"), *STATIC.glob("*.js")]:
        if path.name.startswith("hls-"):
            continue
        text = path.read_text("utf-8")
        used |= set(re.findall(r'\btr\("([a-z_]+\.[a-z_]+)"', text))
        used |= set(re.findall(r'data-i18n="([a-z_]+\.[a-z_]+)"', text))
        for attrs in re.findall(r'data-i18n-attr="([^"]+)"', text):
            used |= {pair.split(":")[1] for pair in attrs.split(";")}
    used = {k for k in used if "." in k}  # (a comment's "attribute:key" example is not one)
    assert used and used <= known, used - known


@pytest.mark.parametrize(
    ("header", "lang"),
    [
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh"),
        ("ja-JP", "ja"),
        ("en-US,en;q=0.9,ko;q=0.8", "en"),
        ("fr-FR,fr;q=0.9,ja;q=0.4", "ja"),
        ("fr-FR", "ko"),
        ("ko;q=0.5,en;q=0.5", "ko"),
        ("en;q=0,zh", "zh"),
        ("", "ko"),
        ("ja;q=abc,en", "en"),
    ],
)
def test_accept_language(header: str, lang: str) -> None:
    assert pick_language(header) == lang


async def test_the_watch_page_is_served_in_the_asked_language(server: RunningServer) -> None:
    r = await server.http.get("/watch/b1", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert r.status_code == 200 and "accept-language" in r.headers["vary"].lower()
    assert '<html lang="zh" data-lang="zh">' in r.text
    r = await server.http.get("/watch/b1")
    assert '<html lang="ko" data-lang="ko">' in r.text
