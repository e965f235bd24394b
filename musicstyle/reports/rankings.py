"""Do configurations rank the same under two engines or seeds? The analysis of a runs table with one row per
(engine, seed, config_id, pair) and the columns SCORES (benchmark/limit_rankings.py writes such tables)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

SCORES = ("truth_score", "quality_score")


def config_scores(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean over pairs per (engine, seed, config): columns SCORES, index (engine, seed, config_id)."""
    complete = runs.groupby(["engine", "seed", "config_id"]).filter(lambda g: len(g) == runs.pair.nunique())
    return complete.groupby(["engine", "seed", "config_id"])[list(SCORES)].mean()


def rank_agreement(scores: pd.DataFrame, score: str) -> pd.DataFrame:
    """Spearman rho between the configuration rankings of every two (engine, seed) columns."""
    table = scores[score].unstack("config_id")
    table.index = [f"{e} s{s}" for e, s in table.index]
    table = table.dropna(axis=1)
    return table.T.corr(method="spearman")


def best_choice(scores: pd.DataFrame, score: str, draws: int = 20000, seed: int = 0) -> dict:
    """Best configuration per (engine, seed) and a simulated sweep at each engine: every configuration
    evaluated once at a seed drawn at random; how often its best trial is the best on the mean over
    seeds, and the mean excess (on the mean over seeds) of the configuration it picks."""
    rng = np.random.default_rng(seed)
    out = {}
    for engine, g in scores[score].groupby(level="engine"):
        table = g.droplevel("engine").unstack("config_id").dropna(axis=1)  # (seeds, configs)
        values = table.to_numpy()
        mean = values.mean(axis=0)
        picks = values[rng.integers(values.shape[0], size=(draws, values.shape[1])),
                       np.arange(values.shape[1])].argmin(axis=1)
        out[engine] = {"best_per_seed": [int(table.columns[i]) for i in values.argmin(axis=1)],
                       "best_on_mean": int(table.columns[mean.argmin()]),
                       "sweep_hits": float(np.mean(picks == mean.argmin())),
                       "sweep_excess": float(np.mean(mean[picks] - mean.min())),
                       "seed_std": float(values.std(axis=0, ddof=1).mean()) if values.shape[0] > 1 else math.nan,
                       "config_std": float(mean.std(ddof=1)),
                       "flips": order_flips(values)}
    return out


def order_flips(values: np.ndarray) -> tuple[int, int]:
    """(pairs of configurations whose order differs between two seeds, pairs in all); values (seeds, configs)."""
    pairs = list(itertools.combinations(range(values.shape[1]), 2))
    flipped = sum(len(set(np.sign(values[:, i] - values[:, j]))) > 1 for i, j in pairs)
    return int(flipped), len(pairs)
