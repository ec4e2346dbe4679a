"""The server side of ``jangteo bench restream``: the real app (restreams to loopback allowed)
with a synthetic studio, plus the anchor on request.

Prints one JSON line (pid, base_url, bid, host token, t0, fps), then reads commands on stdin:

* ``reencode <url>``: the anchor, a destination that re-encodes: the composed pictures go
  through their own libx264 encoder (the top rung's settings) in a thread, and the packets to
  ``url`` through the same RTMP pusher our destinations use; answers ``{"anchor": "live"}``
  once it publishes;
* ``stats``: answers ``{"cpu_s": {destination id: its push's own CPU seconds}}``;
* ``stop-reencode``: ends the anchor; EOF: the server ends.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import sys
import threading
from typing import Any

from av.video.frame import VideoFrame

from jangteo.testkit.server import running_server
from stream.compose.compositor import Compositor
from stream.deliver.rtmp.destinations import Destination
from stream.deliver.rtmp.pusher import Pusher, tls_context
from stream.encode.bus import FrameBus
from stream.encode.encoders import Codec, EncodedFrame, VideoEncoder

from .fanout_server import bench_settings, start_show


class Reencoder:
    """One destination the way a re-encoding restreamer makes it: its own H.264 encode."""

    def __init__(self, compositor: Compositor, url: str, width: int, height: int, fps: int,
                 bitrate: int, ready: asyncio.Event) -> None:  # fmt: skip
        self.compositor = compositor
        self.encoder = VideoEncoder(Codec.H264, width, height, fps, bitrate)
        self.loop = asyncio.get_running_loop()
        self.key = threading.Event()
        self.bus = FrameBus("video", request_keyframe=self.key.set)
        self._pictures: collections.deque[tuple[int, Any]] = collections.deque(maxlen=1)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._encode, daemon=True)

        def report(status: dict[str, Any]) -> None:
            if status["status"] == "live":
                ready.set()

        destination = Destination("anchor", "anchor", url, "720p", 0)
        self.pusher = Pusher(destination, self.bus, compositor.bus(Codec.AAC), report,
                             allow_private=True, tls=lambda: tls_context(None))  # fmt: skip

    def start(self) -> None:
        self.compositor.taps.append(self._tap)
        self._thread.start()
        self.pusher.start()

    def _tap(self, index: int) -> None:
        if self.compositor.last_picture is not None:
            self._pictures.append((index, self.compositor.last_picture))
            self._wake.set()

    def _encode(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            while self._pictures:
                index, picture = self._pictures.popleft()
                frame = VideoFrame.from_ndarray(picture, format="yuv420p")
                key = self.key.is_set()
                self.key.clear()
                packets = self.encoder.encode(frame, index, key)
                if packets and not self.loop.is_closed():
                    self.loop.call_soon_threadsafe(self._publish, packets)

    def _publish(self, packets: list[EncodedFrame]) -> None:
        self.bus.publish(packets)

    async def aclose(self) -> None:
        self.compositor.taps.remove(self._tap)
        self._stop.set()
        self._wake.set()
        await asyncio.to_thread(self._thread.join, 5)
        await self.pusher.aclose()


async def main(args: argparse.Namespace) -> None:
    async with running_server(bench_settings(args, restream_allow_private=True)) as server:
        b, media, studio = await start_show(server, args)
        print(json.dumps({"pid": os.getpid(), "base_url": server.base_url, "bid": b["id"],
                          "token": b["host_token"], "fps": args.fps,
                          "t0": studio.clock_t0()}), flush=True)  # fmt: skip
        anchor: Reencoder | None = None
        while line := await asyncio.to_thread(sys.stdin.readline):
            command, _, arg = line.strip().partition(" ")
            if command == "reencode" and anchor is None:
                ready = asyncio.Event()
                anchor = Reencoder(media.compositor, arg, args.width, args.height, args.fps,
                                   args.bitrate, ready)  # fmt: skip
                anchor.start()
                await asyncio.wait_for(ready.wait(), 30)
                print(json.dumps({"anchor": "live"}), flush=True)
            elif command == "stats":
                pushers = media.restreamer.pushers if media.restreamer else {}
                print(json.dumps({"cpu_s": {d: p.cpu_s for d, p in pushers.items()}}), flush=True)
            elif command == "stop-reencode" and anchor is not None:
                await anchor.aclose()
                anchor = None
                print(json.dumps({"anchor": "stopped"}), flush=True)
        if anchor is not None:
            await anchor.aclose()
        await studio.aclose()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--redis-url", required=True)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--bitrate", type=int, default=2_500_000)
    p.add_argument("--fanout", default="fast")
    p.add_argument("--workers", type=int, default=0)
    from core.loop import run
    from core.malloc import tune_malloc

    tune_malloc()
    run(main(p.parse_args()))
