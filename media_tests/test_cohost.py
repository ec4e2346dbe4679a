"""Co-hosting end to end: a host and a co-host publish over WHIP, a viewer plays over WHEP (real
aiortc peers, a real server and Redis); the viewer sees both pictures where the layout puts them,
hears both voices, follows live layout switches, and keeps its session when the co-host leaves."""

from __future__ import annotations

import asyncio
import fractions
import time

import cv2
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamTrack
from av.video.frame import VideoFrame
from numpy.typing import NDArray

from jangteo.testkit.clients import Received, SignallingError, WhepClient, WhipClient
from jangteo.testkit.server import RunningServer
from stream.compose.layout import boxes
from stream.deliver.whep import Viewer
from stream.encode.encoders import VIDEO_CLOCK, Codec
from stream.ingest.synthetic import PatternTrack, ToneTrack
from stream.media import BroadcastMedia

from .helpers import is_pattern, wait_for_frame

pytestmark = pytest.mark.timeout(120)

W, H = 640, 360  # the server's output (conftest.make_settings)
GREEN = (40, 200, 40)  # BGR: the co-host's picture
HOST_HZ, COHOST_HZ = 440, 1000


class ColorTrack(MediaStreamTrack):
    """A solid-colour camera at 30 fps (easy to find in a region of the composed picture) whose
    pictures can be held back (``flowing.clear()``): a stalled camera or network."""

    kind = "video"

    def __init__(self, bgr: tuple[int, int, int], width: int = W, height: int = H) -> None:
        super().__init__()
        img = np.full((height, width, 3), bgr, np.uint8)
        self._i420 = np.asarray(cv2.cvtColor(img, cv2.COLOR_BGR2YUV_I420), np.uint8)
        self._n = -1
        self._next: float | None = None
        self.flowing = asyncio.Event()
        self.flowing.set()

    async def recv(self) -> VideoFrame:
        await self.flowing.wait()
        loop = asyncio.get_running_loop()
        self._n += 1
        now = loop.time()
        self._next = now if self._next is None else max(self._next + 1 / 30, now)
        if self._next > now:
            await asyncio.sleep(self._next - now)  # paced like a camera
        frame = VideoFrame.from_ndarray(self._i420, format="yuv420p")
        frame.pts = self._n * (VIDEO_CLOCK // 30)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        return frame


def green(img: NDArray[np.uint8]) -> bool:
    return bool(np.abs(img.astype(np.int16) - np.array(GREEN, np.int16)).mean() < 25)


def bars(img: NDArray[np.uint8]) -> bool:
    """The host's colour bars (cropped or whole): many colours, not the co-host's green."""
    return not green(img) and float(img.reshape(-1, 3).std(axis=0).mean()) > 40


# rows compared: below the pattern's counter band, above the overlay's lower third
ROWS = slice(H // 12 + 4, H * 3 // 4)


def side_by_side(f: Received) -> bool:
    img = f.image
    if img is None:
        return False
    return bars(img[ROWS, 8 : W // 2 - 8]) and green(img[ROWS, W // 2 + 8 : -8])


def picture_in_picture(f: Received) -> bool:
    if f.image is None:
        return False
    inset = boxes("pip", 2, W, H)[1]
    m = inset.border + 4
    inner = f.image[inset.y + m : inset.y + inset.h - m, inset.x + m : inset.x + inset.w - m]
    return green(inner) and bars(f.image[ROWS, : inset.x - 8])


def host_only(f: Received) -> bool:
    """The host's whole pattern, full frame, with a readable counter: no co-host anywhere."""
    return f.image is not None and is_pattern(f.image)


def tone_strength(samples: NDArray[np.int16], freq: float) -> float:
    """Spectral peak near ``freq`` relative to the strongest (first channel)."""
    x = samples.reshape(-1)[::2].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    spectrum[:3] = 0
    at = round(freq * x.size / 48000)
    return float(spectrum[at - 4 : at + 5].max() / spectrum.max())


async def _put_layout(server: RunningServer, bid: str, host: str, layout: str) -> float:
    t0 = time.time()
    r = await server.http.put(
        f"/api/broadcasts/{bid}/layout",
        json={"layout": layout},
        headers={"Authorization": f"Bearer {host}"},
    )
    assert r.status_code == 200 and r.json() == {"layout": layout}
    return t0


async def _on_air(
    server: RunningServer, camera: ColorTrack | None = None
) -> tuple[str, str, WhipClient, WhipClient, str]:
    """A live broadcast: the host (pattern, 440 Hz) and a co-host (green, 1 kHz)."""
    b = await server.create_broadcast()
    bid, host = b["id"], b["host_token"]
    host_pub = WhipClient(server.base_url, bid, host)
    await host_pub.publish(PatternTrack(W, H, 30), ToneTrack(HOST_HZ))
    cohost_token = await server.token(bid, "cohost", "크리에이터", as_token=host)
    cohost_pub = WhipClient(server.base_url, bid, cohost_token)
    await cohost_pub.publish(camera or ColorTrack(GREEN), ToneTrack(COHOST_HZ))
    await asyncio.gather(host_pub.connected(), cohost_pub.connected())
    return bid, host, host_pub, cohost_pub, cohost_token


async def _viewer(server: RunningServer, bid: str) -> WhepClient:
    token = await server.token(bid, "viewer", "시청자")
    viewer = WhepClient(server.base_url, bid, token, keep_images=300)
    await viewer.play()
    return viewer


def _unchanged(media: BroadcastMedia, viewer: WhepClient, viewer_id: str, encoder: object) -> None:
    assert list(media.viewers) == [viewer_id], "the viewer's WHEP session is the same one"
    served = media.viewers[viewer_id]
    assert isinstance(served, Viewer) and served.pc.connectionState == "connected"
    assert viewer.pc.connectionState == "connected"
    assert media.compositor._encoders.get((Codec.H264, media.compositor.top)) is encoder, (
        "the encoder carried on"
    )


async def test_viewer_sees_and_hears_both_and_follows_the_layout(server: RunningServer) -> None:
    bid, host, host_pub, cohost_pub, _ = await _on_air(server)
    viewer = await _viewer(server, bid)
    media = server.ctx.hub.get(bid)
    assert media is not None
    try:
        # side by side (the default): the host's bars on the left, the co-host's green right
        seen = await wait_for_frame(viewer, side_by_side, 15)
        assert media.compositor.layout == "side_by_side"
        (viewer_id,) = media.viewers
        encoder = media.compositor._encoders[(Codec.H264, media.compositor.top)]
        # both voices in the mix: 1.5 s of audio from the moment both were on screen
        heard = sum(a.size for a in viewer.audio)
        await viewer.wait_frames(viewer.frames.index(seen) + 45, 10)
        audio = np.concatenate(viewer.audio)[heard:]
        assert audio.size >= 48000 * 2, "at least a second of stereo"
        assert tone_strength(audio, HOST_HZ) > 0.3 and tone_strength(audio, COHOST_HZ) > 0.3
        assert np.abs(audio.astype(np.int32)).max() < 32767

        # solo: the co-host's region is gone within a second
        mark = len(viewer.frames)
        t0 = await _put_layout(server, bid, host, "solo")
        solo = await wait_for_frame(viewer, host_only, 5, start=mark)
        assert solo.at - t0 < 1.0, f"solo after {solo.at - t0:.2f} s"
        assert solo.image is not None and not green(solo.image[ROWS, W // 2 + 8 : -8])

        # picture in picture: the co-host in a bordered inset at the top right
        mark = len(viewer.frames)
        t0 = await _put_layout(server, bid, host, "pip")
        pip = await wait_for_frame(viewer, picture_in_picture, 5, start=mark)
        assert pip.at - t0 < 1.0

        mark = len(viewer.frames)
        await _put_layout(server, bid, host, "side_by_side")
        await wait_for_frame(viewer, side_by_side, 5, start=mark)
        _unchanged(media, viewer, viewer_id, encoder)

        # the co-host leaves (DELETE): the host alone, full frame; the viewer carries on
        mark = len(viewer.frames)
        t0 = time.time()
        await cohost_pub.aclose()
        alone = await wait_for_frame(viewer, host_only, 5, start=mark)
        assert alone.at - t0 < 1.0
        assert len(media.publishers) == 1
        await viewer.wait_frames(viewer.frames.index(alone) + 30, 5)
        assert all(host_only(f) for f in viewer.frames[-20:] if f.image is not None)
        _unchanged(media, viewer, viewer_id, encoder)
    finally:
        await viewer.aclose()
        await cohost_pub.aclose(delete=False)
        await host_pub.aclose()


async def test_cohost_stall_and_drop_without_delete_restore_the_host_picture(
    server: RunningServer,
) -> None:
    camera = ColorTrack(GREEN)
    bid, _, host_pub, cohost_pub, _ = await _on_air(server, camera)
    viewer = await _viewer(server, bid)
    media = server.ctx.hub.get(bid)
    assert media is not None
    try:
        await wait_for_frame(viewer, side_by_side, 15)
        (viewer_id,) = media.viewers
        encoder = media.compositor._encoders[(Codec.H264, media.compositor.top)]
        # the co-host's pictures stop (its session stays): stale after 1 s, then the host alone
        mark = len(viewer.frames)
        t0 = time.time()
        camera.flowing.clear()
        alone = await wait_for_frame(viewer, host_only, 5, start=mark)
        assert 0.9 < alone.at - t0 < 2.5
        assert len(media.publishers) == 2 and len(media.compositor.sources) == 2
        _unchanged(media, viewer, viewer_id, encoder)
        # its pictures come back: side by side again
        mark = len(viewer.frames)
        camera.flowing.set()
        await wait_for_frame(viewer, side_by_side, 5, start=mark)
        # then its network drops: no DELETE, the peer just goes away
        mark = len(viewer.frames)
        t0 = time.time()
        await cohost_pub.aclose(delete=False)
        alone = await wait_for_frame(viewer, host_only, 5, start=mark)
        assert alone.at - t0 < 2.5
        await viewer.wait_frames(viewer.frames.index(alone) + 30, 5)
        assert all(host_only(f) for f in viewer.frames[-20:] if f.image is not None)
        _unchanged(media, viewer, viewer_id, encoder)
    finally:
        await viewer.aclose()
        await cohost_pub.aclose(delete=False)
        await host_pub.aclose()


async def test_a_fourth_cohost_is_refused_and_a_cohost_may_reconnect(server: RunningServer) -> None:
    b = await server.create_broadcast("공동 진행 한도")
    bid = b["id"]
    pubs = []
    try:
        for i in range(3):
            token = await server.token(bid, "cohost", f"크리에이터{i}")
            pub = WhipClient(server.base_url, bid, token)
            await pub.publish(PatternTrack(160, 90, 15), ToneTrack(300 + 100 * i))
            pubs.append(pub)
        fourth = WhipClient(server.base_url, bid, await server.token(bid, "cohost", "넷째"))
        with pytest.raises(SignallingError) as refused:
            await fourth.publish(PatternTrack(160, 90, 15), ToneTrack(900))
        assert refused.value.status == 409 and "cohost_limit" in refused.value.body
        await fourth.aclose(delete=False)
        # the same co-host publishing again replaces its own session instead of being refused
        again = WhipClient(server.base_url, bid, pubs[0].token)
        await again.publish(PatternTrack(160, 90, 15), ToneTrack(300))
        pubs.append(again)
        media = server.ctx.hub.get(bid)
        assert media is not None and len(media.publishers) == 3
    finally:
        for p in pubs:
            await p.aclose()
