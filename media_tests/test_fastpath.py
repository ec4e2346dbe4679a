"""The fast fan-out (stream/rtpsend.py) with real aiortc viewers: loss, NACK, keyframes."""

from __future__ import annotations

import pytest

from jangteo.testing import RunningServer
from stream.clients import WhepClient, WhipClient
from stream.synthetic import PatternTrack, ToneTrack

from .helpers import fps, is_pattern

pytestmark = pytest.mark.timeout(90)


async def _live(server: RunningServer) -> tuple[str, WhipClient]:
    b = await server.create_broadcast("빠른 전송")
    pub = WhipClient(server.base_url, b["id"], b["host_token"])
    await pub.publish(PatternTrack(640, 360, 30), ToneTrack(440))
    await pub.connected()
    return b["id"], pub


async def test_viewer_decodes_cleanly_under_5_percent_loss(server: RunningServer) -> None:
    assert server.settings.fanout == "fast"
    bid, pub = await _live(server)
    token = await server.token(bid, "viewer", "손실")
    viewer = WhepClient(server.base_url, bid, token, keep_images=60, sample_every=3, loss=0.05)
    await viewer.play(audio=False)
    try:
        await viewer.wait_frames(240, timeout=30)
        media = server.ctx.hub.get(bid)
        assert media is not None
        fanout = media.compositor.video_buses["vp8"].fanout
        assert fanout is not None
        (fast,) = fanout.viewers
        sent = fast.packets
        assert viewer.dropped >= 0.03 * sent, f"{viewer.dropped} of {sent} packets dropped"
        assert fast.retransmits >= 0.8 * viewer.dropped, (fast.retransmits, viewer.dropped)
        kept = [f.image for f in viewer.frames[30:] if f.image is not None]
        clean = sum(is_pattern(img) for img in kept)
        assert clean >= 0.97 * len(kept), f"{clean}/{len(kept)} frames decode to the pattern"
        assert fps(viewer.frames[-90:]) >= 25
    finally:
        await viewer.aclose()
        await pub.aclose()


async def test_a_keyframe_reaches_every_viewer_together(server: RunningServer) -> None:
    bid, pub = await _live(server)
    viewers = [
        WhepClient(server.base_url, bid, await server.token(bid, "viewer", f"v{i}"), keep_images=1)
        for i in range(6)
    ]
    try:
        for v in viewers:
            await v.play(audio=False)
        for v in viewers:
            await v.wait_frames(30, timeout=30)
        media = server.ctx.hub.get(bid)
        assert media is not None
        fanout = media.compositor.video_buses["vp8"].fanout
        assert fanout is not None and len(fanout.viewers) == 6
        # every join asked for a keyframe; each went to all viewers packet by packet
        assert fanout.keyframe_spreads
        assert max(fanout.keyframe_spreads) < 0.040
        # and every viewer's first decoded frame was a clean picture
        for v in viewers:
            first = v.frames[0].image
            assert first is not None and is_pattern(first)
    finally:
        for v in viewers:
            await v.aclose()
        await pub.aclose()
