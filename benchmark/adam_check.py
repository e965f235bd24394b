"""Does Adam converge on these problems? Adam against L-BFGS at the same iteration count.

    python benchmark/adam_check.py                       # writes results/adam-check.md
    python benchmark/adam_check.py --pairs 1 --lrs 0.1   # smaller

On the first built-in pairs at the sweep's fixed sizes (configs/default.yaml: clip, iterations,
Griffin-Lim, precision resolved as the sweep does), for two weightings (the base paper's alpha 1e-2,
beta 1 and a style-heavy alpha 1e-3, beta 10), one L-BFGS run and Adam runs over learning rates
and schedules with as many steps as L-BFGS has iterations. It records each run's final total loss,
its ratio to L-BFGS's on the same problem, the fair quality score, the loss evaluations and seconds
(an L-BFGS iteration may take more than one evaluation; an Adam step takes one).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from musicstyle.data.corpus import resolve_pairs
from musicstyle.engine.network import resolve_precision
from musicstyle.engine.transfer import load_pair, resolve_device, run_transfer
from musicstyle.sweep.config import load_settings
from musicstyle.util.io import write_text
from musicstyle.util.machine import describe, limit_threads

REPO = Path(__file__).resolve().parents[1]

WEIGHTS = ((1e-2, 1.0), (1e-3, 10.0))  # (alpha, beta): the base paper's, and a style-heavy one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "default.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--filters", type=int, default=2048)
    parser.add_argument("--lrs", default="0.03,0.1,0.3,1.0")
    parser.add_argument("--schedules", default="constant,cosine")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--out", default=str(REPO / "results" / "adam-check.md"))
    args = parser.parse_args()
    limit_threads(args.threads or 0) if args.threads else None
    settings = load_settings(args.config, args.overrides)
    base = settings.base_config()
    precision, why = resolve_precision(base.precision, resolve_device(base.device))
    base = base.replace(precision=precision, filters=args.filters)
    pairs = resolve_pairs(settings, None, None, None, None)[: args.pairs]
    rows = []
    for pair in pairs:
        config0 = base.replace(offset_seconds=pair.offset_seconds or base.offset_seconds,
                               clip_seconds=pair.clip_seconds or base.clip_seconds)
        spectrograms = load_pair(pair.content, pair.style, config0)
        for alpha, beta in WEIGHTS:
            runs = [("lbfgs", "-", None)] + [("adam", s, float(lr)) for s in args.schedules.split(",")
                                              for lr in args.lrs.split(",")]
            reference = None
            for optimizer, schedule, lr in runs:
                changes = {"alpha": alpha, "beta": beta, "optimizer": optimizer}
                if lr is not None:
                    changes |= {"lr": lr, "lr_schedule": schedule}
                config = config0.replace(**changes)
                start = time.perf_counter()
                try:
                    result = run_transfer(spectrograms, config)
                    loss, quality = result.optimization.final_loss, result.measures.quality_score
                    evaluations = result.optimization.evaluations
                except Exception as err:  # a diverged Adam run is a row, not a stop
                    loss, quality, evaluations = float("nan"), float("nan"), 0
                    print(f"{pair.name} {optimizer} {lr}: {type(err).__name__}: {err}", file=sys.stderr)
                seconds = time.perf_counter() - start
                reference = loss if optimizer == "lbfgs" else reference
                rows.append({"pair": pair.name, "alpha": alpha, "beta": beta, "optimizer": optimizer,
                             "schedule": schedule, "lr": lr, "loss": loss, "ratio": loss / reference,
                             "quality": quality, "evaluations": evaluations, "seconds": seconds})
                print(rows[-1], file=sys.stderr, flush=True)
    write_text(Path(args.out), report(rows, base, precision, why, args))


def report(rows: list[dict], base, precision: str, why: str, args: argparse.Namespace) -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=REPO).stdout.strip()
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else ["?"]
    cases = len({(r["pair"], r["alpha"]) for r in rows})
    lines = ["# Adam against L-BFGS at the same iteration count", "",
             f"Command: `python benchmark/adam_check.py {' '.join(sys.argv[1:])}`".rstrip() + "; code at commit "
             f"{commit}.", f"Machine: {describe()}; load average at the end {' '.join(load)} (shared machine).",
             f"Precision used: {precision} ({why}).",
             f"Sizes (the sweep's fixed settings): clip {base.clip_seconds} s, {base.iterations} iterations (L-BFGS "
             f"iterations = Adam steps), Griffin-Lim {base.griffin_lim_iters}, {base.filters} filters, "
             f"{base.activation}; {cases} problems (pair x weights).", "",
             "ratio = Adam's final total loss / L-BFGS's on the same problem (1 = as low; lower is better).", "",
             "## Per learning rate and schedule (median ratio over the problems, worst ratio, median quality)", "",
             "| schedule | lr | median ratio | worst ratio | median quality | median evaluations | median s |",
             "|---|---|---|---|---|---|---|"]
    lbfgs = [r for r in rows if r["optimizer"] == "lbfgs"]
    lines.append(f"| L-BFGS | - | 1 | 1 | {statistics.median(r['quality'] for r in lbfgs):.4f} | "
                 f"{statistics.median(r['evaluations'] for r in lbfgs):.0f} | "
                 f"{statistics.median(r['seconds'] for r in lbfgs):.1f} |")
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["optimizer"] == "adam":
            groups.setdefault((r["schedule"], r["lr"]), []).append(r)
    best = None
    for (schedule, lr), group in groups.items():
        ratios = [r["ratio"] for r in group]
        finite = [x for x in ratios if x == x]
        med = statistics.median(finite) if finite else float("nan")
        worst = max(finite) if len(finite) == len(ratios) else float("inf")
        if best is None or worst < best[2]:
            best = (schedule, lr, worst, med)
        lines.append(f"| {schedule} | {lr:g} | {med:.3g} | {worst:.3g} | "
                     f"{statistics.median(r['quality'] for r in group):.4f} | "
                     f"{statistics.median(r['evaluations'] for r in group):.0f} | "
                     f"{statistics.median(r['seconds'] for r in group):.1f} |")
    if best is not None:
        lines += ["", f"Best Adam setting by its worst case: {best[0]} schedule, lr {best[1]:g}: worst ratio "
                  f"{best[2]:.3g}, median {best[3]:.3g}; within a factor 2 of L-BFGS on every problem: "
                  f"{'yes' if best[2] <= 2 else 'no'}."]
    lines += ["", "## Every run", "", "| pair | alpha | beta | optimizer | schedule | lr | final loss | ratio | "
              "quality | evaluations | s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lr = "-" if r["lr"] is None else f"{r['lr']:g}"
        lines.append(f"| {r['pair']} | {r['alpha']:g} | {r['beta']:g} | {r['optimizer']} | {r['schedule']} | {lr} | "
                     f"{r['loss']:.4g} | {r['ratio']:.3g} | {r['quality']:.4f} | {r['evaluations']} | "
                     f"{r['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
