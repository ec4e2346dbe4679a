"""Fuzzing LL-HLS requests (stream/deliver/hls/http.py): ``_HLS_msn``, ``_HLS_part``, rung and
file names, and the token carried into playlists.

The handlers run as the router calls them, on a live rendition in memory (a real
:class:`~stream.deliver.hls.packager.Rendition` with segments and parts) and an app of stand-ins
(no Redis): any query string, rung and file name gives a playlist or a file, or a problem of
400, 404 or 503 -- never anything else (a 500). A number is read only when it is ASCII digits;
a token the request gives (it must, with media tokens on) is carried by every URI a playlist
lists, and reads back the same. Profiles: tests/fuzz_profiles.py.
"""

from __future__ import annotations

import json
import time
from typing import Any, cast
from unittest.mock import patch
from urllib.parse import parse_qs, quote, urlsplit

from hypothesis import example, given
from hypothesis import strategies as st
from starlette.requests import Request
from starlette.responses import Response

from core.broadcasts import Status
from core.pins import Pin
from core.problems import BadRequest, Problem
from stream.deliver.hls import http as hls_http
from stream.deliver.hls.packager import Rendition
from stream.deliver.hls.playlist import media, pin_ranges
from stream.deliver.hls.segmenter import Part, Segment
from stream.encode.bus import FrameBus
from stream.encode.ladder import Rung

from .fuzz_profiles import fuzz

BID = "b1"
RUNG = Rung("360p", 640, 360, 800_000)
NOW = time.time()
DIGITS = st.text(st.sampled_from("0123456789"), min_size=1, max_size=12)
UNICODE_DIGITS = st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=4)


def _rendition(first: int, complete: int, parts: int) -> Rendition:
    """``complete`` whole segments from ``first``, then one being made with ``parts`` parts."""
    r = Rendition(RUNG, FrameBus("video", rung=RUNG.name))
    seg = r.segmenter
    seg.inits = [b"init-0"]
    for msn in range(first, first + complete + 1):
        done = msn < first + complete
        n = 4 if done else parts
        parts_ = [Part(msn, i, f"{msn}.{i}".encode(), 0.5, i == 0) for i in range(n)]
        seg.segments.append(Segment(msn, 0, NOW + 2 * (msn - first), parts_, done))
    seg.next_msn = first + complete + 1
    return r


class Store:
    async def get(self, bid: str) -> Any:
        return type("Broadcast", (), {"status": Status.LIVE, "id": bid})()


class Hub:
    def __init__(self, rendition: Rendition, media_tokens: bool) -> None:
        packager = type("Packager", (), {"renditions": {RUNG.name: rendition},
                                         "touch": lambda self: None})()  # fmt: skip
        self.media = type("Media", (), {"hls": lambda self: packager})()
        self.settings = type("Settings", (), {"media_tokens": media_tokens})()
        self.find_origin = None

    def get(self, bid: str) -> Any:
        return self.media


class Redis:
    def __init__(self, names: list[str]) -> None:
        at = int(NOW * 1000) + 1000  # pins after the first segment began: in the playlist
        self.pins = [
            json.dumps({"at_ms": at + i, "product_id": f"p{i}", "name": n, "price": 1000})
            for i, n in enumerate(names)
        ]

    async def lrange(self, key: str, start: int, end: int) -> list[str]:
        return self.pins


class Verifier:
    async def claims(self, token: str | None, bid: str) -> None:
        return None  # any token will do here: this is about carrying it, not checking it


class App:
    def __init__(self, rendition: Rendition, media_tokens: bool, names: list[str]) -> None:
        self.hub, self.store = Hub(rendition, media_tokens), Store()
        self.redis, self.verifier = Redis(names), Verifier()


def _request(path: str, query: bytes, **params: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": path, "query_string": query,
                    "headers": [], "path_params": {"bid": BID, **params}})  # fmt: skip


queries = st.binary(max_size=60) | st.builds(
    lambda pairs: "&".join(f"{k}={v}" for k, v in pairs).encode(),
    st.lists(st.tuples(st.sampled_from(["_HLS_msn", "_HLS_part", "_HLS_skip", "token", "x",
                                        "_HLS_msn%00", "_hls_msn"]),
                       DIGITS | UNICODE_DIGITS | st.text(max_size=8).map(quote)
                       | st.sampled_from(["", "-1", "+1", " 1", "1e3", "0x10", "999999999",
                                          "1000000000", "%EF%BC%91", "%D9%A1", "YES", "v2"])),
             max_size=4),
)  # fmt: skip
rungs = st.sampled_from([RUNG.name, "", "720p", "360P", "..", "360p/"]) | st.text(max_size=10)
files = (
    st.builds("seg{}.m4s".format, DIGITS)
    | st.builds("part{}.{}.m4s".format, DIGITS, DIGITS)
    | st.builds("init{}.mp4".format, DIGITS)
    | st.builds("seg{}.m4s".format, UNICODE_DIGITS)
    | st.text(max_size=20)
)
names = st.lists(st.text(max_size=12) | st.sampled_from(["a\rb", "a\u2028b", 'say "hi"', "x\n"]),
                 max_size=2)  # fmt: skip


async def _call(handler: Any, request: Request, app: App) -> Response | Problem:
    with patch.object(hls_http, "BLOCK_S", 0.005):  # a blocking request gives up at once here
        try:
            response: Response = await handler(request, cast(hls_http.HlsApp, app))
        except Problem as exc:
            assert exc.status in (400, 404, 503), exc
            return exc
    assert response.status_code == 200
    return response


def _uris(body: str) -> list[str]:
    """Every URI a media playlist lists: its non-tag lines and its URI="…" attributes."""
    out = [line for line in body.split("\n") if line and not line.startswith("#")]
    for line in body.split("\n"):
        if line.startswith("#"):
            out += [part.split('"')[0] for part in line.split('URI="')[1:]]
    return out


@fuzz()
@given(queries, rungs, st.booleans(), names, st.integers(0, 3), st.integers(0, 3))
@example(b"_HLS_msn=%D9%A1", RUNG.name, False, [], 2, 1)  # Arabic-Indic 1: was read as 1
@example(b"_HLS_msn=%EF%BC%93&_HLS_part=0", RUNG.name, False, [], 2, 1)  # a full-width 3
@example(b"token=t%0Ak", RUNG.name, True, ["a\u2028b"], 2, 1)  # was split mid-line, token in it
@example(b"token=tok", RUNG.name, True, ["x\x85y", "p\rq"], 2, 1)
@example(b"token", RUNG.name, False, [], 0, 0)  # an empty token, media tokens off
async def test_a_media_playlist_request_is_a_playlist_or_a_problem(
    query: bytes, rung: str, tokens: bool, pin_names: list[str], complete: int, parts: int
) -> None:
    app = App(_rendition(40, complete, parts), tokens, pin_names)
    request = _request(f"/hls/{BID}/{rung}/index.m3u8", query, rung=rung)
    got = await _call(hls_http.media_playlist, request, app)
    msn = request.query_params.get("_HLS_msn")
    if msn is not None and not (msn.isascii() and msn.isdigit() and len(msn) <= 9):
        assert isinstance(got, Problem)  # a rung named wrong (404) may be found out first
        assert (got.status, got.code) in ((400, "bad_hls_query"), (404, "rendition_not_found"))
    if isinstance(got, Problem):
        return
    body = bytes(got.body).decode()
    assert body.startswith("#EXTM3U\n") and body.endswith("\n")
    token = request.query_params.get("token")
    for uri in _uris(body):
        path, _, query_part = uri.partition("?")
        assert hls_http._FILE.fullmatch(path), uri
        if token is not None:  # carried whenever given (needed with media tokens on)
            assert parse_qs(query_part, keep_blank_values=True) == {"token": [token]}, uri
        else:
            assert not query_part


@fuzz()
@given(rungs, files, queries)
@example(RUNG.name, "seg٤٠.m4s", b"")  # was served as seg40.m4s
@example(RUNG.name, "part٤٢.٠.m4s", b"")  # the part being made: was held, then served
async def test_a_file_request_is_the_file_or_a_problem(rung: str, name: str, query: bytes) -> None:
    app = App(_rendition(40, 2, 1), False, [])
    request = _request(f"/hls/{BID}/{rung}/{name}", query, rung=rung, file=name)
    got = await _call(hls_http.media_file, request, app)
    m = hls_http._FILE.fullmatch(name)
    if m is None:
        assert isinstance(got, Problem) and got.status == 404
        return
    assert name.isascii()
    if isinstance(got, Response):
        assert got.media_type == "video/mp4" and got.body


@fuzz()
@given(queries, st.sampled_from(["_HLS_msn", "_HLS_part"]))
def test_a_query_number_is_ascii_digits_or_bad_hls_query(query: bytes, name: str) -> None:
    request = _request(f"/hls/{BID}/{RUNG.name}/index.m3u8", query, rung=RUNG.name)
    raw = request.query_params.get(name)
    try:
        value = hls_http._number(request, name)
    except BadRequest as exc:
        assert exc.code == "bad_hls_query" and raw is not None
        return
    if raw is None:
        assert value is None
    else:
        assert raw.isascii() and raw.isdigit() and len(raw) <= 9 and value == int(raw)


@fuzz()
@given(st.text(), names, st.integers(0, 3))
@example("t", ["a\u2028b"], 1)  # the name's line was cut in two, the token put in the middle
def test_the_token_reads_back_from_every_uri(token: str, pin_names: list[str], parts: int) -> None:
    r = _rendition(7, 2, parts)
    pins = [Pin(int(NOW * 1000) + 1000, "p", n, 1000) for n in pin_names]
    playlist = media(r.segments(), r.next_part(), pin_ranges(pins))
    request = _request(f"/hls/{BID}/{RUNG.name}/index.m3u8",
                       ("token=" + quote(token, safe="")).encode(), rung=RUNG.name)  # fmt: skip
    carried = hls_http._with_token(playlist, request)
    assert carried.count("\n") == playlist.count("\n")  # not one line more or less
    expected = request.query_params["token"]
    uris = _uris(carried)
    assert len(uris) == len(_uris(playlist)) > 0
    for uri in uris:
        assert parse_qs(urlsplit(uri).query, keep_blank_values=True) == {"token": [expected]}


@fuzz()
@given(st.text())
@example('한라봉 "특가"\r\n\u2028끝\x85')
def test_a_quoted_attribute_keeps_to_its_line(value: str) -> None:
    """A pinned product's name in EXT-X-DATERANGE: one quoted string, on one line."""
    from stream.deliver.hls.playlist import _quoted

    quoted = _quoted(value)
    assert quoted.count('"') == 2 and quoted.startswith('"') and quoted.endswith('"')
    assert len(quoted.splitlines()) == 1 and "\r" not in quoted and "\n" not in quoted
