"""A small Prometheus text-format registry (counters and gauges with labels).

Values that are cheaper to read than to maintain are :class:`Gauge` readings: each owner (a media
hub, a chat hub) registers a callback when it starts and unregisters it when it closes; a scrape
adds up the readings of every owner alive in the process. A reading that only grows (packets
sent) is exposed as a counter.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


def _fmt_labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{v}"' for k, v in labels)
    return "{" + inner + "}"


class Counter:
    kind = "counter"

    def __init__(self, name: str, help: str) -> None:
        self.name = name
        self.help = help
        self._values: dict[tuple[tuple[str, str], ...], float] = {}
        self._lock = threading.Lock()  # incremented from compose threads too

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(tuple(sorted(labels.items())), 0.0)

    def samples(self) -> list[tuple[tuple[tuple[str, str], ...], float]]:
        with self._lock:
            return list(self._values.items()) or [((), 0.0)]


class Gauge:
    """A value read at scrape time from its owners' callbacks (summed)."""

    def __init__(self, name: str, help: str, kind: str = "gauge") -> None:
        self.name = name
        self.help = help
        self.kind = kind
        self._owners: dict[int, Callable[[], float]] = {}

    def register(self, owner: object, read: Callable[[], float]) -> None:
        self._owners[id(owner)] = read

    def unregister(self, owner: object) -> None:
        self._owners.pop(id(owner), None)

    def value(self) -> float:
        return sum(read() for read in list(self._owners.values()))

    def samples(self) -> list[tuple[tuple[tuple[str, str], ...], float]]:
        return [((), self.value())]


BROADCASTS = Gauge("jangteo_broadcasts", "Broadcasts with media on this process")
PUBLISHERS = Gauge("jangteo_publishers", "WHIP publishers connected to this process")
VIEWERS = Gauge("jangteo_viewers", "WHEP viewer sessions on this process")
FRAMES_COMPOSED = Counter("jangteo_frames_composed_total", "Video frames composed")
FRAMES_ENCODED = Counter("jangteo_frames_encoded_total", "Video frames encoded, by codec")
ENCODE_SECONDS = Counter("jangteo_encode_seconds_total", "Seconds spent encoding, by codec")
KEYFRAMES_FORCED = Counter("jangteo_keyframes_forced_total", "Keyframes forced on request")
PACKETS_OUT = Gauge("jangteo_rtp_packets_out_total", "RTP packets sent to viewers", "counter")
BYTES_OUT = Gauge("jangteo_rtp_bytes_out_total", "RTP payload bytes sent to viewers", "counter")
VIEWER_SKIPS = Gauge(
    "jangteo_viewer_skips_total", "Backlogs dropped by viewers that fell behind", "counter"
)

CHAT_SOCKETS = Gauge("jangteo_chat_sockets", "Chat sockets on this process")
CHAT_DELIVERIES = Gauge(
    "jangteo_chat_deliveries_total", "Chat events delivered to sockets", "counter"
)
CHAT_DROPPED_SLOW = Gauge(
    "jangteo_chat_dropped_slow_total", "Chat sockets closed as too slow", "counter"
)
RELAY_EDGES = Gauge("jangteo_relay_edges", "Edge nodes pulling from this origin")
RELAY_BYTES = Gauge(
    "jangteo_relay_bytes_out_total", "Bytes relayed to edge nodes (frames and framing)", "counter"
)
RELAY_REFUSED = Counter(
    "jangteo_relay_refused_total", "Relay connections refused (no proof of the shared secret)"
)
RELAY_FEED_CPU = Gauge(
    "jangteo_relay_feed_cpu_seconds_total", "CPU seconds spent feeding edge nodes", "counter"
)
EDGES = Gauge("jangteo_edges", "Broadcasts this node serves as an edge of another's")

PROBLEMS = Counter(
    "jangteo_problems_total",
    "Requests refused or failed, by status and problem code (limits: 413, 422, 429, …)",
)
TASKS = Gauge("jangteo_tasks", "asyncio tasks on this process's event loop")

ALL: list[Counter | Gauge] = [
    BROADCASTS,
    PUBLISHERS,
    VIEWERS,
    FRAMES_COMPOSED,
    FRAMES_ENCODED,
    ENCODE_SECONDS,
    KEYFRAMES_FORCED,
    PACKETS_OUT,
    BYTES_OUT,
    VIEWER_SKIPS,
    CHAT_SOCKETS,
    CHAT_DELIVERIES,
    CHAT_DROPPED_SLOW,
    RELAY_EDGES,
    RELAY_BYTES,
    RELAY_REFUSED,
    RELAY_FEED_CPU,
    EDGES,
    TASKS,
    PROBLEMS,
]


def render() -> str:
    lines: list[str] = []
    for m in ALL:
        lines.append(f"# HELP {m.name} {m.help}")
        lines.append(f"# TYPE {m.name} {m.kind}")
        for labels, value in m.samples():
            v = int(value) if float(value).is_integer() else round(value, 6)
            lines.append(f"{m.name}{_fmt_labels(labels)} {v}")
    return "\n".join(lines) + "\n"
