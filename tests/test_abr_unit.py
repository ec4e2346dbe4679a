"""A viewer's rung from its link's feedback (stream/deliver/abr.py), on simulated links."""

from __future__ import annotations

import itertools

from stream.deliver.abr import MAX_UP_HOLD, RateController

LADDER = [2_500_000, 800_000, 256_000]
STEP = 0.25  # the fan-out looks at its viewers about four times a second
PACKET = 1200


class Link:
    """A link that carries ``cap`` bit/s: what is sent beyond it is lost (a tbf, roughly)."""

    def __init__(self, controller: RateController, cap: float | None = None) -> None:
        self.c = controller
        self.cap = cap
        self.now = 0.0
        self.packets = self.octets = self.lost = 0
        self.rungs: list[tuple[float, int]] = []  # (time, rung) after each step

    def run(self, seconds: float, remb: float | None = None) -> None:
        """``remb``: a fixed estimate each second; else the receiver's own, as WebRTC's
        estimator behaves: 85 % of what arrives when the link queues, else up to 1.5x it."""
        end = self.now + seconds
        while self.now < end - 1e-9:
            self.now += STEP
            rate = LADDER[self.c.rung]
            n = int(rate * STEP / 8 / PACKET)
            self.packets += n
            self.octets += n * PACKET
            over = self.cap is not None and rate > self.cap
            if self.cap is not None and over:
                self.lost += round(n * (1 - self.cap / rate))
            self.c.observe(self.packets, self.octets, self.lost, self.now)
            if int(self.now / STEP) % 4 == 0:  # a REMB a second
                if remb is not None:
                    estimate = remb
                elif self.cap is not None and over:
                    estimate = 0.85 * self.cap
                else:
                    estimate = 1.5 * rate
                self.c.remb(int(estimate), self.now)
            self.rungs.append((self.now, self.c.decide(self.now)))

    def first_at(self, rung: int, after: float = 0.0) -> float | None:
        return next((t for t, r in self.rungs if r == rung and t > after), None)


def test_a_clean_link_stays_on_the_top_rung() -> None:
    link = Link(RateController(LADDER, 0, 0.0))
    link.run(120)
    assert {r for _, r in link.rungs} == {0}
    assert link.c.downs == link.c.ups == 0


def test_a_capped_link_goes_down_fast_straight_to_what_fits() -> None:
    link = Link(RateController(LADDER, 0, 0.0), cap=700_000)
    link.run(5)
    # 2.5 Mbps into 700 kbit/s: 72 % lost; what got through fits only the 256 kbps rung
    down = link.first_at(2)
    assert down is not None and down <= 2.0, link.rungs[:12]
    assert link.c.downs == 1  # in one step, not one rung at a time


def test_a_capped_link_probes_rarely_and_never_flaps() -> None:
    link = Link(RateController(LADDER, 0, 0.0), cap=700_000)
    link.run(120)
    on_bottom = sum(1 for _, r in link.rungs if r == 2) / len(link.rungs)
    assert on_bottom >= 0.8  # a failed probe costs two seconds in twelve
    # probes to 800 kbps fail (12 % lost) and space out to MAX_UP_HOLD
    assert 2 <= link.c.ups <= 120 / MAX_UP_HOLD + 2
    assert link.c.ups - link.c.failed_probes <= 1  # the last may still be on trial
    assert link.c.up_hold == MAX_UP_HOLD
    ups = [t for (t, r), (_, prev) in zip(link.rungs[1:], link.rungs, strict=False) if r < prev]
    assert all(b - a >= MAX_UP_HOLD for a, b in itertools.pairwise(ups)), ups


def test_lifting_the_cap_brings_the_viewer_back_up_within_20_s() -> None:
    link = Link(RateController(LADDER, 0, 0.0), cap=700_000)
    link.run(60)  # long enough for the probe hold to reach its maximum
    assert link.c.rung == 2
    link.cap = None
    lifted = link.now
    link.run(30)
    top = link.first_at(0, after=lifted)
    assert top is not None and top - lifted <= 20, link.rungs[-120:]
    assert link.c.rung == 0


def test_a_link_that_carries_the_middle_rung_settles_there() -> None:
    link = Link(RateController(LADDER, 0, 0.0), cap=1_200_000)
    link.run(90)
    late = [r for t, r in link.rungs if t > 30]
    assert late.count(1) / len(late) > 0.8  # probes of the top fail; 800 kbps holds
    assert 2 not in late


def test_a_low_remb_moves_the_viewer_down_without_any_loss() -> None:
    link = Link(RateController(LADDER, 0, 0.0))
    link.run(6, remb=600_000)
    assert link.c.rung == 2  # 600 kbps estimated: the 256 kbps rung fits under it


def test_a_receiver_ramping_up_after_a_switch_is_not_overuse() -> None:
    """After a switch up the receiver's estimate starts under the new rate and climbs: rising
    estimates, however low, are not a short link; one that falls and stays under is."""
    c = RateController(LADDER, 1, 0.0)
    link = Link(c)
    for estimate in (400_000, 480_000, 560_000, 640_000, 720_000):
        link.run(1, remb=estimate)
    assert c.rung == 1 and c.downs == 0
    link.run(1, remb=500_000)  # then it falls: the queue is growing
    link.run(1, remb=500_000)
    assert c.rung == 2


def test_keyframe_requests_piling_up_send_the_viewer_down() -> None:
    c = RateController(LADDER, 0, 0.0)
    link = Link(c)
    link.run(2)
    for _ in range(3):  # a decoder that keeps breaking, on a link that reports no loss
        c.keyframe_request(link.now)
        link.run(0.5)
    assert c.rung == 1  # one rung down, not a keyframe for everyone on the top rung


def test_a_ladder_of_one_rung_never_moves() -> None:
    c = RateController([1_000_000], 0, 0.0)
    link = Link(c, cap=100_000)
    link.run(10)
    assert c.rung == 0 and c.downs == 0


def test_a_backed_up_socket_sends_the_viewer_down() -> None:
    c = RateController(LADDER, 0, 0.0)
    link = Link(c)
    link.run(3)
    c.backlog(link.now)
    link.run(0.25)
    assert c.rung == 1  # half of 2.5 Mbps at best: 800 kbps fits under 85 % of that
