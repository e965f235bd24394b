"""The bf16 step with and without engine/fast/fused.py's compiled passes, alternated: what they are worth.

    python benchmark/ab_fused.py             # about 6 minutes on 2 CPU cores; writes results/fused-ab.md
    python benchmark/ab_fused.py --runs 0    # the steps only, about a minute

bench_step.py times the bf16 rows round-robin among themselves, with other rows in between; until it
grouped them by precision, the few milliseconds at stake got lost there between much larger float32
steps (this machine's L3 cache is shared). Here the two versions alternate back to back
(the order swapped every round) on the same inputs: steps at the base shapes and at the sweep's
173-frame clips, and whole L-BFGS runs on the paper's songs (synthetic spectrograms where
$MUSICSTYLE_PAPER_SONGS lacks them), per evaluation with scipy's own work. Reported: medians, and the median and
quartiles of the paired differences.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from bench_step import REPO, anchored, floor_products, make_config, project_step, without_fused_passes
from common import machine, paper_pair, start_spectrogram, synthetic_pair, table

from musicstyle.engine.optimize import (
    Problem,
    build_problem,
    clear_problem_cache,
    keep_freed_memory,
    optimize_spectrogram,
)
from musicstyle.util.io import write_text


def alternate(fused: Callable[[], float], autograd: Callable[[], float], pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """Seconds (or any measure) of each, `pairs` times, the order swapped every pair; one warm-up each."""
    fused(), autograd()
    a, b = [], []
    for i in range(pairs):
        for fn, out in ((fused, a), (autograd, b)) if i % 2 == 0 else ((autograd, b), (fused, a)):
            out.append(fn())
    return np.array(a), np.array(b)


def timed(fn: Callable[[], object]) -> Callable[[], float]:
    def run() -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    return run


def row(name: str, fused_ms: np.ndarray, autograd_ms: np.ndarray, extra: str = "-") -> list[str]:
    diff = autograd_ms - fused_ms
    return [name, str(len(diff)), f"{np.median(fused_ms):.1f}", f"{np.median(autograd_ms):.1f}",
            f"{np.median(diff):+.2f} ({np.percentile(diff, 25):+.2f} .. {np.percentile(diff, 75):+.2f})",
            f"{np.mean(diff > 0) * 100:.0f} %", extra]


def bf16_step(device: torch.device, frames: int) -> tuple[Problem, torch.Tensor, Callable[[], float]]:
    """(problem, spectrogram, timed step): a bf16 step at (1025 bins x frames, 4096 filters) through an anchor."""
    config = make_config({"device": device.type, "precision": "bf16"})
    content, style = synthetic_pair(config.n_bins, frames, device)
    spec = start_spectrogram(content)
    problem = anchored(build_problem(content, style, config), spec)
    return problem, spec, timed(lambda: project_step(problem)(spec))


def step_row(device: torch.device, frames: int, pairs: int) -> list[str]:
    """One step at (1025 bins x frames, 4096 filters), compiled passes against autograd, and the floor."""
    problem, spec, step = bf16_step(device, frames)
    fused, autograd = alternate(step, without_fused_passes(step), pairs)
    floor = timed(floor_products(problem.filters, spec, torch.bfloat16, matrices=problem.matrices))
    floor_ms = np.median([floor() for _ in range(max(pairs // 4, 5))]) * 1e3
    return row(f"one step, {frames} frames x 4096 filters", fused * 1e3, autograd * 1e3,
               f"{floor_ms:.1f} ms: {np.median(fused) * 1e3 / floor_ms:.2f}x / "
               f"{np.median(autograd) * 1e3 / floor_ms:.2f}x")


def run_row(device: torch.device, frames: int, runs: int, iterations: int) -> list[str]:
    """Whole bf16 L-BFGS runs (problem built inside, as a sweep's trial does), ms per evaluation."""
    config = make_config({"device": device.type, "precision": "bf16", "iterations": iterations, "frames": frames})
    content, style, source = paper_pair(config)

    def per_evaluation() -> float:
        clear_problem_cache()
        result = optimize_spectrogram(content, style, config, device=device)
        return result.optimize_seconds / result.evaluations

    optimize_spectrogram(content, style, config.replace(iterations=2), device=device)  # compile first
    fused, autograd = alternate(per_evaluation, without_fused_passes(per_evaluation), runs)
    return row(f"L-BFGS run, {iterations} iterations, per evaluation: {source}", fused * 1e3, autograd * 1e3)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=60, help="alternated pairs of steps per shape")
    parser.add_argument("--runs", type=int, default=4, help="alternated pairs of whole runs per shape (0: none)")
    parser.add_argument("--iterations", type=int, default=100, help="L-BFGS iterations of each run")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: one per core)")
    parser.add_argument("--out", default=str(REPO / "results" / "fused-ab.md"), help="markdown report ('' for none)")
    args = parser.parse_args(argv)
    device = torch.device("cpu")
    keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    command = "python benchmark/ab_fused.py " + " ".join(sys.argv[1:] if argv is None else argv)
    rows = []
    for frames in (430, 173):
        rows.append(step_row(device, frames, args.pairs))
        print("  ", rows[-1], flush=True)
    for frames in (430, 173) if args.runs else ():
        rows.append(run_row(device, frames, args.runs, args.iterations))
        print("  ", rows[-1], flush=True)
    report = (f"# bf16 step: compiled passes (engine/fast/fused.py) against autograd, alternated\n\n"
              f"Command: `{command.strip()}`"
              f"\n\nMachine: {machine(device)}; date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Steps on "
              "synthetic spectrograms through an anchor near them; runs on the paper's songs where "
              "$MUSICSTYLE_PAPER_SONGS has them, the problem built inside each run as in a sweep's trial. Times in ms; "
              "difference = autograd - compiled (positive: the compiled passes are faster), median and quartiles "
              "over the pairs.\n\n"
              + table(["case", "pairs", "compiled ms", "autograd ms", "difference ms (quartiles)",
                       "compiled faster in", "bf16 floor: compiled / autograd x floor"], rows))
    print(report)
    if args.out:
        write_text(Path(args.out), report)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
