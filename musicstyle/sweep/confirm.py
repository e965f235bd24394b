"""Confirmation at full fidelity: the screen's best trials run again at the budget people use the method at.

The trials of a sweep are a screen (short clips, few iterations, Griffin-Lim at a few dozen iterations);
a setting is worth reporting only if it is still best at full fidelity. After the trials, the sweep's
`confirm` section (sweep/config.py) re-runs the best distinct settings (the `promote` share of the study's
trials, at least one) on every pair with
`seeds` seeds (study.seed, +1, ...) at its `fixed` settings over the sweep's (by default 430 frames,
300 L-BFGS iterations, Griffin-Lim 500), each with the trial's own filter count. Rows go to
`confirm.csv` after every run (musicstyle.campaign: resumable, in the sweep's worker count), and the
report opens with the ranking by the full-fidelity score (`confirm_markdown`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd

from .. import campaign
from ..data.corpus import SongPair
from ..measures import objective_measures
from .config import SweepSettings, promoted
from .objective import PairCache, run_pair
from .plan import SweepPlan
from .trials import top_trials

CSV = "confirm.csv"
_WORKER: dict[str, Any] = {}  # per process: the settings, pairs by name and the pair cache


def plan_confirmation(study: optuna.Study, plan: SweepPlan) -> list[dict[str, Any]]:
    """One run per (confirmed trial, seed, pair), best trial first; empty when the confirmation is off."""
    confirm = plan.settings.confirm
    count = promoted(confirm, plan.trials)
    runs = []
    seen: list[dict[str, Any]] = []
    for trial in top_trials(study, len(study.trials)):
        if len(seen) == count:
            break
        if dict(trial.params) in seen:
            continue
        seen.append(dict(trial.params))
        for offset in range(confirm["seeds"]):
            for pair in plan.pairs:
                seed = plan.seed + offset
                runs.append({"run_id": f"trial{trial.number}|seed{seed}|{pair.name}", "trial": trial.number,
                             "rank_in_screen": len(seen), "screen_value": sum(trial.values), "seed": seed,
                             "pair": pair.name, **dict(trial.params)})
    return runs


def start_worker(settings: SweepSettings, pairs: list[SongPair]) -> None:
    _WORKER.update(settings=settings, pairs={p.name: p for p in pairs}, cache=PairCache())


def run_one(run: dict[str, Any]) -> dict[str, Any]:
    """One (trial, seed, pair) at full fidelity, or, for a run whose "fidelity" is not "full", at the sweep's
    fixed settings with the run's "overrides" (a screen: musicstyle.sweep.fidelity); the pair's row of
    measures (musicstyle.sweep.objective)."""
    settings: SweepSettings = _WORKER["settings"]
    params = {k: run[k] for k in settings.search if k in run and not _missing(run[k])}
    full = run.get("fidelity", "full") == "full"
    fixed = settings.confirm["fixed"] if full else run.get("overrides") or {}
    config = settings.config_for(params, seed=run["seed"]).replace(**fixed)
    outcome = run_pair(_WORKER["pairs"][run["pair"]], 0, config, _WORKER["cache"])
    row = {k: v for k, v in outcome.row.items() if k not in ("pair", "pair_index")}
    state = "ok" if row.pop("status") == "ok" else "failed"
    return run | row | {"state": state, "reason": row.get("error", ""), "seconds": row.get("runtime_seconds", 0.0),
                        "precision": config.precision, "filters": config.filters}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def confirm(study: optuna.Study, plan: SweepPlan) -> pd.DataFrame:
    """Run (or resume) the confirmation into results/<study>/confirm.csv; its rows."""
    runs = plan_confirmation(study, plan)
    if not runs:
        return pd.DataFrame()
    name = objective_measures(plan.objective)[0]
    return campaign.run_all(runs, run_one, plan.results_dir / CSV, plan.workers,
                            initializer=start_worker, initargs=(plan.settings, plan.pairs),
                            label=lambda r: f"{r['state']} {name} {r.get(name, float('nan'))}",
                            kind=lambda r: f"{r.get('filters')} filters")


def ranking(rows: pd.DataFrame, measure: str) -> pd.DataFrame:
    """Per confirmed trial: the full-fidelity mean of `measure` over pairs and seeds, the spread of the
    per-seed means, and on how many pairs its seed-mean is below 0 (truth_score: beats every trivial output)."""
    ok = rows[rows["state"] == "ok"]
    out = []
    for trial, part in ok.groupby("trial"):
        per_seed = part.groupby("seed")[measure].mean()
        per_pair = part.groupby("pair")[measure].mean()
        out.append({"trial": int(trial), "screen rank": int(part["rank_in_screen"].iloc[0]),
                    "screen value": float(part["screen_value"].iloc[0]), f"full {measure}": float(per_seed.mean()),
                    "seed spread (max - min)": float(per_seed.max() - per_seed.min()), "seeds": len(per_seed),
                    "pairs below 0": f"{int((per_pair < 0).sum())}/{len(per_pair)}", "runs": len(part)})
    frame = pd.DataFrame(out)
    return frame.sort_values(f"full {measure}").reset_index(drop=True) if len(frame) else frame


def confirm_markdown(folder: Path, settings: SweepSettings, objective: str) -> list[str]:
    """The report's opening section: the best setting at full fidelity beside the trivial frontier."""
    path = folder / CSV
    if not path.exists():
        return []
    rows = pd.read_csv(path)
    measure = objective_measures(objective)[0]
    table = ranking(rows, measure)
    fixed = ", ".join(f"{k}={v}" for k, v in settings.confirm["fixed"].items())
    lines = ["## Best at full fidelity", "",
             f"The screen's best {promoted(settings.confirm, settings.study['trials'])} distinct settings "
             f"(confirm.promote {settings.confirm['promote']:g} of {settings.study['trials']} trials) re-run on every "
             "pair with "
             f"{settings.confirm['seeds']} seed(s) at {fixed} (each with its own filter count): `{CSV}`."]
    if not len(table):
        return [*lines, "", "No confirmation run finished yet (rerun the same command to resume).", ""]
    best = table.iloc[0]
    params = rows[rows["trial"] == best["trial"]].iloc[0]
    setting = ", ".join(f"{k}={params[k]:.3g}" if isinstance(params[k], float) else f"{k}={params[k]}"
                        for k in settings.search if k in params and not _missing(params[k]))
    verdict = ""
    if measure == "truth_score":
        below, total = (int(x) for x in str(best["pairs below 0"]).split("/"))
        verdict = (f" A truth_score below 0 beats every trivial output of the pair (copies, mixes, EQ matching; "
                   f"docs/truth.md); this setting does so on {below} of {total} pairs, so it "
                   + ("beats the trivial frontier on most pairs." if below * 2 > total else
                      "does **not** beat the trivial frontier on most pairs."))
    lines += ["", f"**Best at full fidelity: trial {int(best['trial'])}** ({setting}): {measure} "
              f"{best[f'full {measure}']:.3f} over {int(best['seeds'])} seed(s), seed spread "
              f"{best['seed spread (max - min)']:.3f}; it was number {int(best['screen rank'])} in the screen."
              + verdict, "", table.to_markdown(index=False, floatfmt=".3f"), ""]
    return lines
