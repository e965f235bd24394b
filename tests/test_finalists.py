"""The joint search's finalists: distinct setups, their table over seeds, and the verdict."""

from __future__ import annotations

import math

import optuna
import pandas as pd
from optuna.distributions import CategoricalDistribution, FloatDistribution

from musicstyle.config import TransferConfig
from musicstyle.paper.finalists import (
    distinct_best,
    finalist_runs,
    finalists_table,
    precision_check_runs,
    same_setup,
    verdict,
)
from musicstyle.paper.search import BLOG_ROWS


def _finalist_frame(factor_by_seed: list[float]) -> pd.DataFrame:
    records = []
    for seed, factor in enumerate(factor_by_seed):
        for row in BLOG_ROWS:
            records.append({"group": "finalists", "label": "setup 1 (trial 7)", "row": row.name, "seed": seed,
                            "state": "ok", "final_loss": row.paper_loss * factor, "setup": "L-BFGS, test",
                            "abnormal_stop": seed == 0, "float64_fallback": False})
    return pd.DataFrame(records)


def test_verdict_reads_the_finalists_seeds():
    reproduced = verdict(_finalist_frame([1.04, 1.06, 1.05]), 40)
    assert "reproduced within 5%" in reproduced and "40 trials" in reproduced and "L-BFGS, test" in reproduced
    missed = verdict(_finalist_frame([2.0, 2.2]), 12)
    assert "none of the 12 setups tried reproduces" in missed and "factor of 2.1" in missed
    table = finalists_table(_finalist_frame([2.0, 2.2]))
    assert table.loc[0, "ABNORMAL stops"] == 3 and table.loc[0, "seeds"] == 2  # seed 0's three rows
    assert "not checked" in verdict(pd.DataFrame({"group": ["rows"], "state": ["ok"]}), 0)


def _trial(number: int, error: float, gain: float, slope: float = 0.2) -> optuna.trial.FrozenTrial:
    params = {"optimizer": "lbfgs", "iterations": 3000, "init_gain": gain, "leaky_slope": slope,
              "gram_norm": "input frames", "reduction": "sum", "filters": 4096, "precision": "auto",
              "init": "noise"}
    distributions = {name: (FloatDistribution(0.5, 2.0, log=True) if name == "init_gain"
                            else CategoricalDistribution([value])) for name, value in params.items()}
    trial = optuna.trial.create_trial(params=params, distributions=distributions, value=error)
    trial.number = number
    return trial


def test_same_setup_means_equal_choices_and_numbers_within_five_percent():
    a = _trial(0, 0.3, 1.22).params
    assert same_setup(a, _trial(1, 0.3, 1.25).params)  # 2.4 % apart
    assert not same_setup(a, _trial(1, 0.3, 1.31).params)  # 7 % apart
    assert not same_setup(a, _trial(1, 0.3, 1.22, slope=0.3).params)


def test_finalists_are_the_best_distinct_setups():
    study = optuna.create_study()
    for trial in (_trial(28, 0.354, 1.22), _trial(21, 0.357, 1.221), _trial(15, 0.536, 1.31),
                  _trial(11, 0.549, 1.25, slope=0.3), _trial(3, 0.9, 1.0)):
        study.add_trial(trial)
    # the study numbers them 0-4 as added: trial 1 is trial 0 drawn again (gain 1.221 against 1.22)
    assert [t.number for t in distinct_best(study, 3)] == [0, 2, 3]
    runs = finalist_runs(study, TransferConfig(), frames=430, seeds=2)
    assert len(runs) == 3 * 2 * len(BLOG_ROWS) and {r.group for r in runs} == {"finalists"}
    assert {r.notes["trial"] for r in runs} == {0, 2, 3}


def test_the_precision_check_runs_the_setup_the_verdict_names():
    study = optuna.create_study()
    for trial in (_trial(0, 0.271, 1.29, slope=0.1), _trial(1, 0.304, 1.25)):
        study.add_trial(trial)
    # over its seeds trial 0 (best on the search's one seed) is worse than trial 1: the check runs trial 1
    frame = pd.concat([_finalist_frame([1.3, 1.35]).assign(trial=1, precision="auto"),
                       _finalist_frame([1.2, 7.0]).assign(trial=0, precision="auto")])
    checks = precision_check_runs(study, frame, TransferConfig(), 430, ("auto", "fp32", "fp64"))
    assert {r.notes["trial"] for r in checks} == {1} and {r.group for r in checks} == {"precision check"}
    assert sorted({r.settings["precision"] for r in checks}) == ["fp32", "fp64"] and len(checks) == 2 * len(BLOG_ROWS)
    assert precision_check_runs(study, frame.iloc[0:0], TransferConfig(), 430, ("fp32",)) == []


def test_a_run_recorded_under_two_ranks_counts_once_and_earlier_finalists_stay_listed():
    now = _finalist_frame([1.5, 1.6]).assign(trial=7, precision="auto")
    copied = now[now["seed"] == 0].assign(label="setup 2 (trial 7)")  # the same runs, copied under a new rank
    earlier = _finalist_frame([2.0]).assign(trial=3, precision="auto", label="setup 1 (trial 3)")
    table = finalists_table(pd.concat([now, copied, earlier]))
    assert table["setup"].tolist() == ["trial 7", "trial 3"]  # best first
    assert table.loc[0, "seeds"] == 2 and table.loc[0, "ABNORMAL stops"] == 3  # seed 0's rows not counted twice
    assert table.loc[0, "joint error"].startswith(f"{math.log(1.55):.3f}"[:4])


def test_the_precision_check_keeps_each_precision_apart():
    fp32 = _finalist_frame([1.3]).assign(group="precision check", trial=7, precision="fp32")
    fp64 = _finalist_frame([1.4]).assign(group="precision check", trial=7, precision="fp64")
    table = finalists_table(pd.concat([fp32, fp64]), "precision check")
    assert table["setup"].tolist() == ["trial 7 in fp32", "trial 7 in fp64"]


def test_the_report_says_whether_the_verdicts_setup_was_checked_in_another_precision():
    from musicstyle.paper.report import _precision_line

    finalists = _finalist_frame([1.3]).assign(trial=7, precision="auto")
    other = _finalist_frame([1.2]).assign(group="precision check", trial=3, precision="fp64")
    assert "trial 7, has not been re-run" in _precision_line(pd.concat([finalists, other]))
    same = _finalist_frame([1.3]).assign(group="precision check", trial=7, precision="fp64")
    assert "trial 7, is among them" in _precision_line(pd.concat([finalists, other, same]))
