"""Does the sweep's screen rank settings as the full fidelity does, where it matters (among the best)?

Draws N settings spanning the config's search space (Optuna's QMC sampler, seeded), runs each on the first
P pairs at the screen (the config's `fixed` section, seed study.seed) and at full fidelity (its `confirm`
section: `confirm.fixed` over `fixed`, each setting with its own filter count, `confirm.seeds` seeds), and
writes the Spearman rho of the two rankings by the sweep's objective: over all settings and among the full
fidelity's best 10, with the beta/alpha trend alone as a reference line, and whether the full fidelity's
best 3 are in the screen's best 10 (the bar docs/sweep.md sets for a screen). Runs go to runs.csv after
every run (musicstyle.campaign: resumable; --minutes stops cleanly).

    python benchmark/fidelity_check.py --trials 24 --pairs 3 --workers 2 --out results/fidelity-check
    python benchmark/fidelity_check.py ... --screen filters=inf       # another screen, the same full runs
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from musicstyle import campaign
from musicstyle.cli import run_cli
from musicstyle.measures import objective_measures
from musicstyle.sweep.budget import resolve_sweep_precision
from musicstyle.sweep.cli import build_parser, plan_from_args
from musicstyle.sweep.confirm import run_one, start_worker
from musicstyle.sweep.fidelity import KEEP, MIN_SETTINGS, TOP, agreement, plan_runs, rankings, screen_name
from musicstyle.util.io import write_text
from musicstyle.util.machine import code_version, describe


def report(out: Path, rows: pd.DataFrame, measure: str, name: str, screen: dict, full: dict, plan: Any,
           wall: float, planned: int) -> str:
    """fidelity.md (or fidelity-<screen>.md for a screen with overrides) from the runs; its text."""
    rows = rows[rows["fidelity"].isin([name, "full"])]
    table = rankings(rows, measure, name)
    if len(table) < 2:
        return f"{len(table)} setting(s) finished at both fidelities: rerun the same command to resume"
    a = agreement(table)
    seconds = rows[rows["state"] == "ok"].groupby("fidelity")["seconds"].median()
    precision = ", ".join(sorted(rows["precision"].dropna().astype(str).unique())) if "precision" in rows else "?"
    verdict = (f"**The screen keeps {a['kept']} of the full fidelity's best {KEEP} in its best {TOP}: it "
               + ("passes" if a["passes"] else "does not pass") + " the bar.**"
               + (f" ({a['settings']} settings: the bar needs at least {MIN_SETTINGS}.)"
                  if a["settings"] < MIN_SETTINGS else ""))
    lines = [
        f"# Fidelity check: the screen against full fidelity ({a['settings']} settings)", "",
        *([f"**Incomplete: {a['settings']} of {planned} settings have finished at both fidelities**; the same "
           "command resumes. The figures below are on those alone.", ""] if a["settings"] < planned else []),
        f"Command: `python benchmark/fidelity_check.py {' '.join(sys.argv[1:])}`; code {code_version()}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; this invocation {wall / 60:.1f} min.", "",
        f"Machine: {describe()}. Precision used: {precision}.", "",
        f"Settings drawn by Optuna's QMC sampler (seed {plan.seed}) over the search space of "
        f"`{plan.settings.source}`; each run on the first {len(plan.pairs)} pairs. Screen: "
        + ", ".join(f"{k}={v}" for k, v in screen.items()) + f" (seed {plan.seed}). Full fidelity: "
        + ", ".join(f"{k}={v}" for k, v in full.items())
        + f", each setting's own filter count, {plan.settings.confirm['seeds']} seed(s). Ranked by mean "
        f"`{measure}` (lower is better). Median seconds per run: "
        + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()) + ".", "", verdict, "",
        "| ranking | Spearman rho against full fidelity, all settings | among full fidelity's best 10 |",
        "|---|---|---|",
        f"| the screen | {a['rho']:+.3f} | {a['rho best']:+.3f} |",
        f"| log10(beta / alpha) alone (reference) | {a['trend rho']:+.3f} | {a['trend rho best']:+.3f} |", "",
        "Per setting (best at full fidelity first):", "",
        table.reset_index().astype({"trial": str}).to_markdown(index=False, floatfmt=".3f"), ""]
    slug = "".join(c if c.isalnum() else "-" for c in name[len("screen"):]).strip("-")
    write_text(out / (f"fidelity-{slug}.md" if slug else "fidelity.md"), "\n".join(lines))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/default.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config overrides (the screen)")
    parser.add_argument("--screen", action="append", default=[], metavar="KEY=VALUE",
                        help="a run setting for the screen runs only, over the config's fixed ones (repeat); "
                             "full-fidelity runs in the same --out are shared between screens")
    parser.add_argument("--trials", type=int, default=24, help="settings drawn (>= 24 for the bar)")
    parser.add_argument("--pairs", type=int, default=3, help="the first P pairs of the config's corpus")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--minutes", type=float, default=None, help="stop cleanly after this long; resume later")
    parser.add_argument("--out", default="results/fidelity-check")
    parser.add_argument("--report-only", action="store_true", help="write the report from runs.csv, running nothing")
    args = parser.parse_args()
    out = Path(args.out)
    sweep_args = ["--config", args.config, "--study", out.name, "--results", str(out.parent),
                  "--quiet", "--workers", str(args.workers), *sum((["--set", o] for o in args.overrides), [])]
    plan = plan_from_args(build_parser().parse_args(sweep_args))
    resolve_sweep_precision(plan.settings)
    plan.pairs = plan.pairs[: args.pairs]
    measure = objective_measures(plan.objective)[0]
    overrides = {}
    for item in args.screen:
        key, _, value = item.partition("=")
        overrides[key.strip()] = yaml.safe_load(value)
    base = plan.settings.base_config().replace(**overrides).to_dict()  # checked before any run
    screen = {k: base[k] for k in [*plan.settings.confirm["fixed"], *overrides]}
    runs = plan_runs(plan.settings, plan.pairs, args.trials, plan.seed, overrides)
    start = time.perf_counter()
    if args.report_only:
        rows = pd.DataFrame(campaign.finished_records(out / "runs.csv"))
    else:
        rows = campaign.run_all(runs, run_one, out / "runs.csv", args.workers, args.minutes,
                                initializer=start_worker, initargs=(plan.settings, plan.pairs),
                                label=lambda r: f"{r['state']} {measure} {r.get(measure, float('nan'))}",
                                kind=lambda r: f"{r['fidelity']} {r.get('filters')} filters")
    name = screen_name(overrides)
    print(report(out, rows, measure, name, screen, plan.settings.confirm["fixed"], plan, time.perf_counter() - start,
                 args.trials))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))  # a bad config or option: one line, exit 2
