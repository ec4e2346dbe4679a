"""The metrics registry: readings belong to their owners and add up across them."""

from __future__ import annotations

import types

from core import metrics
from core.config import Settings
from jangteo.testkit.server import RunningServer, bearer
from stream.deliver.rtc import MAX_SDP_BYTES
from stream.hub import MediaHub

SDP = "application/sdp"


def _sample(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in the scrape")


def test_readings_of_every_owner_add_up_and_leave_with_their_owner() -> None:
    gauge = metrics.Gauge("jangteo_test_things", "things")
    a, b = object(), object()
    gauge.register(a, lambda: 2)
    gauge.register(b, lambda: 5)
    assert gauge.value() == 7
    gauge.unregister(a)
    gauge.unregister(a)  # twice is harmless
    assert gauge.value() == 5
    gauge.unregister(b)
    assert gauge.samples() == [((), 0)]


def test_a_reading_that_only_grows_is_typed_a_counter() -> None:
    text = metrics.render()
    assert "# TYPE jangteo_rtp_packets_out_total counter" in text
    assert "# TYPE jangteo_viewers gauge" in text


class _Media:
    """What the hub's readings look at: sessions, the compositor's buses, counters."""

    def __init__(self) -> None:
        self.publishers: dict[str, object] = {}
        self.viewers = {"v": object()}
        self.compositor = types.SimpleNamespace(
            video_buses={}, audio_bus=types.SimpleNamespace(skips=1)
        )

    def traffic(self) -> tuple[int, int]:
        return 10, 1000


async def test_two_media_hubs_count_together_until_one_closes() -> None:
    first, second = MediaHub(Settings()), MediaHub(Settings())
    first.broadcasts["b1"] = _Media()  # type: ignore[assignment]
    second.broadcasts["b2"] = _Media()  # type: ignore[assignment]
    second.broadcasts["b3"] = _Media()  # type: ignore[assignment]
    try:
        text = metrics.render()
        assert _sample(text, "jangteo_broadcasts") == 3
        assert _sample(text, "jangteo_viewers") == 3
        assert _sample(text, "jangteo_rtp_packets_out_total") == 30
        assert _sample(text, "jangteo_viewer_skips_total") == 3
        first.broadcasts.clear()
        await first.aclose()
        # the hub built last no longer decides what the process reports
        assert _sample(metrics.render(), "jangteo_broadcasts") == 2
    finally:
        second.broadcasts.clear()
        await second.aclose()
    assert _sample(metrics.render(), "jangteo_broadcasts") == 0


async def test_every_refusal_is_counted_by_status_and_code(server: RunningServer) -> None:
    """A limit that bites shows in /metrics: jangteo_problems_total{code, status}."""

    def refused(text: str, status: int, code: str) -> float:
        name = f'jangteo_problems_total{{code="{code}",status="{status}"}}'
        return next((float(x.split()[1]) for x in text.splitlines() if x.startswith(name)), 0.0)

    b = await server.live_broadcast()
    before = (await server.http.get("/metrics", headers=server.admin())).text
    big = {"Content-Type": SDP} | bearer(b["host_token"])
    for _ in range(3):
        r = await server.http.post(f"/whep/{b['id']}", content=b"v" * (MAX_SDP_BYTES + 1),
                                   headers=big)  # fmt: skip
        assert r.status_code == 413
    buyer = await server.token(b["id"], "viewer", "구매자")
    r = await server.http.post(f"/api/broadcasts/{b['id']}/orders", json={"qty": 1},
                               headers=bearer(buyer) | {"Idempotency-Key": "m1"})  # fmt: skip
    assert r.status_code == 422 or r.status_code == 400, r.text
    after = (await server.http.get("/metrics", headers=server.admin())).text
    assert refused(after, 413, "too_large") - refused(before, 413, "too_large") == 3
    code = r.json()["code"]
    assert refused(after, r.status_code, code) - refused(before, r.status_code, code) == 1
