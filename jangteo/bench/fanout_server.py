"""The server side of ``jangteo bench fanout``: the real app plus a synthetic studio.

Run as its own process (so its CPU time is measured alone). With ``--naive``, a second WHEP route
``/naive/whep/{bid}`` serves the anchor: every viewer's RTCRtpSender encodes the composed frames
itself through aiortc's MediaRelay, as aiortc's examples do.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import os
import sys
from pathlib import Path

from aiortc import RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack
from av.video.frame import VideoFrame
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.config import Settings
from core.tokens import Role
from core.web import bearer, read_body
from jangteo.context import ctx
from jangteo.testkit.server import RunningServer, running_server
from stream.compose.compositor import Compositor
from stream.deliver.fastfanout import FastFanout
from stream.deliver.rtc import MAX_SDP_BYTES, new_peer_connection
from stream.encode.encoders import VIDEO_CLOCK, Codec
from stream.ingest.synthetic import SyntheticStudio
from stream.media import BroadcastMedia


class ComposedTrack(MediaStreamTrack):
    """The compositor's output pictures as a decoded-frame track (the naive anchor's input)."""

    kind = "video"

    def __init__(self, compositor: Compositor) -> None:
        super().__init__()
        self.compositor = compositor
        self._queue: asyncio.Queue[VideoFrame] = asyncio.Queue(maxsize=2)
        compositor.taps.append(self._tap)

    def _tap(self, index: int) -> None:
        picture = self.compositor.last_picture
        if picture is None:
            return
        frame = VideoFrame.from_ndarray(picture, format="yuv420p")
        frame.pts = index * (VIDEO_CLOCK // self.compositor.fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(frame)

    async def recv(self) -> VideoFrame:
        return await self._queue.get()


def bench_settings(args: argparse.Namespace, **more: object) -> Settings:
    """The bench server's settings: loopback, the studio's size and rate, limits for load."""
    return Settings(
        host="127.0.0.1",
        port=0,
        redis_url=args.redis_url,
        admin_key="bench",
        secret="bench-secret",
        data_dir=Path("var"),
        ice_host_addresses=("127.0.0.1",),
        video_width=args.width,
        video_height=args.height,
        video_fps=args.fps,
        video_bitrate=args.bitrate,
        fanout=args.fanout,
        workers=args.workers,
        # the load is hundreds of viewers of one token on one address: load, not one person
        whep_per_user=100_000,
        whep_per_address=100_000,
        max_viewers=100_000,
        abr=False,  # one rung for everyone: the figures compare the fan-out paths
        **more,  # type: ignore[arg-type]
    )


async def start_show(
    server: RunningServer, args: argparse.Namespace
) -> tuple[dict[str, str], BroadcastMedia, SyntheticStudio]:
    """A live broadcast fed by a synthetic studio (stamped frames, textured so the encoder
    works as hard as on a camera), once its first frame is in."""
    app = server.ctx
    b = await server.create_broadcast("bench")
    media = await app.hub.open(b["id"])
    studio = SyntheticStudio(media.compositor, width=args.width, height=args.height,
                             fps=args.fps, texture=True, prerender=60)  # fmt: skip
    studio.start()
    await app.store.ensure_live(b["id"])
    while studio.source.video_frames == 0:  # noqa: ASYNC110 - startup only
        await asyncio.sleep(0.01)
    return b, media, studio


async def main(args: argparse.Namespace) -> None:
    async with running_server(bench_settings(args)) as server:
        app = server.ctx
        b, media, studio = await start_show(server, args)
        bid = b["id"]
        relay = MediaRelay()
        composed = ComposedTrack(media.compositor)
        pcs = set()

        async def naive_whep(request: Request) -> Response:
            c = await ctx(request).verifier.claims(bearer(request), request.path_params["bid"])
            offer = (await read_body(request, MAX_SDP_BYTES, ("application/sdp",))).decode()
            pc = new_peer_connection(ctx(request).settings)
            pcs.add(pc)
            pc.addTrack(relay.subscribe(composed, buffered=False))
            await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            del c
            return Response(
                pc.localDescription.sdp,
                201,
                media_type="application/sdp",
                headers={"Location": f"/naive/whep/{bid}/{id(pc)}"},
            )

        server.app.router.routes.insert(0, Route("/naive/whep/{bid}", naive_whep, methods=["POST"]))
        token, _ = app.signer.issue(bid, Role.VIEWER, "bench")
        print(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "base_url": server.base_url,
                    "bid": bid,
                    "token": token,
                    "fps": args.fps,
                    "t0": studio.clock_t0(),
                    "workers": [link.pid for link in app.hub.workers.links]
                    if app.hub.workers
                    else [],
                }
            ),
            flush=True,
        )
        # run until the parent closes our stdin
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        fan = media.compositor.sinks.get(Codec.VP8)
        assert fan is None or isinstance(fan, FastFanout)
        stats = {
            "keyframe_spreads_ms": [round(s * 1000, 2) for s in fan.keyframe_spreads]
            if fan
            else [],
            "fanout_cpu_s": fan.cpu_s if fan else None,
            "fanout_packets": fan.packets_sent if fan else None,
            "retransmissions": fan.retransmissions if fan else None,
            "keyframes_forced": media.compositor.keyframes_forced(),
            "hls": {
                name: {"cpu_s": r.cpu_s, "frames": r.frames}
                for name, r in (media.hls_running.renditions.items() if media.hls_running else [])
            },
            "feed_cpu_s": [link.feed_cpu_s for link in app.hub.workers.links]
            if app.hub.workers
            else [],
        }
        print(json.dumps(stats), flush=True)
        await asyncio.gather(*(pc.close() for pc in pcs), return_exceptions=True)
        await studio.aclose()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--redis-url", required=True)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--bitrate", type=int, default=2_500_000)
    p.add_argument("--fanout", choices=["fast", "aiortc"], default="fast")
    p.add_argument("--workers", type=int, default=0)
    from core.loop import run
    from core.malloc import tune_malloc

    tune_malloc()  # as `jangteo serve` does
    run(main(p.parse_args()))
