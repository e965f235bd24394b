"""Memory over a long sweep: N smoke-size trials in one worker process, the resident set size after each.

    python benchmark/memory.py --trials 100 --out results/memory.md

Runs the sweep's own loop (`run_one`: ask, objective, tell, keep outputs) on configs/smoke.yaml in a
fresh study under a temporary folder, reads this process's RSS from /proc/self/statm after each
trial (after the loop's own gc), and writes the per-trial table (results/memory.csv) and a summary
(results/memory.md): the machine, the commit, the precision, the growth per trial after warm-up
(least-squares slope of RSS over trial number) and the RSS range. Goal: under 1 MB per trial.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from musicstyle.sweep.cli import build_parser, plan_from_args, prepare
from musicstyle.sweep.objective import PairCache
from musicstyle.sweep.workers import run_one
from musicstyle.util.io import write_csv, write_text
from musicstyle.util.machine import describe

REPO = Path(__file__).resolve().parents[1]

GOAL_MB_PER_TRIAL = 1.0


def rss_mb() -> float:
    """This process's resident set size in MiB (Linux /proc/self/statm)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10, help="trials left out of the growth fit")
    parser.add_argument("--config", default=str(REPO / "configs" / "smoke.yaml"))
    parser.add_argument("--out", default=str(REPO / "results" / "memory.md"))
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()  # the code measured (read before the run)
    folder = Path(tempfile.mkdtemp(prefix="musicstyle-memory-"))
    sweep_args = build_parser().parse_args(["--config", args.config, "--trials", str(args.trials), "--study",
                                            "memory", "--results", str(folder), "--workers", "1", "--quiet"])
    plan = plan_from_args(sweep_args)
    study = prepare(plan)
    study.set_user_attr("trials", plan.trials)
    cache = PairCache()
    rows = []
    start = time.perf_counter()
    while True:
        frozen = run_one(study, plan, cache)
        if frozen is None:
            break
        rows.append({"trial": frozen.number, "state": frozen.state.name, "rss_mb": rss_mb(),
                     "seconds": time.perf_counter() - start})
        print(f"trial {frozen.number} {frozen.state.name}: RSS {rows[-1]['rss_mb']:.1f} MiB", file=sys.stderr)
    frame = pd.DataFrame(rows)
    out = Path(args.out)
    write_csv(out.with_suffix(".csv"), frame)
    after = frame.iloc[args.warmup:]
    slope = float(np.polyfit(np.arange(len(after)), after["rss_mb"], 1)[0]) if len(after) >= 2 else float("nan")
    config = plan.settings.base_config()
    verdict = "meets" if slope < GOAL_MB_PER_TRIAL else "misses"
    text = "\n".join([
        "# Memory over a long sweep", "",
        f"Command: `python benchmark/memory.py --trials {args.trials} --warmup {args.warmup}` "
        f"(config {Path(args.config).name}, one worker process, the sweep's own `run_one` loop).", "",
        f"- Machine: {describe(config.device)}",
        f"- Code: commit {commit}; precision {config.precision}; {len(plan.pairs)} pairs; "
        f"states: {', '.join(f'{k} {v}' for k, v in frame['state'].value_counts().items())}",
        f"- Trials run: {len(frame)} in {frame['seconds'].iloc[-1]:.0f} s",
        f"- RSS after trial 1: {frame['rss_mb'].iloc[0]:.1f} MiB; after warm-up (trial {args.warmup}): "
        f"{after['rss_mb'].iloc[0]:.1f} MiB; last: {frame['rss_mb'].iloc[-1]:.1f} MiB; "
        f"max: {frame['rss_mb'].max():.1f} MiB",
        f"- **Growth after warm-up: {slope * 1024:.1f} KiB per trial** (least-squares slope over trials "
        f"{args.warmup + 1}-{len(frame)}); goal under {GOAL_MB_PER_TRIAL:g} MB per trial: {verdict} it", "",
        f"Per-trial RSS: {out.with_suffix('.csv').name}.", ""])
    write_text(out, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
