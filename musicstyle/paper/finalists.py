"""The joint search's finalists: its best distinct setups re-run over seeds, their table and the verdict.

The search ranks setups on one seed each; the verdict reads only the finalists, whose rows ran over
several seeds, so it can give the seed spread (paper/search.py runs the search itself).
"""

from __future__ import annotations

import math
from typing import Any

import optuna
import pandas as pd

from ..config import TransferConfig
from .runs import Run
from .search import BLOG_ROWS, describe_setup, joint_error, off_by_factor, row_settings, setup_of

DISTINCT_TOLERANCE = 0.05  # continuous parameters within 5 % (relative) of a better finalist's: the same setup


def same_setup(a: dict[str, Any], b: dict[str, Any], tolerance: float = DISTINCT_TOLERANCE) -> bool:
    """Whether two setups are one: equal choices, and every number within `tolerance` (relative).
    TPE settles near its best, so the best trials are often one setup drawn twice."""
    if a.keys() != b.keys():
        return False
    for name, value in a.items():
        other = b[name]
        if isinstance(value, float) and isinstance(other, float):
            if abs(value - other) > tolerance * max(abs(value), abs(other)):
                return False
        elif value != other:
            return False
    return True


def distinct_best(study: optuna.Study, top: int) -> list[optuna.trial.FrozenTrial]:
    """The `top` best finished trials whose setups differ (a near-duplicate of a better one counts once)."""
    done = sorted(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)), key=lambda t: t.value)
    picked: list[optuna.trial.FrozenTrial] = []
    for trial in done:
        if len(picked) == top:
            break
        if not any(same_setup(setup_of(trial), setup_of(p)) for p in picked):
            picked.append(trial)
    return picked


def _setup_runs(group: str, label: str, trial: optuna.trial.FrozenTrial, setup: dict[str, Any], seeds: range,
                base: TransferConfig, frames: int) -> list[Run]:
    """The blog's three rows under one search setup, over `seeds`."""
    return [Run(group, label, row.name, row_settings(setup, row, base, frames), s,
                keep_audio=group == "finalists" and label.startswith("setup 1 ") and s == 0,
                notes={"trial": trial.number, "gram_norm": setup["gram_norm"], "reduction": setup["reduction"],
                       "setup": describe_setup(setup), "search_error": trial.value})
            for row in BLOG_ROWS for s in seeds]


def finalist_runs(study: optuna.Study, base: TransferConfig, frames: int, top: int = 3, seeds: int = 5) -> list[Run]:
    """The best `top` distinct finished setups, each of the blog's rows over `seeds` seeds (group 'finalists')."""
    runs = []
    for rank, trial in enumerate(distinct_best(study, top), 1):
        runs += _setup_runs("finalists", f"setup {rank} (trial {trial.number})", trial, setup_of(trial),
                            range(seeds), base, frames)
    return runs


def precision_check_runs(study: optuna.Study, frame: pd.DataFrame, base: TransferConfig, frames: int,
                         precisions: tuple[str, ...]) -> list[Run]:
    """The finalists' best setup (lowest mean joint error over its seeds, the one the verdict names) once more,
    seed 0, in each of `precisions` it did not use (group 'precision check')."""
    named = verdict_trial(frame)
    if named is None or not precisions:
        return []
    trial = study.trials[named]
    setup = setup_of(trial)
    runs = []
    for precision in (p for p in precisions if p != setup["precision"]):
        runs += _setup_runs("precision check", f"best finalist (trial {trial.number}) in {precision}", trial,
                            setup | {"precision": precision}, range(1), base, frames)
    return runs


def verdict_trial(frame: pd.DataFrame) -> int | None:
    """The search trial the verdict names: the finalist with the lowest mean joint error over its seeds."""
    table = _finalist_entries(frame)
    return int(table.loc[0, "_trial"]) if len(table) and "_trial" in table else None


def checked_trials(frame: pd.DataFrame) -> set[int]:
    """The search trials re-run in another precision (group 'precision check')."""
    table = _finalist_entries(frame, "precision check")
    return {int(t) for t in table["_trial"]} if len(table) and "_trial" in table else set()


def finalists_table(frame: pd.DataFrame, group: str = "finalists") -> pd.DataFrame:
    """The finalists (or the precision check) as the report shows them; see _finalist_entries."""
    table = _finalist_entries(frame, group)
    return table.drop(columns=[c for c in table if c.startswith("_")])


def _finalist_entries(frame: pd.DataFrame, group: str = "finalists") -> pd.DataFrame:
    """Per finalist setup (search trial; and precision in the precision check): each row's loss (mean ±
    std over seeds) against the printed figure, and the joint error per seed (mean ± std: the seed
    spread), worst relative error, ABNORMAL stops and fallbacks. Setups that were finalists in an earlier
    invocation stay listed; a run recorded under two ranks (copied by run_all) counts once."""
    from ..reports.common import mean_std

    table = []
    runs = frame[frame["group"] == group] if "group" in frame else frame.iloc[0:0]
    if runs.empty:
        return pd.DataFrame()
    keys = [k for k in ("trial", "precision") if k in runs] or ["label"]
    runs = runs.drop_duplicates(subset=[*keys, "row", "seed"], keep="last")
    for key, group_runs in runs.groupby(keys, sort=False):
        key = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        ok = group_runs[group_runs["state"] == "ok"]
        name = f"trial {int(key['trial'])}" if "trial" in key else str(key["label"])
        if group == "precision check" and "precision" in key:
            name += f" in {key['precision']}"
        entry: dict[str, Any] = {"setup": name, "settings": group_runs["setup"].iloc[0]}
        if "trial" in key:
            entry["_trial"] = int(key["trial"])
        for row in BLOG_ROWS:
            losses = ok[ok["row"] == row.name]["final_loss"]
            entry[f"{row.name} (printed {row.paper_loss:g})"] = mean_std(losses, std_digits=2, empty="failed")
        per_seed = [joint_error(dict(zip(g["row"], g["final_loss"]))) for _, g in ok.groupby("seed")]
        errors = pd.Series([e for e in per_seed if math.isfinite(e)], dtype=float)
        entry["joint error"] = mean_std(errors, 3, 2, empty="failed")
        entry["worst row off by a factor"] = f"{off_by_factor(errors.mean()):.3g}" if len(errors) else "failed"
        entry["seeds"] = int(ok["seed"].nunique())
        entry["ABNORMAL stops"] = int(ok["abnormal_stop"].astype(bool).sum()) if "abnormal_stop" in ok else 0
        entry["float64 fallbacks"] = int(ok["float64_fallback"].astype(bool).sum()) if "float64_fallback" in ok else 0
        entry["failed"] = int((group_runs["state"] != "ok").sum())
        entry["_error"] = errors.mean() if len(errors) else math.inf
        table.append(entry)
    out = pd.DataFrame(table)
    return out.sort_values("_error").reset_index(drop=True) if len(out) else out


def verdict(frame: pd.DataFrame, study_trials: int, tolerance: float = 0.10) -> str:
    """One sentence on the blog's table from the finalists' seeds (not from the search's single seed)."""
    table = finalists_table(frame)
    if table.empty:
        return ("The joint search has not run (or no setup finished), so whether one setup reproduces the blog's "
                "three rows is not checked here.")
    best = table.iloc[0]
    factor = float(best["worst row off by a factor"]) if best["worst row off by a factor"] != "failed" else math.inf
    if factor <= 1 + tolerance:
        head = f"the blog's table is reproduced within {factor - 1:.0%} under one setup ({best['settings']})"
    else:
        head = (f"none of the {study_trials} setups tried reproduces the blog's three rows within {tolerance:.0%} "
                f"(fewer trials than the space needs to say that none of it does); the closest "
                f"({best['settings']}) has its worst row off by a factor of {factor:.3g} (mean joint error over "
                f"{best['seeds']} seeds)")
    return (f"Joint search ({study_trials} trials): {head}; joint error per seed {best['joint error']} "
            f"(|log(measured / printed)|, worst of the three rows; mean ± std over seeds).")
