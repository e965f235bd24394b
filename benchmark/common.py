"""What the benchmarks share: interleaved timing, peak memory, Markdown tables, the machine line, and
their inputs (synthetic spectrograms, the paper's songs where present, the optimiser's start)."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from musicstyle.config import INIT_NOISE_STD, TransferConfig
from musicstyle.data.paper_songs import CONTENT_SONG, STYLE_SONG
from musicstyle.util.machine import describe

REPO = Path(__file__).resolve().parents[1]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def interleaved_times(fns: dict[str, Callable[[], object]], rounds: int, device: torch.device
                      ) -> dict[str, np.ndarray]:
    """Seconds of each function in each round, run round-robin `rounds` times after one warm-up each."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(rounds):
        for name, fn in fns.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: np.array(t) for name, t in times.items()}


def interleaved(fns: dict[str, Callable[[], object]], rounds: int, device: torch.device) -> dict[str, float]:
    """Median seconds of each function, run round-robin `rounds` times after one warm-up each."""
    return {name: float(np.median(t)) for name, t in interleaved_times(fns, rounds, device).items()}


def with_threads(threads: int, fn: Callable[[], object]) -> Callable[[], object]:
    def run() -> object:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return fn()
        finally:
            torch.set_num_threads(before)

    return run


def peak_rss_mb() -> float:
    """This process's peak resident memory (MB): VmHWM, which, unlike ru_maxrss, a fork + exec does not
    inherit from the (large) parent."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def machine(device: torch.device) -> str:
    return f"{describe(str(device))}, load average at start {os.getloadavg()[0]:.1f}"


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30))


def synthetic_pair(bins: int, frames: int, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two log-magnitude-like spectrograms (bins, frames): log1p of |complex Gaussian| scaled by a slope."""
    rng = np.random.default_rng(seed)
    slope = 30.0 / np.arange(1, bins + 1)[:, None] ** 0.5
    make = lambda: np.log1p(np.abs(rng.standard_normal((bins, frames)) * slope)).astype(np.float32)  # noqa: E731
    return torch.as_tensor(make(), device=device), torch.as_tensor(make(), device=device)


def start_spectrogram(content: torch.Tensor) -> torch.Tensor:
    """The point the step tables evaluate at: the optimiser's usual start (noise around 0.5), seeded, like `content`."""
    noise = np.random.default_rng(1).standard_normal(tuple(content.shape)) * INIT_NOISE_STD
    return torch.as_tensor(noise + 0.5, dtype=torch.float32, device=content.device)


def paper_pair(config: TransferConfig) -> tuple[np.ndarray, np.ndarray, str]:
    """The paper's songs' (bins, config.frames) log-magnitudes where $MUSICSTYLE_PAPER_SONGS has them, else a
    synthetic pair."""
    from musicstyle.data.paper_songs import paper_songs_dir

    folder = paper_songs_dir()
    content, style = (folder / CONTENT_SONG, folder / STYLE_SONG) if folder else (Path("-"), Path("-"))
    if content.exists() and style.exists():
        from musicstyle.engine.transfer import load_pair

        pair = load_pair(content, style, config)
        return pair.content, pair.style, f"paper songs (imperial / usa, {pair.content.shape[1]} frames)"
    c, s = synthetic_pair(config.n_bins, config.frames or 430, torch.device("cpu"))
    return c.numpy(), s.numpy(), "synthetic spectrograms (paper songs absent)"
