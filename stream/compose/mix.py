"""Mixing the publishers' audio without clipping.

Chunks (interleaved s16 stereo, 48 kHz, one per publisher) are summed in int32. When the sum's
peak exceeds full scale, :class:`SoftLimiter` scales the chunk down by exactly enough — the whole
chunk is known before it goes out, so the attack needs no look-ahead beyond it — and lets the
gain recover towards 1 with a time constant of :data:`RELEASE_S`, ramping within each chunk so
the level never steps. Two full-scale voices come out as the same waveform, quieter, instead of
flat-topped; a mix that never exceeds full scale passes through bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

FULL_SCALE = 32767
RELEASE_S = 0.25
CHANNELS = 2


def mix(chunks: Sequence[NDArray[np.int16]], values: int) -> NDArray[np.int32]:
    """The int32 sum of ``chunks`` (``values`` interleaved samples each); zeros when none."""
    acc = np.zeros(values, np.int32)
    for chunk in chunks:
        acc += chunk
    return acc


class SoftLimiter:
    """Keeps a mix within s16 by a smoothly varying gain (one instance per output stream)."""

    def __init__(self, chunk_s: float = 0.02, release_s: float = RELEASE_S) -> None:
        self.gain = 1.0
        self._recover = 1.0 - math.exp(-chunk_s / release_s)

    def process(self, mixed: NDArray[np.int32]) -> NDArray[np.int16]:
        peak = int(np.abs(mixed).max()) if mixed.size else 0
        target = 1.0 if peak <= FULL_SCALE else FULL_SCALE / peak
        start = min(self.gain, target)  # attack at once: this chunk must fit
        end = min(target, self.gain + (1.0 - self.gain) * self._recover)
        if target == 1.0 and end > 0.999:
            end = 1.0
        self.gain = end
        if start == end == 1.0:
            return mixed.astype(np.int16)
        frames = mixed.size // CHANNELS
        ramp = np.repeat(np.linspace(start, end, frames), CHANNELS)
        out = np.rint(mixed * ramp)
        # both ends of the ramp are <= target, so |out| <= FULL_SCALE; this only guards rounding
        return np.clip(out, -FULL_SCALE, FULL_SCALE).astype(np.int16)
