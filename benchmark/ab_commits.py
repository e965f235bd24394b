"""The step at two commits, side by side in one run: did a change (a move, a refactor) slow the hot path?

    python benchmark/ab_commits.py --before 79f5e54 --after HEAD --rounds 5 --out results/layout-ab.md

Each commit is checked out into a temporary git worktree; every round runs bench_step.py's one-case
mode (`--case method,frames,filters`: a fresh process, a warm-up, then the median of its timed steps)
in the 'before' tree and then in the 'after' tree, swapping the order every other round, for the
project's fp32 step and (where bf16 is fast here) its bf16 step, at 430 frames and 4096 filters. It
prints and writes the median over rounds per commit and the after/before ratio with its quartiles.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from musicstyle.engine.network import resolve_precision
from musicstyle.util.io import write_text
from musicstyle.util.machine import describe

REPO = Path(__file__).resolve().parents[1]


def step_ms(tree: Path, method: str, frames: int, filters: int, steps: int) -> float:
    """One fresh process in `tree`: bench_step.py --case; its median step in milliseconds."""
    out = subprocess.run([sys.executable, "benchmark/bench_step.py", "--case", f"{method},{frames},{filters}",
                          "--rounds", str(steps), "--threads", "2"], cwd=tree, capture_output=True, text=True,
                         check=True, env={k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
                         | {"PYTHONPATH": str(tree)})
    return float(json.loads(out.stdout.strip().splitlines()[-1])["ms"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True)
    parser.add_argument("--after", default="HEAD")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per process (bench_step's --rounds)")
    parser.add_argument("--frames", type=int, default=430)
    parser.add_argument("--filters", type=int, default=4096)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    methods = ["fp32"] + (["bf16"] if resolve_precision("auto", "cpu")[0] == "bf16" else [])
    revs = {name: subprocess.run(["git", "rev-parse", "--short", rev], cwd=REPO, capture_output=True, text=True,
                                 check=True).stdout.strip() for name, rev in (("before", args.before),
                                                                              ("after", args.after))}
    times: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        trees = {}
        for name, rev in revs.items():
            trees[name] = Path(tmp) / name
            subprocess.run(["git", "worktree", "add", "--detach", str(trees[name]), rev], cwd=REPO,
                           capture_output=True, check=True)
        try:
            for r in range(args.rounds):
                order = ["before", "after"] if r % 2 == 0 else ["after", "before"]
                for method in methods:
                    for name in order:
                        ms = step_ms(trees[name], method, args.frames, args.filters, args.steps)
                        times.setdefault((method, name), []).append(ms)
                        print(f"round {r + 1}/{args.rounds} {method} {name} ({revs[name]}): {ms:.1f} ms",
                              file=sys.stderr, flush=True)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, capture_output=True)
    lines = ["# The step before and after a change, side by side", "",
             f"Command: `python benchmark/ab_commits.py --before {args.before} --after {args.after} --rounds "
             f"{args.rounds} --steps {args.steps}`; before = {revs['before']}, after = {revs['after']}. Machine: "
             f"{describe()}; {args.frames} frames, {args.filters} filters. Each cell: the median "
             "over rounds of one fresh process's median step (bench_step.py --case); the order of the two commits "
             "swaps every round. Ratio: after / before per round, median [quartiles].", "",
             "| step | before (ms) | after (ms) | ratio after/before |", "|---|---|---|---|"]
    for method in methods:
        before, after = np.array(times[(method, "before")]), np.array(times[(method, "after")])
        ratio = after / before
        q1, q3 = np.percentile(ratio, [25, 75])
        lines.append(f"| project {method} | {np.median(before):.1f} | {np.median(after):.1f} | "
                     f"{np.median(ratio):.3f} [{q1:.3f}-{q3:.3f}] |")
    lines += ["", "Every round (ms, before / after):", ""]
    for method in methods:
        pairs = zip(times[(method, "before")], times[(method, "after")])
        lines.append(f"- {method}: " + ", ".join(f"{b:.0f} / {a:.0f}" for b, a in pairs))
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
