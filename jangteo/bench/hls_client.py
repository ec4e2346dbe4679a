"""Low-Latency HLS clients for ``jangteo bench hls``.

:class:`PartReader` plays a rendition as an LL-HLS player does: the playlist once, then each part
by its preload hint (the request is held until the part exists) -- and decodes the video of each
part as it arrives (H.264 from the fMP4 samples, no player buffer), reading the frame counter
stamped into the picture, so glass-to-glass latency is measured per picture: made (the studio's
clock) to decoded here. :func:`load` runs many light clients (blocking playlist reload and the
part, counted, not decoded) in one process, as a CDN edge or a crowd of players would poll.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from typing import Any

import av
import httpx
import numpy as np

from stream.ingest import pattern

from .orders_client import Call, RawConn

_HINT = re.compile(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part(\d+)\.(\d+)\.m4s"')
_PART = re.compile(r'#EXT-X-PART:DURATION=[\d.]+,URI="part(\d+)\.(\d+)\.m4s"(,INDEPENDENT=YES)?')


def boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[str, int, int]]:
    """(type, payload start, box end) of the boxes in ``data[start:end]``."""
    end = len(data) if end is None else end
    out, i = [], start
    while i + 8 <= end:
        size = int.from_bytes(data[i : i + 4], "big")
        if size < 8:
            break
        out.append((data[i + 4 : i + 8].decode("latin-1"), i + 8, i + size))
        i += size
    return out


def video_samples(fragment: bytes) -> list[bytes]:
    """Track 1's samples (AVCC) in one moof+mdat fragment."""
    top = boxes(fragment)
    moof = next(b for b in top if b[0] == "moof")
    out: list[bytes] = []
    for kind, start, end in boxes(fragment, moof[1], moof[2]):
        if kind != "traf":
            continue
        inner = {k: (s, e) for k, s, e in boxes(fragment, start, end)}
        track = int.from_bytes(fragment[inner["tfhd"][0] + 4 : inner["tfhd"][0] + 8], "big")
        if track != 1:
            continue
        s = inner["trun"][0]
        flags = int.from_bytes(fragment[s + 1 : s + 4], "big")
        count = int.from_bytes(fragment[s + 4 : s + 8], "big")
        offset = int.from_bytes(fragment[s + 8 : s + 12], "big", signed=True)
        i = s + 12 + (4 if flags & 0x4 else 0)
        pos = moof[1] - 8 + offset
        for _ in range(count):
            fields = []
            for bit in (0x100, 0x200, 0x400, 0x800):
                if flags & bit:
                    fields.append(int.from_bytes(fragment[i : i + 4], "big"))
                    i += 4
            size = fields[1] if flags & 0x100 else fields[0]
            out.append(fragment[pos : pos + size])
            pos += size
    return out


def annexb(sample: bytes) -> bytes:
    out, i = bytearray(), 0
    while i + 4 <= len(sample):
        n = int.from_bytes(sample[i : i + 4], "big")
        out += b"\x00\x00\x00\x01" + sample[i + 4 : i + 4 + n]
        i += 4 + n
    return bytes(out)


def parameter_sets(init: bytes) -> bytes:
    """SPS and PPS from an init section's avcC, as Annex-B."""
    i = init.find(b"avcC")
    body = init[i + 4 :]
    n_sps, pos = body[5] & 0x1F, 6
    out = bytearray()
    for _ in range(n_sps):
        size = int.from_bytes(body[pos : pos + 2], "big")
        out += b"\x00\x00\x00\x01" + body[pos + 2 : pos + 2 + size]
        pos += 2 + size
    for _ in range(body[pos]):
        size = int.from_bytes(body[pos + 1 : pos + 3], "big")
        out += b"\x00\x00\x00\x01" + body[pos + 3 : pos + 3 + size]
        pos += 2 + size
    return bytes(out)


class PartReader:
    """One low-latency player of one rendition; latencies in seconds."""

    def __init__(self, http: httpx.AsyncClient, base: str, t0: float, fps: int) -> None:
        self.http, self.base, self.t0, self.fps = http, base, t0, fps
        self.latencies: list[float] = []
        self.frames = 0

    async def play(self, seconds: float, window: tuple[float, float]) -> None:
        text = (await self.http.get(f"{self.base}/index.m3u8")).text
        init = (await self.http.get(f"{self.base}/init0.mp4")).content
        decoder: Any = av.CodecContext.create("h264", "r")
        head = parameter_sets(init)
        independent = [(int(a), int(b)) for a, b, ind in _PART.findall(text) if ind]
        msn, part = independent[-1]  # join at the newest part that starts on a keyframe
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            r = await self.http.get(f"{self.base}/part{msn}.{part}.m4s")
            if r.status_code == 404:  # the segment closed before this index: the next one
                msn, part = msn + 1, 0
                continue
            r.raise_for_status()
            for sample in video_samples(r.content):
                packet = av.Packet(head + annexb(sample) if head else annexb(sample))
                head = b""
                for frame in decoder.decode(packet):
                    now = time.time()
                    self.frames += 1
                    y = np.asarray(frame.to_ndarray(), np.uint8)[: frame.height]
                    n = pattern.read_counter(y)
                    if n is not None and window[0] <= now <= window[1]:
                        made = self.t0 + n / self.fps
                        while now - made > 65536 / self.fps / 2:  # the counter wraps
                            made += 65536 / self.fps
                        self.latencies.append(now - made)
            part += 1


async def _poller(url: httpx.URL, stop_at: float, counts: dict[str, int]) -> None:
    """One polling player on a raw keep-alive connection (httpx would be the bottleneck)."""
    conn = RawConn(url.host, url.port or 80)
    path = url.path
    try:
        status, body = await conn.call(Call("GET", f"{path}/index.m3u8", {}))
        hint = _HINT.search(body.decode())
        msn, part = (int(hint.group(1)), int(hint.group(2))) if hint else (0, 0)
        while time.time() < stop_at:
            status, body = await conn.call(
                Call("GET", f"{path}/index.m3u8?_HLS_msn={msn}&_HLS_part={part}", {})
            )
            counts["playlists"] += 1
            status, media = await conn.call(Call("GET", f"{path}/part{msn}.{part}.m4s", {}))
            if status == 200:
                counts["parts"] += 1
                counts["bytes"] += len(media)
            hint = _HINT.search(body.decode())
            if hint is None:
                break
            msn, part = int(hint.group(1)), int(hint.group(2))
    finally:
        conn.close()


async def load(base: str, clients: int, start_at: float, stop_at: float) -> dict[str, Any]:
    counts = {"playlists": 0, "parts": 0, "bytes": 0}
    url = httpx.URL(base)
    await asyncio.sleep(max(0.0, start_at - time.time()))
    cpu0 = time.process_time()
    await asyncio.gather(*(_poller(url, stop_at, counts) for _ in range(clients)))
    return counts | {"clients": clients, "cpu_s": time.process_time() - cpu0}


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True, help="…/hls/{bid}/{rung}")
    p.add_argument("--clients", type=int, required=True)
    p.add_argument("--start-at", type=float, required=True)
    p.add_argument("--stop-at", type=float, required=True)
    a = p.parse_args()
    print(json.dumps(asyncio.run(load(a.base, a.clients, a.start_at, a.stop_at))), flush=True)
