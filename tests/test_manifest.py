"""The web app manifest, its icons and the favicon over a real server (scripts/make-icons
draws the icons)."""

from __future__ import annotations

import struct
from typing import Any
from urllib.parse import urlsplit

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from jangteo.testkit.server import RunningServer, raw_get

MANIFEST = "application/manifest+json"
ICO_TYPES = {"image/x-icon", "image/vnd.microsoft.icon"}
MAX_ICON_BYTES = 30_000
RED_BGR = (0x3A, 0x18, 0xD0)  # the theme colour, #d0183a


def _type(headers: Any) -> str:
    return str(headers["content-type"]).split(";")[0].strip()


def _decode(data: bytes) -> NDArray[np.uint8]:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert img is not None, "not an image OpenCV can read"
    return np.asarray(img, np.uint8)


async def _manifest(server: RunningServer) -> dict[str, Any]:
    r = await server.http.get("/manifest.webmanifest")
    assert r.status_code == 200, r.text
    assert _type(r.headers) == MANIFEST
    doc: dict[str, Any] = r.json()
    return doc


async def test_the_manifest_is_served_as_a_manifest_with_the_app_s_name_and_colours(
    server: RunningServer,
) -> None:
    doc = await _manifest(server)
    assert doc["name"] == "장터 라이브 · Jangteo Live"
    assert doc["short_name"] == "장터"
    # no start_url: an installed page opens where it was installed (a show's watch page or
    # the studio); no orientation lock: a landscape show turns with the phone
    assert "start_url" not in doc and "orientation" not in doc and doc["scope"] == "/"
    assert doc["display"] == "standalone"
    assert doc["background_color"] == "#0f1115"
    assert doc["theme_color"] == "#d0183a"
    assert doc["lang"] == "ko"
    icons = {(i["sizes"], i.get("purpose", "any")) for i in doc["icons"]}
    assert {("192x192", "any"), ("512x512", "any"), ("512x512", "maskable")} <= icons
    assert all(i["type"] == "image/png" for i in doc["icons"])


async def test_every_icon_of_the_manifest_is_a_png_of_its_declared_size(
    server: RunningServer,
) -> None:
    doc = await _manifest(server)
    for icon in doc["icons"]:
        src = icon["src"]
        assert urlsplit(src).path.startswith("/static/icons/"), src
        r = await server.http.get(src)
        assert r.status_code == 200, (src, r.text)
        assert _type(r.headers) == "image/png", src
        assert "max-age" in r.headers["cache-control"], src
        assert len(r.content) < MAX_ICON_BYTES, (src, len(r.content))
        w, h = (int(v) for v in icon["sizes"].split("x"))
        img = _decode(r.content)
        assert img.shape[:2] == (h, w), (src, img.shape)
        # the tile is the theme colour: a pixel at the top centre, above the glyph
        assert _near(img[h // 10, w // 2, :3], RED_BGR), (src, img[h // 10, w // 2])


async def test_the_maskable_icon_keeps_its_marks_in_the_safe_zone(server: RunningServer) -> None:
    """A launcher may cut a maskable icon down to the centre circle of radius 40%: outside it
    there is only the background, which fills the whole square (no transparency)."""
    doc = await _manifest(server)
    (icon,) = [i for i in doc["icons"] if i.get("purpose") == "maskable"]
    img = _decode((await server.http.get(icon["src"])).content)
    side = img.shape[0]
    assert img.shape[2] == 3 or bool((img[:, :, 3] == 255).all())
    ys, xs = np.mgrid[0:side, 0:side]
    outside = np.hypot(xs + 0.5 - side / 2, ys + 0.5 - side / 2) > 0.4 * side
    colours = img[:, :, :3][outside].astype(np.int16)
    assert int(np.abs(colours - np.array(RED_BGR, np.int16)).max()) <= 2
    white = np.asarray(np.all(img[:, :, :3] > 240, axis=2))
    assert white[~outside].sum() > 0.05 * side * side  # and inside it, the marks


@pytest.mark.parametrize(("name", "side"), [("apple-touch-icon-180.png", 180),
                                            ("favicon-32.png", 32)])  # fmt: skip
async def test_the_pages_icons_are_served(server: RunningServer, name: str, side: int) -> None:
    r = await server.http.get(f"/static/icons/{name}")
    assert r.status_code == 200, r.text
    assert _type(r.headers) == "image/png"
    assert len(r.content) < MAX_ICON_BYTES
    assert _decode(r.content).shape[:2] == (side, side)


async def test_the_favicon_is_an_ico_of_pngs(server: RunningServer) -> None:
    r = await server.http.get("/favicon.ico")
    assert r.status_code == 200, r.text
    assert _type(r.headers) in ICO_TYPES
    assert "max-age" in r.headers["cache-control"]
    data = r.content
    assert len(data) < MAX_ICON_BYTES
    reserved, kind, count = struct.unpack_from("<HHH", data)
    assert (reserved, kind) == (0, 1) and count >= 1
    sides = []
    for i in range(count):
        w, h, _, _, _, _, size, offset = struct.unpack_from("<BBBBHHII", data, 6 + 16 * i)
        img = _decode(data[offset : offset + size])
        assert img.shape[:2] == (h or 256, w or 256)
        sides.append(w or 256)
    assert 32 in sides
    same = await server.http.get("/static/icons/favicon.ico")
    assert same.status_code == 200 and same.content == data


@pytest.mark.parametrize(
    "raw_path",
    [
        "/static/icons/../../app.py",
        "/static/icons/..%2F..%2Fapp.py",
        "/static/icons/%2e%2e%2f%2e%2e%2fapp.py",
        "/static/icons/..%2Fpages.css",
        "/static/icons/..%2Fmanifest.webmanifest",
        "/static/icons/..%5C..%5Capp.py",
        "/static/icons/..",
        "/static/icons/%2e%2e",
        "/static/icons/.%2Ficon-192.png",
        "/static/icons/%2Fetc%2Fpasswd",
        "/static/icons/icon-192.png%00.png",
        "/static/icons/nope.png",
        "/static/icons",
    ],
)
async def test_nothing_outside_the_icons_is_served_under_them(
    server: RunningServer, raw_path: str
) -> None:
    # sent as written: an HTTP client would take the dot segments out first
    status, body = await raw_get(server.base_url, raw_path)
    assert status == 404, (raw_path, status, body[:200])
    for secret in (b"create_app", b"root:", b"Jangteo Live", b"\x89PNG"):
        assert secret not in body, raw_path


def _near(pixel: NDArray[np.uint8], bgr: tuple[int, int, int], tolerance: int = 2) -> bool:
    return all(abs(int(p) - c) <= tolerance for p, c in zip(pixel, bgr, strict=True))
