"""Which rung of the ladder one viewer's link can carry, from what the link reports (pure).

The fast fan-out feeds a viewer's :class:`RateController` with what it sent the viewer and what
the viewer's RTCP said: NACKs (packets it found missing, first report of each), receiver reports
(fraction lost), REMB (the receiver's estimate of what it can take) and its keyframe requests.
Time is passed in, nothing here reads a clock.

- Down, fast: within a second or two of a short link -- more than ``SEVERE_LOSS`` of the packets
  lost over a second or ``SUSTAINED_LOSS`` over four (NACKs or receiver reports), REMBs that stay
  well under what is being sent, its socket backing up, or keyframe requests piling up --
  straight to the highest rung
  that fits what actually got through. Random loss of a few percent is not a short link: the
  retransmissions repair it, and small windows would mistake its clusters for one.
- Up, cautiously: only after ``up_hold`` seconds clean on the current rung, one rung at a time,
  as a probe. A probe that meets loss within ``PROBE_S`` goes back down and doubles the hold
  (up to ``MAX_UP_HOLD``); one that holds makes the next step sooner. So a viewer never flaps.

Rungs are indexes into the ladder's bitrates, highest first (0 is the top).
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence

WINDOW_S = 1.0  # rate and severe loss are measured over the last second
MIN_PACKETS = 30  # a window with fewer packets says nothing about loss
SEVERE_LOSS = 0.20  # more lost than this within a second: the link is short
SUSTAINED_S, SUSTAINED_LOSS, SUSTAINED_PACKETS = 4.0, 0.10, 100  # … or this over four seconds
CLEAN_LOSS = 0.02  # less than this over CLEAN_S: clean enough to try a rung up
CLEAN_S = 3.0
SETTLE_S = 0.7  # after a switch, the new rung's own feedback first
FIT = 0.85  # a rung fits when its bitrate is under this share of what got through
REMB_LOW = 0.85  # REMBs under this share of the rate sent, twice and not rising: overuse
REMB_FRESH_S = 2.5
KEYFRAME_REQUESTS = 3  # keyframe requests within KEYFRAME_WINDOW_S: the link is losing
KEYFRAME_WINDOW_S = 3.0
UP_HOLD = 8.0  # clean seconds before the first probe after a down-switch
UP_STEP_HOLD = 4.0  # … before the next step after a probe that held
MAX_UP_HOLD = 12.0
PROBE_S = 6.0  # a probe that meets loss within this goes back down


@dataclasses.dataclass
class _Slice:
    """What was sent and lost between two looks at the totals, ``start`` to ``at``."""

    start: float
    at: float
    packets: int
    octets: int
    lost: int


class RateController:
    def __init__(self, bitrates: Sequence[int], start: int, now: float) -> None:
        if not bitrates:
            raise ValueError("a ladder has at least one rung")
        self.bitrates = list(bitrates)
        self.rung = min(max(start, 0), len(self.bitrates) - 1)
        self.switched_at = now
        self.up_hold = UP_HOLD
        self.probe_until = -1.0  # an up-switch on trial until then
        self.downs = 0
        self.ups = 0
        self.failed_probes = 0
        self._slices: collections.deque[_Slice] = collections.deque()
        self._report_loss: tuple[float, float] | None = None  # (at, fraction lost)
        self._rembs: collections.deque[tuple[float, int]] = collections.deque(maxlen=8)
        self._keyframe_requests: collections.deque[float] = collections.deque(maxlen=16)
        self._short_since: float | None = None  # when the link last looked short
        self._totals: tuple[float, int, int, int] | None = None
        self._backlog_at = -1e9

    # -- what the fan-out and the viewer's RTCP tell it ------------------------------------------
    def observe(self, packets: int, octets: int, lost: int, now: float) -> None:
        """The viewer's running totals: packets and payload bytes sent to it, packets it reported
        missing (each once). Called a few times a second; the deltas go into the window."""
        last, self._totals = self._totals, (now, packets, octets, lost)
        if last is None or now <= last[0]:
            return
        self._slices.append(_Slice(last[0], now, packets - last[1], octets - last[2],
                                   lost - last[3]))  # fmt: skip
        while self._slices and now - self._slices[0].at > SUSTAINED_S + WINDOW_S:
            self._slices.popleft()

    def report(self, fraction_lost: float, now: float) -> None:
        """A receiver report's fraction lost (0..1) since its previous report."""
        self._report_loss = (now, fraction_lost)

    def remb(self, bitrate: int, now: float) -> None:
        self._rembs.append((now, bitrate))

    def keyframe_request(self, now: float) -> None:
        self._keyframe_requests.append(now)

    def backlog(self, now: float) -> None:
        """The viewer's socket could not take what we sent it (its frames were skipped)."""
        self._backlog_at = now

    # -- reading the window ----------------------------------------------------------------------
    def _window(
        self, now: float, seconds: float, settled: bool = True
    ) -> tuple[int, int, int, float]:
        """(packets, octets, lost, seconds covered) of the slices wholly within the last
        ``seconds`` and (``settled``) after the current rung has settled."""
        start = now - seconds
        if settled:
            start = max(start, self.switched_at + SETTLE_S)
        inside = [s for s in self._slices if s.start >= start - 1e-9]
        return (sum(s.packets for s in inside), sum(s.octets for s in inside),
                sum(s.lost for s in inside), sum(s.at - s.start for s in inside))  # fmt: skip

    def loss(
        self,
        now: float,
        seconds: float = WINDOW_S,
        min_packets: int = MIN_PACKETS,
        settled: bool = True,
    ) -> float | None:
        """The share of packets lost over the last ``seconds`` (None: fewer than
        ``min_packets``); ``settled=False`` also counts the time since the last switch."""
        packets, _, lost, _ = self._window(now, seconds, settled)
        if packets < min_packets:
            return None
        return min(1.0, lost / packets)

    def rate(self, now: float) -> float | None:
        """Bits per second sent over the last window (None: too little of it yet)."""
        _, octets, _, span = self._window(now, WINDOW_S)
        return octets * 8 / span if span >= 0.2 else None

    def _remb_low(self, now: float, rate: float) -> bool:
        """The last two estimates since the switch under what is sent, and not rising: a
        receiver still ramping up after a switch up raises its estimate each time."""
        since = [b for at, b in self._rembs if now - at <= REMB_FRESH_S and at >= self.switched_at]
        if len(since) < 2:
            return False
        before, latest = since[-2], since[-1]
        return latest <= before and latest < REMB_LOW * rate

    def short(self, now: float) -> tuple[bool, float]:
        """Whether the link is short now, and how many bits per second got through."""
        if now - self.switched_at < SETTLE_S:
            return False, 0.0
        rate = self.rate(now)
        loss = self.loss(now)
        if rate is None:  # the new rung has not settled yet
            return False, 0.0
        if self._report_loss and now - self._report_loss[0] <= 1.5 * WINDOW_S:
            at, fraction = self._report_loss
            if at >= self.switched_at + SETTLE_S:
                loss = max(loss or 0.0, fraction)
        through = rate * (1 - (loss or 0.0))
        if loss is not None and loss > SEVERE_LOSS:
            return True, through
        sustained = self.loss(now, SUSTAINED_S, SUSTAINED_PACKETS)
        if sustained is not None and sustained > SUSTAINED_LOSS:
            return True, rate * (1 - sustained)
        if self._remb_low(now, rate):
            return True, min(through, self._rembs[-1][1])
        if self._backlog_at >= self.switched_at + SETTLE_S and now - self._backlog_at <= WINDOW_S:
            return True, rate * 0.5  # it took half of what we sent, at best
        recent = [t for t in self._keyframe_requests if now - t <= KEYFRAME_WINDOW_S]
        if len(recent) >= KEYFRAME_REQUESTS and all(t >= self.switched_at for t in recent):
            return True, through
        return False, through

    # -- the decision ----------------------------------------------------------------------------
    def decide(self, now: float) -> int:
        """The rung this viewer should be on now (it may be the current one)."""
        short, through = self.short(now)
        if short:
            self._short_since = now
            if self.rung == len(self.bitrates) - 1:
                return self.rung
            fits = [i for i, b in enumerate(self.bitrates) if b <= FIT * through]
            target = max(self.rung + 1, fits[0] if fits else len(self.bitrates) - 1)
            if now < self.probe_until:  # the probe failed: wait longer before the next one
                self.failed_probes += 1
                self.up_hold = min(MAX_UP_HOLD, self.up_hold * 2)
            else:
                self.up_hold = UP_HOLD
            self._switch(target, now)
            self.downs += 1
            return self.rung
        if 0 < self.probe_until <= now:  # the last probe held: the next step comes sooner
            self.probe_until = -1.0
            self.up_hold = UP_STEP_HOLD
        if self.rung == 0 or now - self.switched_at < self.up_hold or now < self.probe_until:
            return self.rung
        clean = self.loss(now, CLEAN_S)
        if clean is None or clean >= CLEAN_LOSS:
            return self.rung
        if self._short_since is not None and now - self._short_since < self.up_hold:
            return self.rung
        self._switch(self.rung - 1, now)
        self.probe_until = now + PROBE_S
        self.ups += 1
        return self.rung

    def switched(self, now: float) -> None:
        """The viewer is now on its new rung (its keyframe went out): holds count from here."""
        self.switched_at = now
        self._keyframe_requests.clear()

    def _switch(self, rung: int, now: float) -> None:
        self.rung = rung
        self.switched_at = now
        self.probe_until = -1.0
        self._keyframe_requests.clear()
