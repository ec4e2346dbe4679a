"""Load viewers for ``jangteo bench fanout``: many WHEP sessions in one process, cheap.

ICE and DTLS are real (aiortc); incoming RTP is neither decrypted nor decoded: it is counted
where the datagram arrives (aioice's protocol) and dropped there -- packets, and frames by the
RTP marker bit -- so a load process costs far less than the server it loads. STUN (consent) and
DTLS still go through. Prints one JSON line with the counts inside ``[start_at, stop_at]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import time
from typing import Any

import aioice.ice
import aiortc.rtcdtlstransport as dtls_mod
import httpx
import pylibsrtp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

from stream.deliver.rtc import configure_host_addresses

COUNTS = {"frames": 0, "packets": 0, "bytes": 0, "nacked": 0}
# with --nack-share: the media packets each connection received lately, by its aioice protocol
RECEIVED: dict[int, list[tuple[int, int]]] = {}  # id(protocol) → [(ssrc, sequence number)]


class _ClearRtpSession:
    """SRTP session that leaves incoming RTP as it is: RTP headers travel in the clear, so
    packets and frames (marker bit) can be counted without decrypting. RTCP stays real."""

    def __init__(self, policy: Any) -> None:
        self._real = pylibsrtp.Session(policy)

    def unprotect(self, data: bytes) -> bytes:
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


async def _count_rtp(self: Any, data: bytes, arrival_time_ms: int) -> None:
    COUNTS["packets"] += 1
    COUNTS["bytes"] += len(data)
    if data[1] & 0x80:  # marker: last packet of a video frame
        COUNTS["frames"] += 1


dtls_mod.Session = _ClearRtpSession  # type: ignore[attr-defined,assignment]
dtls_mod.RTCDtlsTransport._handle_rtp_data = _count_rtp  # type: ignore[method-assign]

_received = aioice.ice.StunProtocol.datagram_received


def _count_datagram(self: Any, data: bytes | str, addr: tuple[Any, ...]) -> None:
    """RTP counted and dropped on arrival; STUN, DTLS and RTCP go on as usual."""
    if (
        isinstance(data, bytes)
        and len(data) > 12
        and 127 < data[0] < 192
        and not (
            192 <= data[1] <= 223  # RTCP
        )
    ):
        COUNTS["packets"] += 1
        COUNTS["bytes"] += len(data)
        if data[1] & 0x80:
            COUNTS["frames"] += 1
        seen = RECEIVED.get(id(self))
        if seen is not None and len(seen) < 4096:
            seen.append((int.from_bytes(data[8:12], "big"), int.from_bytes(data[2:4], "big")))
        return
    _received(self, data, addr)


async def nack(pc: RTCPeerConnection, share: float, seed: int) -> None:
    """Report ``share`` of the media packets this viewer received as lost, every 100 ms, as a
    viewer on a lossy link would (they did arrive: the server's work is the same)."""
    (t,) = pc.getTransceivers()
    receiver: Any = t.receiver
    ice: Any = receiver.transport.transport
    keys = [id(p) for p in ice._connection._protocols]
    for k in keys:
        RECEIVED[k] = []
    rng = random.Random(seed)
    media: int | None = None
    while True:
        await asyncio.sleep(0.1)  # the pace of the reports, not an event
        got = [x for k in keys for x in RECEIVED[k]]
        for k in keys:
            RECEIVED[k].clear()
        if media is None and got:
            media = got[0][0]  # the first stream seen is the media; RTX comes on another SSRC
        lost = sorted({seq for ssrc, seq in got if ssrc == media and rng.random() < share})
        if lost and media is not None:
            COUNTS["nacked"] += len(lost)
            await receiver._send_rtcp_nack(media, lost)


aioice.ice.StunProtocol.datagram_received = _count_datagram  # type: ignore[method-assign]


async def viewer(http: httpx.AsyncClient, url: str, token: str) -> RTCPeerConnection:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    video = pc.addTransceiver("video", direction="recvonly")
    # VP8 only, as the benchmark's figures have always been (the server prefers H.264)
    caps = RTCRtpSender.getCapabilities("video").codecs
    video.setCodecPreferences([c for c in caps if c.mimeType.lower() in ("video/vp8", "video/rtx")])
    await pc.setLocalDescription(await pc.createOffer())
    r = await http.post(
        url,
        content=pc.localDescription.sdp,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"},
    )
    r.raise_for_status()
    await pc.setRemoteDescription(RTCSessionDescription(r.text, "answer"))
    return pc


async def main(args: argparse.Namespace) -> None:
    configure_host_addresses(["127.0.0.1"])
    pcs: list[RTCPeerConnection] = []
    async with httpx.AsyncClient(timeout=60) as http:
        for _ in range(args.viewers):
            pcs.append(await viewer(http, args.url, args.token))
    await asyncio.sleep(max(0.0, args.start_at - time.time()))
    connected = sum(pc.connectionState == "connected" for pc in pcs)
    nackers = [
        asyncio.create_task(nack(pc, args.nack_share, i))
        for i, pc in enumerate(pcs)
        if args.nack_share > 0 and pc.connectionState == "connected"
    ]
    start, cpu0 = dict(COUNTS), time.process_time()
    await asyncio.sleep(max(0.0, args.stop_at - time.time()))
    end, cpu1 = dict(COUNTS), time.process_time()
    for task in nackers:
        task.cancel()
    await asyncio.gather(*nackers, return_exceptions=True)
    print(
        json.dumps(
            {"viewers": args.viewers, "connected": connected, "cpu_s": cpu1 - cpu0}
            | {k: end[k] - start[k] for k in COUNTS}
        ),
        flush=True,
    )
    for pc in pcs:
        with contextlib.suppress(Exception):
            await pc.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--viewers", type=int, required=True)
    p.add_argument("--start-at", type=float, required=True)
    p.add_argument("--stop-at", type=float, required=True)
    p.add_argument("--nack-share", type=float, default=0.0, help="report this share as lost")
    asyncio.run(main(p.parse_args()))
