"""The sweep's start-up projection for several budgets, without running a trial.

    python benchmark/budget_projection.py --label native --out results/budget.md
    ATEN_CPU_CAPABILITY=avx2 DNNL_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
        python benchmark/budget_projection.py --label "AVX2 emulation" --out results/budget.md

Each variant is the default config with some `--set` overrides; for each it resolves the precision
and times the steps exactly as `python sweep.py` does at its start (`musicstyle/sweep/budget.py`),
with the default worker count (one thread each), and projects 200 trials. The results file gets
one section per run (label, command, machine, load, commit), appended, so that a native run and an
emulated one sit side by side.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from musicstyle.data.corpus import resolve_pairs
from musicstyle.sweep.budget import measure, resolve_sweep_precision
from musicstyle.sweep.config import load_settings
from musicstyle.sweep.plan import SweepPlan
from musicstyle.sweep.workers import default_workers
from musicstyle.util.machine import describe
from musicstyle.util.progress import format_duration

REPO = Path(__file__).resolve().parents[1]

VARIANTS = {  # name -> --set overrides on the config
    "config as committed": [],
    "4 s clips, 120 iterations, 5 pairs": ["fixed.clip_seconds=4.0", "fixed.iterations=120"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "default.yaml"))
    parser.add_argument("--label", required=True, help="what this run is (native, AVX2 emulation, ...)")
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=1, help="repeat each variant, report the median")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=KEY=VALUE;KEY=VALUE",
                        help="extra variants (default: the config as committed and the old 4 s x 120 budget)")
    parser.add_argument("--out", default=None, help="append a section to this markdown file")
    args = parser.parse_args()
    variants = dict(VARIANTS)
    for text in args.variant:
        name, _, sets = text.partition("=")
        variants[name] = [s for s in sets.split(";") if s]
    workers = default_workers()
    rows = []
    for name, overrides in variants.items():
        results = []
        for _ in range(args.rounds):
            settings = load_settings(args.config, overrides)
            precision, why = resolve_sweep_precision(settings)
            pairs = resolve_pairs(settings)
            plan = SweepPlan(settings, pairs, "projection", Path("/tmp"), None, args.trials, workers)
            results.append(measure(plan, precision, why, args.trials))
        results.sort(key=lambda p: p.wall_seconds)
        projection = results[len(results) // 2]
        print(projection.line(), file=sys.stderr, flush=True)
        rows.append((name, overrides, projection, [p.wall_seconds for p in results]))
    if args.out:
        write(Path(args.out), args, rows)


def write(path: Path, args: argparse.Namespace, rows: list) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    env = " ".join(f"{k}={os.environ[k]}" for k in ("ATEN_CPU_CAPABILITY", "DNNL_MAX_CPU_ISA",
                                                    "MKL_ENABLE_INSTRUCTIONS") if k in os.environ)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    lines = [f"## {args.label}", "",
             f"Command: `{env + ' ' if env else ''}python benchmark/budget_projection.py "
             f"{' '.join(sys.argv[1:])}`; commit {commit}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
             f"Machine: {describe()}; load average {load} (a shared machine: other processes ran beside this).",
             f"Medians of {args.rounds} round(s) per variant; each projects {args.trials} trials on the default "
             "worker count, one torch thread per worker, before pruning.", "",
             "| variant | --set | precision | frames | iterations | s/evaluation (largest filters) | set-up s | "
             "Griffin-Lim s | measures s | s per trial by filters | projected wall | rounds' walls |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, overrides, p, walls in rows:
        per = ", ".join(f"{f}: {s:.0f}" for f, s in sorted(p.seconds_per_trial.items()))
        lines.append(f"| {name} | {' '.join(overrides) or '-'} | {p.precision} | {p.frames} | "
                     f"{p.iterations} | {p.parts['seconds_per_evaluation']:.3f} | {p.parts['setup_seconds']:.2f} | "
                     f"{p.parts['griffin_lim_seconds']:.2f} | {p.parts['measures_seconds']:.2f} | {per} | "
                     f"{format_duration(p.wall_seconds)} | {', '.join(format_duration(w) for w in walls)} |")
    lines += ["", "The sweep's start-up line for each variant:", ""]
    lines += [f"- {name}: `{p.line()}`" for name, _, p, _ in rows]
    text = path.read_text() if path.exists() else (
        "# The default sweep's projected time, native and under AVX2 emulation\n\n"
        "Written by `benchmark/budget_projection.py` (the projection `python sweep.py` prints at its start).\n")
    path.write_text(text.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
