"""Generated test audio: a few sines under a slow envelope, for tests and benchmarks without song files."""

from __future__ import annotations

import numpy as np


def tone_mix(seconds: float, sample_rate_hz: int, freqs: tuple[float, ...], seed: int = 0) -> np.ndarray:
    """A short test signal: a few sines with a slow amplitude envelope plus a little noise."""
    t = np.arange(int(seconds * sample_rate_hz)) / sample_rate_hz
    rng = np.random.default_rng(seed)
    signal = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in freqs)
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 1.5 * t)
    return (0.2 * signal * envelope + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
