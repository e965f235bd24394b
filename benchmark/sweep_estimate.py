"""What a finished sweep would have cost on another CPU: its own trials, re-costed on this one.

Times the default sweep's per-trial cost at each filter count exactly as `python sweep.py` does at
its start (`musicstyle/sweep/budget.py`), under this process's CPU settings, then re-costs every
trial of the finished study with its own filter count, optimiser and the pairs it ran before it was
pruned. Run natively, the estimate can be checked against the sweep's real wall time; run under
AVX2 emulation, it says what the same trials would take on a CPU without AVX-512 and bf16:

    python benchmark/sweep_estimate.py --study sweep-200 --label native
    ATEN_CPU_CAPABILITY=avx2 DNNL_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
        python benchmark/sweep_estimate.py --study sweep-200 --label "AVX2 emulation"

Each run appends one section to results/<study>/cost-estimate.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from musicstyle.sweep.budget import EVALUATIONS_PER_ITERATION, measure, resolve_sweep_precision
from musicstyle.sweep.cli import build_parser, plan_from_args
from musicstyle.sweep.storage import open_study
from musicstyle.sweep.trials import is_counted
from musicstyle.util.io import write_text
from musicstyle.util.machine import code_version, describe
from musicstyle.util.progress import format_duration

REPO = Path(__file__).resolve().parents[1]

EMULATION = ("ATEN_CPU_CAPABILITY", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="sweep-200")
    parser.add_argument("--label", required=True, help="native, AVX2 emulation, ...")
    parser.add_argument("--wall-minutes", type=float, help="the sweep's real wall time, to check the estimate")
    args = parser.parse_args()
    plan = plan_from_args(build_parser().parse_args(["--study", args.study]))
    study = open_study(plan, create=False)
    trials = [t for t in study.get_trials(deepcopy=False) if is_counted(t)]
    precision, why = resolve_sweep_precision(plan.settings)
    projection = measure(plan, precision, why, len(trials))
    pairs = len(plan.pairs)
    total = 0.0
    for t in trials:
        if "repeat_of" in t.user_attrs:  # a repeat of an earlier trial's parameters copies its figures: no run
            continue
        filters = int(t.params.get("filters", plan.settings.base_config().filters))
        done = int(t.user_attrs.get("pairs_done", pairs))
        adam = t.params.get("optimizer") == "adam"  # one evaluation a step, not L-BFGS's ~1.25
        total += projection.seconds_per_trial[filters] * done / pairs / (EVALUATIONS_PER_ITERATION if adam else 1)
    wall = total / projection.workers
    states = {}
    for t in trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    out = plan.results_dir / "cost-estimate.md"
    lines = [] if out.exists() else [f"# `{args.study}` re-costed: its own trials at this CPU's measured speed", ""]
    check = (f" The sweep's real wall time was {args.wall_minutes:.1f} min: estimate / real = "
             f"{wall / 60 / args.wall_minutes:.2f}." if args.wall_minutes else "")
    emulated = " ".join(f"{k}={os.environ[k]}" for k in EMULATION if os.environ.get(k))
    command = (emulated + " " if emulated else "") + "python benchmark/sweep_estimate.py " + " ".join(sys.argv[1:])
    lines += [f"## {args.label}", "",
              f"Command: `{command}`; code {code_version()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "",
              f"Machine: {describe()}; load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}.", "",
              f"Start-up line here: `{projection.line()}`", "",
              f"The study's {len(trials)} counted trials ({', '.join(f'{n} {s.lower()}' for s, n in states.items())}), "
              f"each at its own filter count, optimiser and pairs run: {total / 60:.1f} min of trial time, "
              f"**{format_duration(wall)} of wall time on {projection.workers} worker(s)** "
              f"(before: the projection for 200 unpruned trials, {format_duration(projection.wall_seconds)}).{check}",
              ""]
    write_text(out, (out.read_text() if out.exists() else "") + "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
