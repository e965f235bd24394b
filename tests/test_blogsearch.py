"""The joint search for the blog's setup and the paper report's honesty, on known numbers (no songs needed)."""

from __future__ import annotations

import math

import optuna
import pandas as pd
import pytest
import torch

from musicstyle.config import TransferConfig, make_config
from musicstyle.data.paper_songs import BASE_ROW, PAPER_ROWS
from musicstyle.engine.losses import gram
from musicstyle.paper.report import claims, differs, rows_table, write_report
from musicstyle.paper.runs import WEIGHTS
from musicstyle.paper.search import (
    BLOG_ROWS,
    GRAM_NORMS,
    KNOWN_READINGS,
    PRIOR_RATIOS,
    REDUCTIONS,
    SCREEN_ITERATION,
    SCREEN_SLACK,
    SPACE,
    BoundReached,
    RowWatch,
    Screened,
    joint_error,
    lbfgs_bound,
    loss_scales,
    row_settings,
    screen_ratios,
    suggest_setup,
)


def test_every_setup_the_space_can_draw_is_a_valid_run_of_each_blog_row():
    base = TransferConfig()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen: dict[str, set] = {name: set() for name in ("optimizer", "gram_norm", "reduction", "precision", "init")}
    for _ in range(60):
        trial = study.ask()
        setup = suggest_setup(trial)
        assert ("lr" in setup) == (setup["optimizer"] == "adam")  # the learning rate only where it matters
        if setup["gram_norm"] == "keras":
            assert setup["reduction"] == "sum" and "reduction" not in trial.params
        for row in BLOG_ROWS:
            config = make_config(base.to_dict() | row_settings(setup, row, base, 430))
            assert config.activation == row.activation and config.alpha > 0 and config.beta > 0
        for name in seen:
            seen[name].add(setup[name])
        study.tell(trial, 1.0)
    assert seen["gram_norm"] == set(GRAM_NORMS) and seen["reduction"] == set(REDUCTIONS)
    assert seen["optimizer"] == set(SPACE["optimizer"]) and seen["precision"] == set(SPACE["precision"])


def test_the_known_readings_lie_in_the_space_and_replay_exactly():
    """The readings queued first are points of SPACE, and a trial asked with one suggests exactly it."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for params in KNOWN_READINGS.values():
        for name, value in params.items():
            bounds = SPACE[name]
            assert (bounds[0] <= value <= bounds[1]) if name in ("lr", "init_gain") else value in bounds, name
        study.enqueue_trial(params)
        setup = suggest_setup(study.ask())
        assert {k: setup[k] for k in params} == params
    assert KNOWN_READINGS["Keras-like"]["gram_norm"] == "keras" and "reduction" not in KNOWN_READINGS["Keras-like"]


@pytest.mark.parametrize("gram_norm", GRAM_NORMS)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_loss_scales_turn_the_engines_losses_into_each_convention(gram_norm, reduction):
    """Each convention computed from its own formula equals the engine's loss times the scale."""
    k, n, width = 16, 30, 5
    t = n - width + 1
    g = torch.Generator().manual_seed(0)
    f, c, s = (torch.randn(k, t, generator=g, dtype=torch.float64) for _ in range(3))
    engine_content = ((f - c) ** 2).sum()
    engine_style = ((gram(f, n) - gram(s, n)) ** 2).sum()
    unnormalised = f @ f.T - s @ s.T
    if gram_norm == "keras":
        content, style = engine_content, (unnormalised ** 2).sum() / (4 * k ** 2 * t ** 2)
    else:
        divisor = {"input frames": n, "output frames": t, "none": 1}[gram_norm]
        diff_sq = (unnormalised / divisor) ** 2
        if reduction == "mean":
            content, style = ((f - c) ** 2).mean(), diff_sq.mean()
        else:
            half = 0.5 if reduction == "half sum" else 1.0
            content, style = half * engine_content, half * diff_sq.sum()
    content_scale, style_scale = loss_scales(gram_norm, reduction, k, n, width)
    assert content_scale * engine_content.item() == pytest.approx(content.item(), rel=1e-12)
    assert style_scale * engine_style.item() == pytest.approx(style.item(), rel=1e-12)


def test_row_settings_fold_the_normalisation_into_the_blog_weights():
    base = TransferConfig()
    setup = {"optimizer": "lbfgs", "iterations": 300, "init_gain": 1.0, "leaky_slope": 0.3, "gram_norm": "none",
             "reduction": "half sum", "filters": 4096, "precision": "fp32", "init": "noise"}
    settings = row_settings(setup, BLOG_ROWS[0], base, 430)
    assert settings["alpha"] == pytest.approx(1e-3 * 0.5) and settings["beta"] == pytest.approx(10 * 0.5 * 430 ** 2)
    assert settings["lr"] == BLOG_ROWS[0].lr and "gram_norm" not in settings


def test_joint_error_is_the_worst_log_ratio_on_known_numbers():
    printed = {r.name: r.paper_loss for r in BLOG_ROWS}
    exact = dict(printed)
    assert joint_error(exact) == 0
    off = {name: v * f for (name, v), f in zip(printed.items(), (1.1, 0.5, 1.0))}
    assert joint_error(off) == pytest.approx(math.log(2))  # half is as far as double
    assert joint_error({name: v for name, v in list(printed.items())[:2]}) == math.inf  # a row missing
    assert joint_error(exact | {BLOG_ROWS[0].name: 0.0}) == math.inf


def test_lbfgs_bound_stops_a_row_only_once_it_cannot_win():
    assert lbfgs_bound(100.0, None) is None
    check = lbfgs_bound(100.0, math.log(2))  # the best trial is a factor 2 off: stop below 50 (less 2 %)
    check(1, 300, 60.0)
    check(2, 300, 49.5)  # inside the margin
    with pytest.raises(BoundReached):
        check(3, 300, 48.0)


def test_screen_ratios_come_from_finished_rows_of_the_same_optimiser_and_budget():
    assert screen_ratios([], "lbfgs", 3000) == PRIOR_RATIOS["lbfgs"]
    rows = [{"state": "ok", "optimizer": "lbfgs", "iterations": 3000, "loss_at_screen": 100.0, "final_loss": f}
            for f in (40.0, 50.0, 80.0)]
    others = [{"state": "ok", "optimizer": "adam", "iterations": 3000, "loss_at_screen": 100.0, "final_loss": 1.0},
              {"state": "ok", "optimizer": "lbfgs", "iterations": 300, "loss_at_screen": 100.0, "final_loss": 1.0},
              {"state": "stopped", "optimizer": "lbfgs", "iterations": 3000, "loss_at_screen": 100.0},
              {"state": "ok", "optimizer": "lbfgs", "iterations": 3000, "loss_at_screen": float("nan"),
               "final_loss": 1.0}]
    assert screen_ratios(rows[:2] + others, "lbfgs", 3000) == PRIOR_RATIOS["lbfgs"]  # 2 < SCREEN_MIN_ROWS
    low, high = screen_ratios(rows + others, "lbfgs", 3000)
    assert low == pytest.approx(0.4 / SCREEN_SLACK) and high == pytest.approx(0.8 * SCREEN_SLACK)


def test_row_watch_screens_only_a_row_predicted_outside_the_best_error():
    # printed 100, best a factor 2 off: a final loss must land in 50..200 to compete; ratios 0.4..0.8
    watch = RowWatch(100.0, math.log(2), "adam", (0.4, 0.8))
    watch(SCREEN_ITERATION - 1, 1000, 10_000.0)  # not the screen iteration
    watch(SCREEN_ITERATION, 1000, 400.0)  # predicts 160..320: may still win
    assert watch.loss_at_screen == 400.0
    with pytest.raises(Screened):
        RowWatch(100.0, math.log(2), "adam", (0.4, 0.8))(SCREEN_ITERATION, 1000, 300.0 / 0.4 + 1)
    with pytest.raises(Screened):  # predicted below 50
        RowWatch(100.0, math.log(2), "adam", (0.4, 0.8))(SCREEN_ITERATION, 1000, 60.0)
    RowWatch(100.0, None, "adam", (0.4, 0.8))(SCREEN_ITERATION, 1000, 1e9)  # no best yet: nothing to screen against
    RowWatch(100.0, math.log(2), "adam", (0.4, 0.8))(SCREEN_ITERATION, SCREEN_ITERATION, 1e9)  # its last iteration
    with pytest.raises(BoundReached):  # the L-BFGS bound still applies at every iteration
        RowWatch(100.0, math.log(2), "lbfgs", (0.01, 1.0))(3, 1000, 40.0)


def _rows_frame(frames: int) -> pd.DataFrame:
    records = []
    for row in PAPER_ROWS:
        for seed in range(3):
            records.append({"group": "rows", "label": row.name, "row": row.name, "seed": seed, "state": "ok",
                            "activation": row.activation, "alpha": row.alpha, "beta": row.beta, "iterations": 40,
                            "final_loss": row.paper_loss * (1 + 0.01 * seed), "content_loss": 1.0, "style_loss": 1.0,
                            "style_distance": 0.2, "content_distance": 0.6, "quality_score": 0.4 + 0.001 * seed,
                            "precision_used": "fp64" if seed == 2 else "fp32", "frames": frames,
                            "abnormal_stop": row is BASE_ROW and seed < 2, "float64_fallback": seed == 2,
                            "machine": "test CPU", "device": "cpu", "code_version": "abc", "invocation": "i1",
                            "seconds": 1.0})
    return pd.DataFrame(records)


def test_abnormal_stops_and_fallbacks_are_counted_per_row():
    table = rows_table(_rows_frame(60))
    base = table[table["row"] == BASE_ROW.name].iloc[0]
    assert base["ABNORMAL stops"] == 2 and base["float64 fallbacks"] == 1 and base["precision used"] == "fp32, fp64"
    assert (table[table["row"] != BASE_ROW.name]["ABNORMAL stops"].iloc[:3] == 0).all()


def test_the_verdict_gives_each_row_converged_where_it_ran():
    frame = _rows_frame(60)
    converged = frame[(frame["row"] == BASE_ROW.name) & (frame["seed"] == 0)].assign(
        group="converged", label=f"relu @ {next(iter(WEIGHTS))}", final_loss=BASE_ROW.paper_loss * 0.8,
        iterations=3000, iterations_done=711)
    stated = claims(pd.concat([frame, converged]))
    assert "left to converge (711 iterations, cap 3000, seeds: 1) 447.2 (-20%)" in stated[0]
    assert "left to converge" not in stated[1]  # the blog's LeakyReLU cell did not run converged here


def test_report_text_follows_the_config_and_the_runs(tmp_path):
    base = TransferConfig(griffin_lim_iters=7, iterations=40, frames=60, filters=256)
    baselines = pd.DataFrame([{"baseline": "content copy", "style_distance": 1.0, "content_distance": 0.0,
                               "quality_score": 0.5}])
    command = "python -m musicstyle reproduce --test"
    report = write_report(_rows_frame(60), tmp_path, base, command, baselines).read_text()
    assert "60 frames" in report and "Griffin-Lim 7 iterations" in report and "256 filters" in report
    assert "40 iterations" in report and "430" not in report and "Griffin-Lim 500" not in report
    assert "2 ended with an L-BFGS ABNORMAL" in report and "4 fell back to float64" in report
    assert "baseline: content copy" in report and "test CPU" in report and "code version abc" in report
    assert "no measurable difference" in report  # quality scores 0.400-0.402 for every activation


def test_differences_within_the_seed_spread_are_not_called_differences():
    assert not differs(pd.Series([0.40, 0.41, 0.39]), pd.Series([0.402, 0.412, 0.392]))
    assert differs(pd.Series([0.40, 0.401, 0.399]), pd.Series([0.50, 0.501, 0.499]))
    assert not differs(pd.Series([0.4]), pd.Series([0.9]))  # one seed: no spread, no claim


def test_a_run_made_before_is_found_by_its_config_and_seed():
    from musicstyle.paper.runs import RECORDED, same_run

    config = TransferConfig(activation="elu", alpha=1e-3, beta=10.0, iterations=300, lr=1e-2)
    record = {"run_id": "rows|blog ELU|blog ELU|seed0", "state": "ok", "seed": 0, "frames": 430,
              **{k: getattr(config, k) for k in RECORDED}}
    runs = pd.DataFrame([record, record | {"run_id": "failed one", "state": "failed", "seed": 1}])
    assert same_run(runs, config.replace(seed=0), 430)["run_id"] == record["run_id"]
    assert same_run(runs, config.replace(seed=0, lr=0.5), 430) is not None  # L-BFGS ignores the learning rate
    assert same_run(runs, config.replace(seed=0, optimizer="adam"), 430) is None
    assert same_run(runs, config.replace(seed=1), 430) is None  # only finished runs count
    assert same_run(runs, config.replace(seed=0, init_gain=1.0), 430) is None
    assert same_run(runs, config.replace(seed=0), 60) is None


def test_run_all_takes_a_run_made_under_another_name_without_running_or_decoding(tmp_path):
    from musicstyle.paper.runs import RECORDED, Run, run_all

    base = TransferConfig()
    config = base.replace(activation="elu", alpha=1e-3, beta=10.0, lr=1e-2)
    made = {"run_id": "rows|blog ELU|blog ELU|seed0", "group": "rows", "label": "blog ELU", "row": "blog ELU",
            "seed": 0, "state": "ok", "frames": 430, "final_loss": 287.5, **{k: getattr(config, k) for k in RECORDED}}
    pd.DataFrame([made]).to_csv(tmp_path / "runs.csv", index=False)
    run = Run("finalists", "setup 1 (trial 0)", "blog ELU", {"activation": "elu", "alpha": 1e-3, "beta": 10.0}, 0,
              notes={"trial": 0})
    frame = run_all(tmp_path / "no songs here", tmp_path, base, [run])  # decoding songs would fail: none exist
    assert len(frame) == 1 and frame.iloc[0]["reused_from"] == made["run_id"]
    assert frame.iloc[0]["group"] == "finalists" and frame.iloc[0]["final_loss"] == 287.5
    assert len(pd.read_csv(tmp_path / "runs.csv")) == 2  # recorded under its new name too


def test_run_all_takes_the_searchs_own_row_for_a_finalist(tmp_path):
    from musicstyle.paper.runs import RECORDED, Run, run_all

    base = TransferConfig()
    config = base.replace(activation="selu", alpha=2e-3, beta=10.0)
    searched = pd.DataFrame([{"run_id": "search|trial 4|blog SELU|seed0", "group": "search", "label": "trial 4",
                              "row": "blog SELU", "seed": 0, "state": "ok", "frames": 430, "final_loss": 301.0,
                              **{k: getattr(config, k) for k in RECORDED}}])
    run = Run("finalists", "setup 1 (trial 4)", "blog SELU", {"activation": "selu", "alpha": 2e-3, "beta": 10.0}, 0)
    frame = run_all(tmp_path / "no songs here", tmp_path, base, [run], reusable=searched)
    assert frame.iloc[0]["reused_from"] == "search|trial 4|blog SELU|seed0" and frame.iloc[0]["final_loss"] == 301.0


def test_a_resumed_search_does_not_repeat_its_first_draws(tmp_path):
    from musicstyle.paper.search import _study, suggest_setup

    first = _study(tmp_path, seed=0)
    trial = first.ask()
    drawn = suggest_setup(trial)
    first.tell(trial, 1.0)
    resumed = _study(tmp_path, seed=0)
    assert len(resumed.trials) == 1 and suggest_setup(resumed.ask()) != drawn
