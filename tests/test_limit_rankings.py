"""benchmark/limit_rankings.py's analysis on made-up scores whose rankings are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from musicstyle.reports.rankings import best_choice, config_scores, order_flips, rank_agreement


def runs(scores: dict[tuple[str, int], list[float]], pairs: int = 2) -> pd.DataFrame:
    """One row per (engine, seed, config, pair); both scores equal to the given per-config value."""
    rows = [{"engine": engine, "seed": seed, "config_id": c, "pair": f"r{p:02d}", "truth_score": v,
             "quality_score": v} for (engine, seed), values in scores.items() for c, v in enumerate(values)
            for p in range(pairs)]
    return pd.DataFrame(rows)


def test_rankings_flips_and_best_choice_on_known_scores():
    frame = runs({("4096", 0): [0.1, 0.2, 0.3, 0.4], ("4096", 1): [0.2, 0.1, 0.3, 0.4],
                  ("inf", 0): [0.4, 0.3, 0.2, 0.1]})
    scores = config_scores(frame)
    corr = rank_agreement(scores, "truth_score")
    assert corr.loc["4096 s0", "4096 s1"] == pytest.approx(0.8)  # one swap of neighbours among 4
    assert corr.loc["inf s0", "4096 s0"] == pytest.approx(-1.0)
    choice = best_choice(scores, "truth_score", draws=4000)
    assert choice["4096"]["best_per_seed"] == [0, 1]
    assert choice["4096"]["flips"] == (1, 6)
    assert 0.6 < choice["4096"]["sweep_hits"] < 0.9  # configs 0 and 1 tie on the mean: argmin takes 0
    assert choice["inf"]["best_per_seed"] == [3] and choice["inf"]["sweep_hits"] == 1.0


def test_incomplete_groups_are_left_out():
    frame = runs({("4096", 0): [0.1, 0.2], ("inf", 0): [0.2, 0.1]})
    frame = frame[~((frame.engine == "inf") & (frame.config_id == 1) & (frame.pair == "r01"))]
    assert ("inf", 0, 1) not in config_scores(frame).index


def test_order_flips_counts_pairs_whose_order_changes():
    assert order_flips(np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])) == (0, 3)
    assert order_flips(np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])) == (3, 3)
