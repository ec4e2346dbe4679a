"""HLS playlists as text (pure): the multivariant playlist over the ladder, a rendition's
Low-Latency media playlist (RFC 8216bis: EXT-X-PART, EXT-X-PRELOAD-HINT,
EXT-X-SERVER-CONTROL), and the VOD playlist of a recording. Chapters (pins) go in as
EXT-X-DATERANGE."""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Sequence

from core.pins import Pin
from stream.encode.ladder import Rung

from .segmenter import PART_S, Segment

PART_HOLD_BACK = 3 * PART_S + 0.1  # the spec asks for at least three part targets
PARTS_KEPT = 3  # segments (the newest) whose parts the playlist lists


@dataclasses.dataclass(frozen=True, slots=True)
class DateRange:
    id: str
    start: float  # epoch seconds
    attributes: tuple[tuple[str, str], ...] = ()  # X-… client attributes, quoted strings


def pin_ranges(pins: Sequence[Pin]) -> list[DateRange]:
    """The show's pins as date ranges (players show them; the replay's chapters come from them)."""
    return [
        DateRange(f"pin-{p.at_ms}", p.at_ms / 1000, (("X-PRODUCT-ID", p.product_id),
                                                     ("X-NAME", p.name),
                                                     ("X-PRICE", str(p.price))))
        for p in pins
    ]  # fmt: skip


def _pdt(epoch: float) -> str:
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _quoted(value: str) -> str:
    """A quoted-string attribute (RFC 8216 4.2): no double quote, CR or LF inside; any other
    line break (U+2028, NEL, …) too, so no player splits the line."""
    flat = " ".join(value.replace('"', "'").splitlines())
    return '"' + flat + '"'


def _dateranges(ranges: Sequence[DateRange], since: float) -> list[str]:
    lines = []
    for r in ranges:
        if r.start < since:
            continue
        attrs = [f"ID={_quoted(r.id)}", f"START-DATE={_quoted(_pdt(r.start))}"]
        attrs += [f"{k}={_quoted(v)}" for k, v in r.attributes]
        lines.append("#EXT-X-DATERANGE:" + ",".join(attrs))
    return lines


def multivariant(ladder: Sequence[Rung], codecs: dict[str, str]) -> str:
    """Every rung (H.264 + AAC), highest first; ``codecs`` maps a rung name to its CODECS."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:9", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for r in ladder:
        bandwidth = int(r.bitrate * 1.1) + 128_000  # video with headroom, and the audio
        lines.append(
            f"#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},AVERAGE-BANDWIDTH={r.bitrate + 128_000},"
            f'RESOLUTION={r.width}x{r.height},FRAME-RATE=30.000,CODECS="{codecs[r.name]}"'
        )
        lines.append(f"{r.name}/index.m3u8")
    return "\n".join(lines) + "\n"


def media(
    segments: Sequence[Segment],
    preload: tuple[int, int] | None,
    ranges: Sequence[DateRange] = (),
) -> str:
    """The live media playlist of a rendition: its window of segments, the newest ones' parts,
    the part being made as a preload hint (``preload``: its msn and index)."""
    done = [s for s in segments if s.parts]
    longest = max((s.duration for s in done if s.complete), default=2.0)
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:9",
        f"#EXT-X-TARGETDURATION:{max(2, math.ceil(longest))}",
        f"#EXT-X-PART-INF:PART-TARGET={PART_S + 0.001:.3f}",
        f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={PART_HOLD_BACK:.3f}",
        f"#EXT-X-MEDIA-SEQUENCE:{done[0].msn if done else (preload or (0, 0))[0]}",
    ]
    if done:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{done[0].init}")
    init = None
    newest = {s.msn for s in done[-PARTS_KEPT:]}
    for s in done:
        if s.init != init:
            if init is not None:
                lines.append("#EXT-X-DISCONTINUITY")
            init = s.init
            lines.append(f'#EXT-X-MAP:URI="init{init}.mp4"')
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_pdt(s.started_at)}")
        if s.msn in newest:
            for p in s.parts:
                independent = ",INDEPENDENT=YES" if p.independent else ""
                lines.append(
                    f'#EXT-X-PART:DURATION={p.duration:.3f},URI="part{s.msn}.{p.index}.m4s"'
                    + independent
                )
        if s.complete:
            lines.append(f"#EXTINF:{s.duration:.3f},")
            lines.append(f"seg{s.msn}.m4s")
    if done:
        lines += _dateranges(ranges, done[0].started_at)
    if preload is not None:
        lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part{preload[0]}.{preload[1]}.m4s"')
    return "\n".join(lines) + "\n"


@dataclasses.dataclass(frozen=True, slots=True)
class VodSegment:
    uri: str
    duration: float
    init: str  # its EXT-X-MAP URI
    started_at: float


def vod(segments: Sequence[VodSegment], ranges: Sequence[DateRange] = ()) -> str:
    """A finished recording: every segment, EXT-X-ENDLIST; a new init after a restart is a
    discontinuity."""
    longest = max((s.duration for s in segments), default=1.0)
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:9",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        f"#EXT-X-TARGETDURATION:{math.ceil(longest)}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-INDEPENDENT-SEGMENTS",
    ]
    init = None
    for s in segments:
        if s.init != init:
            if init is not None:
                lines.append("#EXT-X-DISCONTINUITY")
            init = s.init
            lines.append(f'#EXT-X-MAP:URI="{init}"')
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_pdt(s.started_at)}")
        lines.append(f"#EXTINF:{s.duration:.3f},")
        lines.append(s.uri)
    if segments:
        lines += _dateranges(ranges, 0.0)
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"
