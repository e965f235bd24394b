"""The sweep's precision (resolved once), its start-up projection, the default space and early pruning."""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
import yaml

import musicstyle.engine.network
import musicstyle.engine.problem
import musicstyle.util.machine
from helpers import REPO, load, make_corpus
from musicstyle.config import make_config
from musicstyle.engine.network import resolve_precision
from musicstyle.sweep.budget import Projection, resolve_sweep_precision
from musicstyle.sweep.cli import main
from musicstyle.sweep.config import load_settings, parse_settings
from musicstyle.sweep.plan import SweepPlan
from musicstyle.sweep.storage import make_pruner
from musicstyle.util.machine import fast_bf16_cpu

AMX = frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16"})
AVX2 = frozenset({"avx2", "fma"})


def test_fast_bf16_needs_the_flags_and_no_cap():
    assert fast_bf16_cpu(AVX2, {})[0] is False
    assert "no avx512_bf16 or amx_bf16" in fast_bf16_cpu(AVX2, {})[1]
    assert fast_bf16_cpu(AMX, {}) == (True, "avx512_bf16/amx_bf16 on this CPU")
    assert fast_bf16_cpu(frozenset({"amx_bf16"}), {"ATEN_CPU_CAPABILITY": "avx512"})[0] is True
    for name, value in (("ATEN_CPU_CAPABILITY", "avx2"), ("DNNL_MAX_CPU_ISA", "AVX2"),
                        ("ONEDNN_MAX_CPU_ISA", "avx512_core")):
        fast, why = fast_bf16_cpu(AMX, {name: value})
        assert not fast and f"{name}={value}" in why
    assert fast_bf16_cpu(AMX, {"DNNL_MAX_CPU_ISA": "AVX512_CORE_AMX"})[0] is True


@pytest.mark.parametrize("flags, expected", [(AMX, "bf16"), (AVX2, "fp32")])
def test_auto_resolves_from_the_cpu_flags(monkeypatch, flags, expected):
    monkeypatch.setattr(musicstyle.util.machine, "cpu_info", lambda: ("test CPU", flags))
    monkeypatch.setattr(musicstyle.engine.network, "bf16_supported", lambda device: True)
    for name in musicstyle.util.machine.CAPPED_ENV:
        monkeypatch.delenv(name, raising=False)
    precision, why = resolve_precision("auto", "cpu")
    assert precision == expected and ("avx512_bf16" in why)
    assert resolve_precision("bf16", "cpu")[0] == expected  # asked-for bf16 where slow runs fp32, and says why
    assert resolve_precision("fp32", "cpu")[0] == "fp32"


def test_auto_run_on_a_slow_cpu_is_fp32_without_a_warning(monkeypatch):
    monkeypatch.setattr(musicstyle.engine.problem, "resolve_precision", lambda requested, device: ("fp32", "test"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dtype = musicstyle.engine.problem.product_dtype(make_config({"precision": "auto"}), torch.float32, "cpu")
    assert dtype == torch.float32


def test_asked_bf16_on_a_slow_cpu_warns_once_per_process(monkeypatch):
    monkeypatch.setattr(musicstyle.engine.problem, "bf16_supported", lambda device: False)
    musicstyle.engine.problem._warn_once.cache_clear()
    config = make_config({"precision": "bf16"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            assert musicstyle.engine.problem.product_dtype(config, torch.float32, "cpu") == torch.float32
    assert len([w for w in caught if "no fast bfloat16" in str(w.message)]) == 1


def test_the_sweep_records_the_precision_it_resolves(monkeypatch):
    monkeypatch.setattr(musicstyle.util.machine, "fast_bf16_cpu", lambda: (False, "no avx512_bf16 or amx_bf16"))
    settings = parse_settings({"fixed": {"precision": "auto"}}, "test.yaml")
    precision, why = resolve_sweep_precision(settings)
    assert precision == "fp32" and "no avx512_bf16" in why
    assert settings.base_config().precision == "fp32"  # every trial's config (trials.csv) names it


def test_projection_line_names_precision_seconds_and_wall_time():
    projection = Projection("fp32", "auto: no fast bfloat16 products (no avx512_bf16 or amx_bf16 on this CPU)",
                            {1024: 20.0, 2048: 40.0, 4096: 90.0}, pairs=5, iterations=60, frames=130,
                            griffin_lim_iters=30, trials_left=200, workers=2, threads=1)
    line = projection.line()
    assert "\n" not in line
    assert re.fullmatch(r"projection: precision fp32 \(auto: no fast bfloat16 products .*\); 20-90 s per trial "
                        r"\(filters 1024/2048/4096: 5 pairs x 60 L-BFGS iterations \(1\.25 evaluations each\) "
                        r"at 130 frames "
                        r"\+ Griffin-Lim 30 "
                        r"\+ fair measures, 1 torch thread\(s\) per worker\); 200 trials on 2 worker\(s\): "
                        r"about 83 min with the filter counts drawn equally, up to 2\.5 h if the search settles "
                        r"on 4096 \(before pruning\)", line), line
    assert projection.wall_seconds == pytest.approx(200 * 50.0 / 2)
    assert projection.worst_wall_seconds == pytest.approx(200 * 90.0 / 2)
    with_truth = Projection("fp32", "x", {1024: 20.0, 4096: 90.0}, pairs=5, iterations=60, frames=130,
                            griffin_lim_iters=30, trials_left=200, workers=2, threads=1,
                            parts={"frontier_seconds_once_per_pair": 12.0},
                            confirmation_seconds={1024: 600.0, 4096: 3000.0}, confirmation_runs=30)
    assert with_truth.wall_seconds == pytest.approx(200 * 55.0 / 2 + 5 * 12.0)
    line = with_truth.line()
    assert "+ truth measures (each pair's frontier once per worker)" in line
    assert line.endswith("; then the confirmation at full fidelity, 30 pair-runs: 10 min-50 min "
                         "(all at the smallest / the largest filter count); in all about 2.0 h"), line
    assert with_truth.total_seconds == pytest.approx(with_truth.wall_seconds + 1800.0)
    limit = Projection("fp32", "the infinite-filter limit", {math.inf: 30.0}, pairs=5, iterations=50, frames=430,
                       griffin_lim_iters=50, trials_left=200, workers=2, threads=1,
                       confirmation_seconds={math.inf: 900.0}, confirmation_runs=30)
    assert limit.line().endswith("(before pruning); then the confirmation at full fidelity, 30 pair-runs: "
                                 "15 min; in all about 65 min"), limit.line()


def test_default_config_screens_the_limit_and_adam_only_when_switched_on():
    settings = load_settings(REPO / "configs" / "default.yaml")
    assert {"alpha", "beta", "activation"} <= set(settings.search) and "filters" not in settings.search
    assert math.isinf(settings.base_config().filters)  # docs/sweep.md: the limit screens (fidelity check)
    precision, why = resolve_sweep_precision(load_settings(REPO / "configs" / "default.yaml"))
    assert precision == "fp32" and ("limit" in why or "no fast bfloat16" in why)  # never bf16 for the limit
    finite = load_settings(REPO / "configs" / "default.yaml", ["search.filters.enabled=true"])
    assert finite.search["filters"].choices == (1024, 2048, 4096) and "filters" not in finite.fixed
    assert "optimizer" not in settings.search and settings.base_config().optimizer == "lbfgs"  # docs/sweep.md, Adam
    with_adam = load_settings(REPO / "configs" / "default.yaml", ["search.optimizer.enabled=true"])
    assert with_adam.search["optimizer"].choices == ("lbfgs", "adam")
    assert with_adam.search["lr"].when == {"optimizer": ("adam",)}
    assert settings.base_config().precision == "auto"


SWEEP = """
study: {{objective: quality, trials: 6, seed: 0, paper_rows: false, startup_trials: 6, n_startup_steps: 1}}
corpus: {corpus}
fixed: {{sample_rate_hz: 8000, n_fft: 256, hop: 128, clip_seconds: 1.0, iterations: 4, griffin_lim_iters: 4,
        kernel_width: 5, precision: bf16, lr_schedule: cosine}}
search:
  alpha: {{low: 1.0e-4, high: 1.0, log: true}}
  beta: {{low: 1.0e-2, high: 100.0, log: true}}
  filters: {{choices: [16, 32]}}
  activation: {{choices: [relu, leaky_relu, elu, selu]}}
  optimizer: {{choices: [lbfgs, adam]}}
  lr: {{low: 1.0e-2, high: 1.0, log: true, when: {{optimizer: adam}}}}
"""


def test_tiny_default_like_sweep_projects_once_warns_never_and_varies_lr(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(musicstyle.util.machine, "fast_bf16_cpu", lambda: (False, "no avx512_bf16 or amx_bf16 here"))
    monkeypatch.setattr(musicstyle.engine.problem, "bf16_supported", lambda device: False)
    musicstyle.engine.problem._warn_once.cache_clear()
    config = tmp_path / "tiny.yaml"
    config.write_text(SWEEP.format(corpus=make_corpus(tmp_path)))
    results = tmp_path / "results"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["--config", str(config), "--results", str(results), "--workers", "1"]) == 0
    err = capsys.readouterr().err
    assert len(re.findall(r"^projection: precision fp32 \(bf16: no fast bfloat16 products", err, re.M)) == 1
    assert "no fast bfloat16 products on" not in err
    assert not [w for w in caught if "bfloat16" in str(w.message)]
    trials = pd.read_csv(results / "tiny" / "trials.csv")
    assert (trials["precision"] == "fp32").all()
    adam = trials[trials["optimizer"] == "adam"]
    assert adam["lr"].nunique() >= 2 and trials.loc[trials["optimizer"] == "lbfgs", "lr"].isna().all()
    text = (results / "tiny" / "results.md").read_text()
    assert "Precision used: fp32 (bf16: no fast bfloat16 products" in text
    assert "Machine: " in text and "Projected at the start: precision fp32" in text
    parts = load(results, "tiny").user_attrs["projection"]["parts"]
    assert {f"seconds_per_iteration_{a}" for a in ("relu", "leaky_relu", "elu", "selu")} <= set(parts)  # each timed


def test_default_pruner_can_stop_a_trial_after_three_of_five_pairs(tmp_path):
    """With the default threshold, three pairs all worse than the best trial's are enough (exact one-sided
    Wilcoxon p = 1/8 at n = 3), so a pruned trial skips two of five pairs."""
    settings = load_settings(REPO / "configs" / "default.yaml")
    plan = SweepPlan(settings, [], "p", tmp_path, None, 10)
    study = optuna.create_study(pruner=make_pruner(plan))
    best = study.ask()
    for step, value in enumerate([0.50, 0.52, 0.48, 0.51, 0.49]):
        best.report(value, step)
    study.tell(best, 0.5)
    worse = study.ask()
    pruned_at = None
    for step, value in enumerate(np.array([0.50, 0.52, 0.48, 0.51, 0.49]) + 0.1):
        worse.report(float(value), step)
        if worse.should_prune():
            pruned_at = step + 1
            break
    assert pruned_at == 3
    even = study.ask()  # a trial as good as the best on the pairs so far is not pruned
    for step, value in enumerate([0.49, 0.53, 0.47]):
        even.report(value, step)
    assert not even.should_prune()


def test_default_yaml_documents_the_pruner_threshold():
    data = yaml.safe_load((REPO / "configs" / "default.yaml").read_text())
    assert data["study"]["p_threshold"] > 0.125  # the exact minimum p at three pairs


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_adam_schedule_is_a_run_setting(schedule):
    config = make_config({"optimizer": "adam", "lr_schedule": schedule})
    assert config.lr_schedule == schedule


def test_cosine_schedule_ends_with_small_steps():
    from musicstyle.engine.optimize import optimize_spectrogram

    rng = np.random.default_rng(0)
    content, style = (np.abs(rng.standard_normal((33, 24))).astype(np.float32) for _ in range(2))
    config = make_config({"optimizer": "adam", "lr": 0.5, "lr_schedule": "cosine", "iterations": 30,
                          "filters": 16, "kernel_width": 3, "n_fft": 64})
    result = optimize_spectrogram(content, style, config)
    steps = np.abs(np.diff(result.loss_history[:-1]))
    assert np.isfinite(result.final_loss) and steps[-3:].max() < steps[:3].max()

