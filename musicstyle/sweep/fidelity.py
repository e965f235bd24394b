"""The fidelity check's plan and analysis (benchmark/fidelity_check.py runs it): does the sweep's screen rank
settings as the full fidelity does, among the best ones?

    runs  = plan_runs(settings, pairs, trials, seed)    # (setting, fidelity, seed, pair), settings by QMC
    table = rankings(rows, "truth_score")                # per setting: mean at each fidelity, log10(beta/alpha)
    agreement(table)                                     # rho overall / among the full's best TOP, the bar

Runs go through musicstyle.sweep.confirm.run_one (a "fidelity" of "screen" or "full").
"""

from __future__ import annotations

import hashlib
import math
import warnings
from typing import Any

import optuna
import pandas as pd
from scipy.stats import spearmanr

from .objective import suggest_params

TOP = 10  # the screen must keep the full fidelity's best KEEP in its best TOP
KEEP = 3
MIN_SETTINGS = 24  # fewer, and the best TOP are too large a share of them for the bar to mean much


def screen_name(overrides: dict[str, Any]) -> str:
    """'screen' for the sweep's own fixed settings, else 'screen[filters=inf,iterations=100]'."""
    return "screen" + (f"[{','.join(f'{k}={v}' for k, v in sorted(overrides.items()))}]" if overrides else "")


def plan_runs(settings: Any, pairs: list[Any], trials: int, seed: int,
              screen: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One run per (setting, fidelity, seed, pair); the settings drawn by a seeded, scrambled QMC sampler. `screen`:
    run settings over the sweep's fixed ones for the screen runs only (a run's `overrides`); its name is
    the runs' fidelity, so that checks of several screens in one folder share their full-fidelity runs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # QMC: stable enough to draw points
        sampler = optuna.samplers.QMCSampler(scramble=True, seed=seed, warn_independent_sampling=False)
    study = optuna.create_study(sampler=sampler)
    runs = []
    for number in range(trials):
        params = suggest_params(study.ask(), settings)
        tag = hashlib.sha1(repr(sorted(params.items())).encode()).hexdigest()[:8]  # a changed draw is a new run
        seeds = {screen_name(screen or {}): [seed], "full": [seed + k for k in range(settings.confirm["seeds"])]}
        for fidelity, fidelity_seeds in seeds.items():
            overrides = dict(screen or {}) if fidelity != "full" else {}
            for run_seed in fidelity_seeds:
                for pair in pairs:
                    runs.append({"run_id": f"setting{number}-{tag}|{fidelity}|seed{run_seed}|{pair.name}",
                                 "trial": number, "fidelity": fidelity, "seed": run_seed, "pair": pair.name,
                                 "overrides": overrides, **params})
    return runs


def rankings(rows: pd.DataFrame, measure: str, screen: str = "screen") -> pd.DataFrame:
    """Per setting: its mean `measure` at full fidelity and at the screen named `screen` (as column "screen"),
    over pairs and seeds, and log10(beta / alpha)."""
    ok = rows[(rows["state"] == "ok") & rows["fidelity"].isin([screen, "full"])]
    means = ok.pivot_table(index="trial", columns="fidelity", values=measure, aggfunc="mean")
    means = means.rename(columns={screen: "screen"})
    first = ok.groupby("trial").first()
    means["log10 beta/alpha"] = (first["beta"] / first["alpha"]).map(math.log10)
    means.index = means.index.astype(int)
    return means.dropna(subset=["screen", "full"]).sort_values("full")


def agreement(table: pd.DataFrame) -> dict[str, Any]:
    """rho overall and among the full fidelity's best TOP, the beta/alpha reference, the top-KEEP check."""
    best = table.head(TOP)
    screen_top = set(table.sort_values("screen").head(TOP).index)
    kept = [t for t in table.head(KEEP).index if t in screen_top]
    trend = spearmanr(table["log10 beta/alpha"], table["full"]).statistic
    return {"settings": len(table), "rho": spearmanr(table["screen"], table["full"]).statistic,
            "rho best": spearmanr(best["screen"], best["full"]).statistic,
            "trend rho": trend, "trend rho best": spearmanr(best["log10 beta/alpha"], best["full"]).statistic,
            "kept": len(kept), "passes": len(kept) == KEEP and len(table) >= MIN_SETTINGS}


