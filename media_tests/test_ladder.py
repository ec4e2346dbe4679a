"""The rendition ladder with real peers: rungs listed, pinned, encoded only while taken, a switch
that the viewer's decoder never notices but for the size, and loss that costs no keyframes."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator

import pytest

from conftest import make_settings
from core import metrics
from jangteo.testkit.clients import SignallingError, WhepClient, WhipClient
from jangteo.testkit.server import RunningServer, eventually, running_server
from stream.deliver.abr import SUSTAINED_LOSS, SUSTAINED_S
from stream.deliver.fastfanout import FastFanout
from stream.encode.encoders import Codec
from stream.ingest.synthetic import PatternTrack, ToneTrack

from .helpers import fps, is_pattern, wait_for_frame

pytestmark = pytest.mark.timeout(120)

# 640x360 output: the default ladder is 360p at 1 Mbps and 180p at 320 kbps
TOP, LOW = ("360p", 640, 360), ("180p", 320, 180)


@pytest.fixture
async def abr_server(redis_url: str) -> AsyncIterator[RunningServer]:
    async with running_server(make_settings(redis_url, abr=True)) as s:
        yield s


async def _live(server: RunningServer) -> tuple[str, WhipClient]:
    b = await server.create_broadcast("사다리")
    pub = WhipClient(server.base_url, b["id"], b["host_token"])
    await pub.publish(PatternTrack(640, 360, 30), ToneTrack(440))
    await pub.connected()
    return b["id"], pub


async def _viewer(server: RunningServer, bid: str, name: str, **kw: object) -> WhepClient:
    token = await server.token(bid, "viewer", name)
    v = WhepClient(server.base_url, bid, token, keep_images=30, sample_every=3)
    try:
        await v.play(audio=False, **kw)  # type: ignore[arg-type]
    except BaseException:
        await v.aclose()
        raise
    return v


def _fanout(server: RunningServer, bid: str) -> FastFanout:
    media = server.ctx.hub.get(bid)
    assert media is not None
    fanout = media.compositor.sinks[Codec.H264]
    assert isinstance(fanout, FastFanout)
    return fanout


def _encoding(server: RunningServer, bid: str) -> list[tuple[Codec, str]]:
    media = server.ctx.hub.get(bid)
    return media.compositor.encoding() if media else []


async def test_the_renditions_are_listed_and_an_unknown_one_is_404(server: RunningServer) -> None:
    bid, pub = await _live(server)
    try:
        doc = (await server.http.get(f"/api/broadcasts/{bid}")).json()
        assert doc["orientation"] == "landscape"
        assert doc["renditions"] == [
            {"name": "360p", "width": 640, "height": 360, "bitrate": 1_000_000},
            {"name": "180p", "width": 320, "height": 180, "bitrate": 320_000},
        ]
        with pytest.raises(SignallingError) as e:
            await _viewer(server, bid, "없는", rendition="1080p")
        assert e.value.status == 404
        assert "rendition_not_found" in e.value.body and "360p, 180p" in e.value.body
        assert _encoding(server, bid) == []  # nothing was started for it
    finally:
        await pub.aclose()


async def test_a_rung_is_encoded_only_while_someone_takes_it(server: RunningServer) -> None:
    bid, pub = await _live(server)
    full = await _viewer(server, bid, "full")
    saver = None
    try:
        await full.wait_frames(15, timeout=20)
        assert (full.frames[-1].width, full.frames[-1].height) == TOP[1:]
        assert _encoding(server, bid) == [(Codec.H264, "360p")]  # no viewer on 180p: no encoder
        saver = await _viewer(server, bid, "saver", rendition="180p")  # data saver
        await saver.wait_frames(30, timeout=20)
        assert {(f.width, f.height) for f in saver.frames} == {LOW[1:]}
        assert saver.frames[0].image is not None and is_pattern(
            saver.frames[0].image, drawn_width=640
        )
        assert sorted(_encoding(server, bid)) == [(Codec.H264, "180p"), (Codec.H264, "360p")]
        assert {(f.width, f.height) for f in full.frames} == {TOP[1:]}  # the other is untouched
        await saver.aclose()
        await eventually(lambda: _encoding(server, bid) == [(Codec.H264, "360p")], "180p stops")
        await full.aclose()
        await eventually(lambda: _encoding(server, bid) == [], "every encoder stops")
    finally:
        await full.aclose()
        if saver is not None:
            await saver.aclose()
        await pub.aclose()


async def test_a_switch_is_clean_and_continuous(server: RunningServer) -> None:
    bid, pub = await _live(server)
    viewer = await _viewer(server, bid, "switch")
    try:
        await viewer.wait_frames(30, timeout=20)
        fanout = _fanout(server, bid)
        (fv,) = fanout.viewers
        seq, ssrc, shown = fv.seq, fv.ssrc, len(viewer.frames)
        fanout.retarget(fv, "180p", time.monotonic())
        low = await wait_for_frame(viewer, lambda f: f.width == 320, timeout=5, start=shown)
        at_switch = viewer.frames.index(low)
        await viewer.wait_frames(at_switch + 45, timeout=10)
        fanout.retarget(fv, "360p", time.monotonic())
        back = await wait_for_frame(viewer, lambda f: f.width == 640, timeout=5, start=at_switch)
        await viewer.wait_frames(viewer.frames.index(back) + 45, timeout=10)
        # one SSRC, its sequence numbers running on: the viewer's stream never restarted
        assert fv.ssrc == ssrc and fv.switches == 2 and (fv.seq - seq) & 0xFFFF > 0
        sizes = [(f.width, f.height) for f in viewer.frames[shown:]]
        changes = sum(1 for a, b in itertools.pairwise(sizes) if a != b)
        assert changes == 2, "one change each way, no frame of the old size after the switch"
        # every picture kept around both switches is a clean frame of the pattern (no grey,
        # no smear: each switch happened at a keyframe of the new rung)
        kept = [f.image for f in viewer.frames[shown:] if f.image is not None]
        assert len(kept) >= 20 and all(is_pattern(img, drawn_width=640) for img in kept)
        assert fps(viewer.frames[at_switch - 15 : at_switch + 30]) >= 25  # no stall either
    finally:
        await viewer.aclose()
        await pub.aclose()


async def test_a_pinned_viewer_stays_on_its_rung(abr_server: RunningServer) -> None:
    server = abr_server
    bid, pub = await _live(server)
    viewer = await _viewer(server, bid, "saver", rendition="180p")
    try:
        await viewer.wait_frames(60, timeout=20)
        (fv,) = _fanout(server, bid).viewers
        assert fv.abr is None and fv.rung == "180p"
        assert {f.width for f in viewer.frames} == {320}
    finally:
        await viewer.aclose()
        await pub.aclose()


async def test_five_percent_loss_decodes_cleanly_with_few_keyframes(
    abr_server: RunningServer,
) -> None:
    """NACKs answered from the shared history (RTX), no keyframe storm, and 5 % is not a short
    link."""
    server = abr_server
    bid, pub = await _live(server)
    token = await server.token(bid, "viewer", "손실")
    viewer = WhepClient(server.base_url, bid, token, keep_images=60, sample_every=3, loss=0.05)
    await viewer.play(audio=False)
    try:
        await viewer.wait_frames(30, timeout=20)
        fanout = _fanout(server, bid)
        (fv,) = fanout.viewers
        forced0, frames0 = metrics.KEYFRAMES_FORCED.value(), len(viewer.frames)
        t0 = time.monotonic()
        await viewer.wait_frames(frames0 + 300, timeout=30)  # ten seconds of loss
        elapsed = time.monotonic() - t0
        forced = metrics.KEYFRAMES_FORCED.value() - forced0
        assert forced <= elapsed / 5 + 1, f"{forced} keyframes forced in {elapsed:.1f}s"
        assert viewer.dropped >= 0.03 * fv.packets
        assert fv.retransmits >= 0.8 * viewer.dropped and fanout.retransmissions > 0
        assert fv.rtx_pt is not None, "aiortc negotiates RTX: retransmissions go as RTX"
        kept = [f.image for f in viewer.frames[frames0:] if f.image is not None]
        clean = sum(is_pattern(img, drawn_width=640) for img in kept)
        assert clean >= 0.95 * len(kept), f"{clean}/{len(kept)} frames decode to the pattern"
        # and 5 % is not a short link: the loss the controller measures stays under what would
        # move the viewer (a viewer that breaks down anyway, e.g. its decoder starved of CPU,
        # may still go down on its keyframe requests: its window then restarts at the switch,
        # so the loss is read over the whole of it here)
        assert fv.abr is not None
        measured = fv.abr.loss(time.monotonic(), SUSTAINED_S, 50, settled=False)
        assert measured is not None and 0.02 < measured < SUSTAINED_LOSS, measured
    finally:
        await viewer.aclose()
        await pub.aclose()


async def test_a_viewer_that_keeps_breaking_goes_down_instead_of_asking_for_keyframes(
    abr_server: RunningServer,
) -> None:
    server = abr_server
    bid, pub = await _live(server)
    viewer = await _viewer(server, bid, "깨짐")
    try:
        await viewer.wait_frames(30, timeout=20)
        fanout = _fanout(server, bid)
        (fv,) = fanout.viewers
        (receiver,) = [t.receiver for t in viewer.pc.getTransceivers() if t.kind == "video"]
        for _ in range(4):  # a decoder that keeps failing: PLI after PLI
            await receiver._send_rtcp_pli(fv.ssrc)
            await asyncio.sleep(0.3)  # the pace of a broken decoder, not an event to await
        await wait_for_frame(viewer, lambda f: f.width == 320, timeout=5)
        assert fv.rung == "180p" and fanout.switches_down == 1
    finally:
        await viewer.aclose()
        await pub.aclose()
