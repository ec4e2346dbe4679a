"""The security headers (jangteo/pages.py) over a real server: each page's Content-Security-Policy,
directive by directive, who may frame which page, the node origins in ``connect-src``, and
``X-Content-Type-Options: nosniff`` on every kind of answer; the pages' HTML has no inline script
left for the policy to refuse (their modules are static/<page>-page.js)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from conftest import make_settings
from core.config import ConfigError, from_env, parse_embed_origins
from core.nodes import NodeRegistry
from jangteo.pages import connect_sources, content_security_policy
from jangteo.testkit.server import RunningServer, running_server

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "jangteo" / "static"
PAGES = [*sorted(STATIC.glob("*.html")), ROOT / "commerce" / "report.html"]
VIEWERS = ("watch", "replay", "screen")  # framed by this origin and JANGTEO_EMBED_ORIGINS
HLS_PAGES = ("replay", "screen")  # hls.js: its worker from a blob: URL, data: text tracks
FIXED = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'", "'unsafe-inline'"],
    "img-src": ["'self'", "data:", "blob:", "https:"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "form-action": ["'self'"],
}


def parse_csp(header: str) -> dict[str, list[str]]:
    """A policy as ``{directive: [source, …]}``; a directive named twice fails the test (the
    browser would ignore the second)."""
    found: dict[str, list[str]] = {}
    for part in header.split(";"):
        name, *sources = part.split()
        assert name not in found, f"{name} twice in {header!r}"
        found[name] = sources
    return found


async def _get_page(server: RunningServer, kind: str, bid: str, token: str) -> httpx.Response:
    url = (f"/api/broadcasts/{bid}/report?format=html&token={token}" if kind == "report"
           else f"/{kind}/{bid}")  # fmt: skip
    r = await server.http.get(url)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    return r


def _own(server: RunningServer) -> list[str]:
    """This server's own origin in both forms, as connect-src lists it."""
    return [server.base_url, server.base_url.replace("http://", "ws://", 1)]


# -- pure: the policy and the setting -----------------------------------------------------------
def test_connect_sources_pairs_each_origin_with_its_websocket_form_and_drops_others() -> None:
    got = connect_sources(["https://b.example", "http://10.0.0.2:8080", "http://x;script-src *",
                           "javascript:alert(1)", "http://a b", "https://b.example"])  # fmt: skip
    assert got == ["'self'", "http://10.0.0.2:8080", "https://b.example", "ws://10.0.0.2:8080",
                   "wss://b.example"]  # fmt: skip


def test_the_policy_of_a_page_nobody_frames_and_of_one_that_may_be() -> None:
    unframed = parse_csp(content_security_policy())
    assert unframed == FIXED | {"media-src": ["'self'", "blob:"], "connect-src": ["'self'"],
                                "frame-ancestors": ["'none'"]}  # fmt: skip
    framed = parse_csp(content_security_policy(
        ["https://n2.example"], ["https://shop.example", "https://x; script-src *"], hls=True
    ))  # fmt: skip
    assert framed["frame-ancestors"] == ["'self'", "https://shop.example"]
    assert framed["connect-src"] == ["'self'", "https://n2.example", "wss://n2.example"]
    assert framed["worker-src"] == ["'self'", "blob:"]
    assert framed["media-src"] == ["'self'", "blob:", "data:"]


def test_embed_origins_are_read_space_or_comma_separated_and_checked() -> None:
    assert from_env({}).embed_origins == ()
    value = "https://Shop.example/, https://*.example.org:8443  http://10.0.0.9:8080,"
    expected = ("https://shop.example", "https://*.example.org:8443", "http://10.0.0.9:8080")
    assert parse_embed_origins(value) == expected
    assert from_env({"JANGTEO_EMBED_ORIGINS": value}).embed_origins == expected
    for bad in ("*", "shop.example", "https://shop.example/path", "https://a;script-src",
                "'self'", "javascript:x", "https://", "ftp://shop.example"):  # fmt: skip
        with pytest.raises(ConfigError, match="JANGTEO_EMBED_ORIGINS"):
            parse_embed_origins(bad)


# -- the pages' source: nothing inline for the policy to refuse --------------------------------
class _Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []  # script elements with code in the page
        self.handlers: list[str] = []  # on…="" attributes
        self.modules: list[str] = []
        self._open: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handlers += [f"<{tag} {k}>" for k, _ in attrs if k.startswith("on")]
        if tag == "script":
            self._open = dict(attrs)
            if self._open.get("type") == "module" and self._open.get("src"):
                self.modules.append(str(self._open["src"]))

    def handle_data(self, data: str) -> None:
        script = self._open
        if script is not None and data.strip() and script.get("type") != "application/json":
            self.inline.append(data.strip()[:60])

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._open = None


@pytest.mark.parametrize("path", PAGES, ids=[p.name for p in PAGES])
def test_the_pages_have_no_inline_script_or_handler(path: Path) -> None:
    parsed = _Scripts()
    parsed.feed(path.read_text("utf-8"))
    assert parsed.inline == [] and parsed.handlers == [], (parsed.inline, parsed.handlers)
    assert parsed.modules, "the page loads its module"
    for src in parsed.modules:
        assert (STATIC / src.removeprefix("/static/")).is_file(), src
    assert not re.search(r"javascript:", path.read_text("utf-8"), re.IGNORECASE)


# -- over HTTP -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["watch", "replay", "screen", "studio", "report"])
async def test_each_page_goes_out_with_its_policy(server: RunningServer, kind: str) -> None:
    b = await server.create_broadcast("보안 머리말")
    r = await _get_page(server, kind, b["id"], b["host_token"])
    csp = parse_csp(r.headers["content-security-policy"])
    for name, sources in FIXED.items():
        assert csp[name] == sources, (name, csp)
    assert csp["connect-src"][0] == "'self'"
    if kind == "report":  # drawn from the numbers in the page: it fetches nothing
        assert csp["connect-src"] == ["'self'"]
    else:
        assert set(_own(server)) <= set(csp["connect-src"])
    assert all(re.fullmatch(r"'self'|(https?|wss?)://[\w.:\-\[\]]+", s) for s in csp["connect-src"])
    assert ("worker-src" in csp) == (kind in HLS_PAGES)
    if kind in HLS_PAGES:
        assert csp["worker-src"] == ["'self'", "blob:"]
        assert csp["media-src"] == ["'self'", "blob:", "data:"]
    else:
        assert csp["media-src"] == ["'self'", "blob:"]
    if kind in VIEWERS:
        assert csp["frame-ancestors"] == ["'self'"]  # no JANGTEO_EMBED_ORIGINS here
        assert "x-frame-options" not in r.headers
    else:
        assert csp["frame-ancestors"] == ["'none'"]
        assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert len(r.headers.get_list("content-security-policy")) == 1


async def test_the_operator_s_embed_origins_may_frame_the_viewer_pages_only(
    redis_url: str,
) -> None:
    settings = make_settings(redis_url, embed_origins=("https://shop.example", "https://*.cafe.kr"))
    async with running_server(settings) as server:
        b = await server.create_broadcast("남의 사이트에서")
        for kind in ("watch", "replay", "screen", "studio", "report"):
            r = await _get_page(server, kind, b["id"], b["host_token"])
            framers = parse_csp(r.headers["content-security-policy"])["frame-ancestors"]
            if kind in VIEWERS:
                assert framers == ["'self'", "https://*.cafe.kr", "https://shop.example"], kind
            else:
                assert framers == ["'none'"], kind


async def test_a_node_the_app_learnt_is_in_connect_src(server: RunningServer) -> None:
    """The watch page moves its WHEP session, API calls and chat to the nodes it is told of."""
    server.app.state.node_origins.learn(
        [{"url": "http://10.9.9.9:8080"}, {"url": "https://edge.example/x"}]
    )
    for kind in ("watch", "studio"):
        r = await server.http.get(f"/{kind}/b1")
        sources = parse_csp(r.headers["content-security-policy"])["connect-src"]
        for s in ("http://10.9.9.9:8080", "ws://10.9.9.9:8080", "https://edge.example",
                  "wss://edge.example"):  # fmt: skip
            assert s in sources, (kind, sources)


async def test_a_node_that_joined_a_moment_ago_is_in_connect_src(server: RunningServer) -> None:
    """The registry is read as the page is served: a node whose first heartbeat this node has
    not heard yet (its own comes every few seconds) is in the page's policy all the same."""
    other = NodeRegistry(server.ctx.redis, "csp-other", "http://10.9.9.8:8081", counts=dict)
    await other.beat()
    try:
        r = await server.http.get("/watch/b1")
    finally:
        await other.aclose()  # out of the registry: the other tests' pages never see it
    sources = parse_csp(r.headers["content-security-policy"])["connect-src"]
    assert {"http://10.9.9.8:8081", "ws://10.9.9.8:8081"} <= set(sources), sources


async def test_nosniff_on_api_static_media_and_problem_answers(server: RunningServer) -> None:
    b = await server.create_broadcast("nosniff")
    bid = b["id"]
    answers = {
        "api": await server.http.get(f"/api/broadcasts/{bid}"),
        "openapi": await server.http.get("/openapi.json"),
        "healthz": await server.http.get("/healthz"),
        "static module": await server.http.get("/static/watch-page.js"),
        "static css": await server.http.get("/static/pages.css"),
        "icon": await server.http.get("/static/icons/favicon-32.png"),
        "favicon": await server.http.get("/favicon.ico"),
        "manifest": await server.http.get("/manifest.webmanifest"),
        "replay document": await server.http.get(f"/api/broadcasts/{bid}/replay"),
        "no such route": await server.http.get("/nope"),
        "no such broadcast": await server.http.get("/api/broadcasts/nope"),
        "no such file": await server.http.get("/static/nope.js"),
        "no such playlist": await server.http.get(f"/hls/{bid}/index.m3u8"),
        "method not allowed": await server.http.delete("/healthz"),
        "unauthorized": await server.http.get("/metrics"),
        "order fast path": await server.http.post(f"/api/broadcasts/{bid}/orders", json={}),
        "preflight": await server.http.options(
            f"/api/broadcasts/{bid}",
            headers={"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "GET"},
        ),
    }
    for what, r in answers.items():
        assert r.headers.get("x-content-type-options") == "nosniff", (what, r.status_code)
        assert len(r.headers.get_list("x-content-type-options")) == 1, what
    assert answers["no such broadcast"].status_code == 404
    assert answers["no such broadcast"].headers["content-type"] == "application/problem+json"
    assert answers["method not allowed"].status_code == 405
    for what in ("api", "static module", "no such broadcast"):  # no page policy on non-pages
        assert "content-security-policy" not in answers[what].headers, what


@pytest.mark.parametrize("name", sorted(p.name for p in STATIC.glob("*.js")))
async def test_every_script_is_served_as_javascript(server: RunningServer, name: str) -> None:
    """With nosniff a browser runs a script only if its type says JavaScript."""
    r = await server.http.get(f"/static/{name}")
    assert r.status_code == 200
    assert r.headers["content-type"].split(";")[0] in ("text/javascript", "application/javascript")


def test_an_unexpected_error_is_answered_with_nosniff_too() -> None:
    """A 500 is made outside the middleware stack (Starlette's ServerErrorMiddleware)."""
    from core.problems import Problem
    from jangteo.errors import problem_response

    r = problem_response(Problem("internal error; it has been logged"), "/x")
    assert r.status_code == 500 and r.headers["x-content-type-options"] == "nosniff"
