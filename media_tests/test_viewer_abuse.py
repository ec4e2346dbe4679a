"""What one misbehaving viewer can cost the server, reproduced with real peers: video sent to us on
a WHEP session, and NACK floods."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender
from redis.asyncio import Redis

from conftest import ICE_ADDRESS
from core.broadcasts import BroadcastStore
from jangteo.testkit.clients import _post_offer, _wait_connected
from jangteo.testkit.server import eventually, start_serve_process, stop_process
from stream.deliver.rtc import configure_host_addresses
from stream.ingest.synthetic import PatternTrack

pytestmark = pytest.mark.timeout(120)

ADMIN = "abuse-admin-key"


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@pytest.fixture
async def serve_process(redis_url: str) -> AsyncIterator[tuple[int, str]]:
    """``jangteo serve`` in its own process, so its memory is its own."""
    env = {
        "REDIS_URL": redis_url,
        "JANGTEO_SECRET": "abuse-secret",
        "JANGTEO_ADMIN_KEY": ADMIN,
        "JANGTEO_ICE_HOST_ADDRESSES": ICE_ADDRESS,
        "JANGTEO_VIDEO_SIZE": "320x180",
        "JANGTEO_LOG_LEVEL": "warning",
    }
    proc, base = await start_serve_process(env)
    try:
        yield proc.pid, base
    finally:
        stop_process(proc)


async def test_a_viewer_sending_video_costs_the_server_no_memory(
    serve_process: tuple[int, str], redis_url: str
) -> None:
    """As found: a viewer whose offer was ``sendrecv`` had its video decoded into a queue nothing
    read (≈37 MB/s). This viewer offers to send, is answered ``sendonly``, and sends 960x540
    video anyway for six seconds; the server's memory stays flat."""
    pid, base = serve_process
    configure_host_addresses([ICE_ADDRESS])  # our client gathers only the test address
    async with httpx.AsyncClient(base_url=base, timeout=20) as http:
        r = await http.post("/api/broadcasts", json={"title": "abuse"},
                            headers={"Authorization": f"Bearer {ADMIN}"})  # fmt: skip
        bid = r.json()["id"]
        redis = Redis.from_url(redis_url)
        await BroadcastStore(redis).ensure_live(bid)
        await redis.aclose()
        r = await http.post(f"/api/broadcasts/{bid}/tokens", json={"role": "viewer", "name": "x"})
        token = r.json()["token"]

        track = PatternTrack(960, 540, 30)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        try:
            video = pc.addTransceiver(track, direction="sendrecv")
            # VP8, which aiortc encodes at full rate here (its H.264 lags on this box)
            caps = RTCRtpSender.getCapabilities("video").codecs
            video.setCodecPreferences([c for c in caps if c.mimeType.lower() == "video/vp8"])
            pc.addTransceiver("audio", direction="recvonly")
            await _post_offer(http, f"{base}/whep/{bid}", token, pc)
            answer_video = pc.remoteDescription.sdp.split("m=video", 1)[1].split("m=", 1)[0]
            assert "a=sendonly" in answer_video
            video._setCurrentDirection("sendrecv")  # misbehave: send video all the same
            await _wait_connected(pc, 10)
            await eventually(lambda: track.clock.n >= 15, "the first frames sent", timeout=10)
            before = rss_mb(pid)
            await eventually(lambda: track.clock.n >= 195, "six seconds of video", timeout=30)
            after = rss_mb(pid)
            stats = await video.sender.getStats()
            sent = sum(s.bytesSent for s in stats.values() if s.type == "outbound-rtp")
        finally:
            await pc.close()
    assert sent > 200_000, "the viewer really sent video"
    # decoded 960x540 frames at 30 fps would be ≈23 MB/s, ≈140 MB over these six seconds
    assert after - before < 25, f"server grew {after - before:.0f} MB while a viewer sent video"
    assert rss_mb(pid) > 0, "the server is still up"
