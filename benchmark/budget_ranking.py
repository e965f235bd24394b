"""Does the default sweep's shrunk budget rank settings as a larger budget does?

Takes the first N finished (not pruned) non-paper-row trials of a finished default sweep, re-runs
exactly their settings with a larger budget (longer clips, more iterations; same pairs, seed and
objective) in a study of its own, and writes the Spearman correlation of the two rankings, by the
truth score and by the fair quality score, with a scatter plot.

    python benchmark/budget_ranking.py --study sweep-200 --trials 24 \
        --set fixed.clip_seconds=4.0 --set fixed.iterations=120 --out results/sweep-200/ranking.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
from scipy.stats import spearmanr

from musicstyle.sweep.budget import resolve_sweep_precision
from musicstyle.sweep.cli import build_parser, plan_from_args, prepare
from musicstyle.sweep.storage import enqueue, open_study
from musicstyle.sweep.workers import run_workers
from musicstyle.util.io import save_figure, write_csv, write_text
from musicstyle.util.machine import code_version, describe

REPO = Path(__file__).resolve().parent.parent

COMPLETE = optuna.trial.TrialState.COMPLETE
MEASURED = ("truth_score", "quality_score")  # the trial-level means the ranking is read on, besides the objective


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """COMPLETE trials that are not the paper's rows, in trial order."""
    return [t for t in study.get_trials(deepcopy=False) if t.state == COMPLETE and "paper_row" not in t.user_attrs]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="sweep-200", help="the finished default sweep (results/<study>/)")
    parser.add_argument("--trials", type=int, default=24, help="how many of its trials to re-run (>= 20)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="the larger budget")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--out", default=None, help="results file (default results/<study>/ranking.md)")
    args = parser.parse_args()
    source_plan = plan_from_args(build_parser().parse_args(["--study", args.study]))
    chosen = finished(open_study(source_plan, create=False))[:args.trials]
    if len(chosen) < args.trials:
        raise SystemExit(f"{args.study} has {len(chosen)} finished non-paper-row trials, fewer than {args.trials}")
    name = f"{args.study}-ranking"
    sweep_args = ["--study", name, "--trials", str(args.trials), "--set", "study.paper_rows=false",
                  "--set", "study.prune=false", *sum((["--set", o] for o in args.overrides), []), "--quiet"]
    if args.workers:
        sweep_args += ["--workers", str(args.workers)]
    plan = plan_from_args(build_parser().parse_args(sweep_args))
    resolve_sweep_precision(plan.settings)  # as the sweep does: the study records what runs
    study = prepare(plan)
    if not study.get_trials(deepcopy=False):
        for trial in chosen:
            enqueue(study, dict(trial.params), {"ranking_of": trial.number})
    start = time.perf_counter()
    run_workers(plan)
    wall = time.perf_counter() - start
    large = {t.user_attrs["ranking_of"]: t for t in finished(open_study(plan, create=False))}
    rows = [{"trial": t.number, **t.params, "objective_default": t.value, "objective_larger": large[t.number].value,
             **{f"{m}_default": t.user_attrs.get(m) for m in MEASURED},
             **{f"{m}_larger": large[t.number].user_attrs.get(m) for m in MEASURED}}
            for t in chosen if t.number in large]
    joined = pd.DataFrame(rows)
    out = Path(args.out or REPO / "results" / args.study / "ranking.md")
    write_csv(out.with_suffix(".csv"), joined)
    rhos = {"objective": spearmanr(joined["objective_default"], joined["objective_larger"]).statistic}
    for m in MEASURED:
        rhos[m] = spearmanr(joined[f"{m}_default"], joined[f"{m}_larger"]).statistic
    best_default = joined.loc[joined["objective_default"].idxmin()]
    rank_there = int(joined["objective_larger"].rank().loc[joined["objective_default"].idxmin()])
    lines = [f"# Does the default budget rank settings as a larger one does? ({len(joined)} trials)", "",
             f"Command: `python benchmark/budget_ranking.py {' '.join(sys.argv[1:])}`; code {code_version()}; "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.", "", f"Machine: {describe()}.", "",
             f"The first {len(joined)} finished non-paper-row trials of `{args.study}` (the default config's "
             f"budget), re-run with `{' '.join(args.overrides)}` in the study `{name}` (no pruning; the same pairs, "
             f"seeds and objective `{source_plan.objective}`); the re-runs took {wall / 60:.1f} min of wall time "
             f"on {plan.workers} worker(s).", "",
             "| ranking by | Spearman rho, default budget vs larger |", "|---|---|",
             f"| the sweep's objective ({source_plan.objective}) | {rhos['objective']:+.3f} |",
             *[f"| {m} | {rhos[m]:+.3f} |" for m in MEASURED], "",
             f"The default budget's best of these trials (#{int(best_default['trial'])}) ranks {rank_there} of "
             f"{len(joined)} at the larger budget.", "",
             f"Per trial: [{out.with_suffix('.csv').name}]({out.with_suffix('.csv').name}); "
             f"plot: [{out.with_suffix('.png').name}]({out.with_suffix('.png').name}).", ""]
    write_text(out, "\n".join(lines))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.scatter(joined["objective_default"], joined["objective_larger"],
               label=f"{len(joined)} trials, Spearman rho {rhos['objective']:+.2f}")
    ax.set_xlabel(f"{source_plan.objective} score at the default budget (lower is better)")
    ax.set_ylabel(f"{source_plan.objective} score at {', '.join(args.overrides) or 'the larger budget'}")
    ax.set_title("Trial ranking: default budget against a larger one")
    ax.legend()
    save_figure(fig, out.with_suffix(".png"))
    print(out.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
