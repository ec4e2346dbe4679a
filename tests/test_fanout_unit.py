"""stream.encode.bus (Subscription, FrameBus), stream.deliver.fanout (ViewerTrack) and the
keyframe limiter (stream.encode.encoders.KeyframeLimiter)."""

from __future__ import annotations

import asyncio
import fractions
import itertools
import random

import pytest
from aiortc.mediastreams import MediaStreamError

from stream.deliver.fanout import ViewerTrack
from stream.encode.bus import AUDIO_BACKLOG, VIDEO_BACKLOG, FrameBus, Subscription
from stream.encode.encoders import VIDEO_TIME_BASE, EncodedFrame, KeyframeLimiter


def frame(n: int, key: bool = False) -> EncodedFrame:
    return EncodedFrame(
        data=f"frame-{n}".encode(), pts=n * 3000, time_base=VIDEO_TIME_BASE, keyframe=key,
        composed_at=float(n),
    )  # fmt: skip


class Requests:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


async def one_loop_turn() -> None:
    """Let every ready task run one step (no timers involved)."""
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    loop.call_soon(fut.set_result, None)
    await fut


def drain(sub: Subscription) -> list[EncodedFrame]:
    out = list(sub.queue)
    sub.queue.clear()
    return out


def test_backlog_sizes() -> None:
    assert FrameBus("video", Requests()).maxlen == VIDEO_BACKLOG
    assert FrameBus("audio", Requests()).maxlen == AUDIO_BACKLOG
    assert FrameBus("video", Requests(), maxlen=3).maxlen == 3


def test_new_video_subscriber_waits_for_a_keyframe_and_asks_for_one() -> None:
    req = Requests()
    bus = FrameBus("video", req)
    sub = bus.subscribe()
    assert req.count == 1
    assert sub.waiting_keyframe
    bus.publish([frame(1), frame(2)])
    assert not sub.queue
    bus.publish([frame(3, key=True), frame(4), frame(5)])
    assert [f.pts for f in drain(sub)] == [9000, 12000, 15000]
    assert not sub.waiting_keyframe
    assert sub.skips == 0 and bus.skips == 0
    assert req.count == 1  # no further request once it started
    assert bus.frames == 5


def test_audio_subscriber_starts_at_once_without_asking() -> None:
    req = Requests()
    bus = FrameBus("audio", req)
    sub = bus.subscribe()
    bus.publish([frame(1, key=True), frame(2, key=True)])
    assert len(sub.queue) == 2
    assert req.count == 0


async def test_get_waits_for_a_frame() -> None:
    bus = FrameBus("video", Requests())
    sub = bus.subscribe()
    getter = asyncio.get_running_loop().create_task(sub.get())
    await one_loop_turn()
    assert not getter.done()  # blocked: nothing yet, and a delta frame is not enough
    bus.publish([frame(1)])
    await one_loop_turn()
    assert not getter.done()
    bus.publish([frame(2, key=True)])
    got = await getter
    assert got.keyframe and got.pts == 6000
    assert sub.delivered == 1


def test_full_backlog_is_dropped_and_resumes_at_the_next_keyframe() -> None:
    req = Requests()
    bus = FrameBus("video", req, maxlen=4)
    sub = bus.subscribe()
    bus.publish([frame(0, key=True), frame(1), frame(2), frame(3)])
    assert len(sub.queue) == 4
    requested = req.count
    bus.publish([frame(4)])  # one too many: behind
    assert not sub.queue
    assert sub.skips == 1 and bus.skips == 1
    assert sub.waiting_keyframe
    assert req.count == requested + 1
    bus.publish([frame(5), frame(6)])  # deltas are useless until the next keyframe
    assert not sub.queue
    bus.publish([frame(7, key=True), frame(8)])
    assert [f.pts // 3000 for f in drain(sub)] == [7, 8]
    assert req.count == requested + 1  # asked once, not per dropped frame
    assert sub.skips == 1


def test_full_backlog_at_a_keyframe_resumes_on_it_without_asking() -> None:
    req = Requests()
    bus = FrameBus("video", req, maxlen=3)
    sub = bus.subscribe()
    bus.publish([frame(0, key=True), frame(1), frame(2)])
    requested = req.count
    bus.publish([frame(3, key=True)])
    assert [f.pts // 3000 for f in sub.queue] == [3]
    assert sub.skips == 1
    assert not sub.waiting_keyframe
    assert req.count == requested


def test_memory_stays_bounded() -> None:
    rng = random.Random(7)
    bus = FrameBus("video", Requests(), maxlen=10)
    sub = bus.subscribe()
    longest = 0
    for n in range(2000):
        bus.publish([frame(n, key=n % 30 == 0 or rng.random() < 0.02)])
        assert len(sub.queue) <= bus.maxlen
        longest = max(longest, len(sub.queue))
        if rng.random() < 0.3:  # a consumer far slower than the producer
            drain(sub)
    assert longest == bus.maxlen
    assert sub.skips > 0
    # whatever survives always starts at a keyframe after a skip
    assert not sub.queue or not sub.waiting_keyframe


def test_a_slow_subscriber_does_not_affect_a_fast_one() -> None:
    req = Requests()
    bus = FrameBus("video", req, maxlen=5)
    fast, slow = bus.subscribe(), bus.subscribe()
    received: list[int] = []
    for n in range(200):
        bus.publish([frame(n, key=n % 25 == 0)])
        received += [f.pts // 3000 for f in drain(fast)]
    assert received == list(range(200))  # every frame, in order, no gap
    assert fast.skips == 0
    assert slow.skips > 0
    assert len(slow.queue) <= bus.maxlen
    assert bus.skips == slow.skips


def test_close_discards_the_subscription() -> None:
    bus = FrameBus("video", Requests())
    a, b = bus.subscribe(), bus.subscribe()
    bus.publish([frame(0, key=True)])
    a.close()
    assert bus.subscribers == {b}
    assert not a.queue
    bus.publish([frame(1)])
    assert not a.queue and len(b.queue) == 2
    bus.close()
    assert not bus.subscribers


async def test_close_wakes_a_waiting_reader() -> None:
    bus = FrameBus("audio", Requests())
    sub = bus.subscribe()
    getter = asyncio.get_running_loop().create_task(sub.get())
    await one_loop_turn()
    assert not getter.done()
    bus.close()
    with pytest.raises(MediaStreamError):
        await getter
    with pytest.raises(MediaStreamError):
        await sub.get()


async def test_viewer_track_subscribes_on_first_read_and_yields_packets() -> None:
    req = Requests()
    bus = FrameBus("video", req)
    track = ViewerTrack("video", lambda: bus)
    assert not bus.subscribers and req.count == 0  # nothing before the sender reads
    reader = asyncio.get_running_loop().create_task(track.recv())
    await one_loop_turn()
    assert len(bus.subscribers) == 1 and req.count == 1
    bus.publish([frame(9, key=True)])
    packet = await reader
    assert bytes(packet) == b"frame-9"
    assert packet.pts == 9 * 3000
    assert packet.time_base == fractions.Fraction(1, 90000)
    track.stop()
    assert not bus.subscribers
    with pytest.raises(MediaStreamError):
        await track.recv()


# -- KeyframeLimiter ---------------------------------------------------------------------------


def test_limiter_forces_nothing_unasked() -> None:
    lim = KeyframeLimiter(0.5)
    assert not any(lim.take(t / 30) for t in range(100))
    assert lim.forced == 0


def test_limiter_first_request_is_served_at_once() -> None:
    lim = KeyframeLimiter(0.5)
    lim.request()
    assert lim.take(100.0)
    assert not lim.take(100.0 + 1 / 30)  # served: not repeated
    assert lim.forced == 1


def test_limiter_at_most_one_per_interval_and_defers_early_requests() -> None:
    lim = KeyframeLimiter(0.5)
    lim.request()
    assert lim.take(10.0)
    lim.request()  # too early: deferred, not dropped
    lim.request()  # and coalesced with the one before
    assert not lim.take(10.1)
    assert not lim.take(10.49)
    assert lim.take(10.5)  # served without being asked again
    assert not lim.take(10.6)
    assert lim.forced == 2
    assert lim.requests == 3


def test_limiter_rate_under_a_storm_of_requests() -> None:
    lim = KeyframeLimiter(0.5)
    fps = 30
    times = []
    for n in range(fps * 10):  # ten seconds, a PLI before every frame
        lim.request()
        now = 1000.0 + n / fps
        if lim.take(now):
            times.append(now)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= 0.5 - 1e-9 for gap in gaps)
    assert 18 <= len(times) <= 21  # about two a second, no more
    assert lim.forced == len(times)


def test_limiter_interval_is_configurable() -> None:
    lim = KeyframeLimiter(2.0)
    lim.request()
    assert lim.take(0.0)
    lim.request()
    assert not lim.take(1.9)
    assert lim.take(2.0)
