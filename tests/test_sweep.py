"""End-to-end sweeps on generated audio: records, plots, paper rows first, resume, failures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import soundfile as sf

from helpers import RATE, REPO, assert_png, load, make_corpus, tiny_config
from musicstyle.sweep.cli import main


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return make_corpus(tmp_path)


def test_end_to_end_writes_rows_states_tables_plots_and_best_wavs(tmp_path, corpus):
    config = tiny_config(tmp_path, corpus)
    results = tmp_path / "results"
    assert main(["--config", str(config), "--results", str(results), "--quiet"]) == 0
    folder = results / "tiny"
    trials = pd.read_csv(folder / "trials.csv")
    assert len(trials) == 6 and list(trials["trial"]) == list(range(6))
    assert set(trials["state"]) <= {"COMPLETE", "PRUNED"} and (trials["state"] == "COMPLETE").sum() >= 2
    # the paper's four rows come first, in order, with the paper's figures beside them
    assert list(trials["paper_row"][:4]) == ["base paper (ReLU)", "blog LeakyReLU", "blog ELU", "blog SELU"]
    assert trials["paper_row"][4:].isna().all()
    assert list(trials["paper_loss"][:4]) == pytest.approx([559.0, 81.79, 207.1794, 266.556])
    first = trials.iloc[0]
    assert (first["alpha"], first["beta"], first["activation"]) == (1e-2, 1.0, "relu")
    for column in ("alpha", "beta", "filters", "activation", "seed", "final_loss", "content_loss", "style_loss",
                   "content_loss_unweighted", "style_loss_unweighted", "style_distance", "content_distance",
                   "spectral_convergence", "quality_score", "iterations", "runtime_seconds",
                   "seconds_per_iteration", "peak_memory_mb"):
        assert column in trials, column
    done = trials[trials["state"] == "COMPLETE"]
    assert done["final_loss"].notna().all() and (done["iterations"] >= 1).all()
    assert done["final_loss"].tolist() == pytest.approx((done["content_loss"] + done["style_loss"]).tolist(), rel=1e-4)
    assert done["objective_quality_score"].tolist() == pytest.approx(done["quality_score"].tolist())
    # one pairs.csv row per trial and pair run
    pairs = pd.read_csv(folder / "pairs.csv")
    assert len(pairs) == int(trials["pairs_done"].sum())
    assert (pairs.groupby("trial").size()[done["trial"]] == 3).all()
    assert set(pairs["pair"]) == {"p0", "p1", "p2"} and (pairs["status"] == "ok").all()
    text = (folder / "results.md").read_text()
    for heading in ("## Best configurations", "## The paper's four rows, measured here", "## Per activation"):
        assert heading in text
    assert "| base paper (ReLU) |" in text and "559" in text and " ± " in text
    for name in ("by_activation", "history", "importance", "alpha_beta", "runtime_quality", "loss_curves",
                 "best_spectrograms"):
        assert f"![{name}.png]" in text
        assert_png(folder / f"{name}.png")
    best = int(done.sort_values("quality_score")["trial"].iloc[0])
    wavs = sorted((folder / "best" / f"trial_{best:04d}").glob("*.wav"))
    assert [w.stem for w in wavs] == ["p0", "p1", "p2"]
    audio, rate = sf.read(wavs[0])
    assert rate == RATE and audio.size > RATE // 2 and np.abs(audio).max() > 0
    # --report-only rebuilds the same tables from the storage
    (folder / "trials.csv").unlink()
    assert main(["--config", str(config), "--results", str(results), "--report-only", "--quiet"]) == 0
    assert len(pd.read_csv(folder / "trials.csv")) == 6


def test_a_file_that_breaks_mid_sweep_quarantines_its_pair(tmp_path, corpus):
    """A silent clip passes the header check but fails when decoded: the first trial records the pair's
    failure and quarantines it (musicstyle/sweep/quarantine.py), the trials complete on the other pairs."""
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(RATE * 2, dtype=np.float32), RATE)
    broken = tmp_path / "broken.yaml"
    broken.write_text(corpus.read_text() + f"  - {{name: quiet, content: {silent}, style: {silent}}}\n")
    config = tiny_config(tmp_path, broken, trials=2)
    results = tmp_path / "results"
    assert main(["--config", str(config), "--results", str(results), "--quiet", "--workers", "1",
                 "--set", "study.paper_rows=false"]) == 0
    trials = pd.read_csv(results / "tiny" / "trials.csv")
    assert list(trials["state"]) == ["COMPLETE", "COMPLETE"] and (trials["pairs_scored"] == 3).all()
    pairs = pd.read_csv(results / "tiny" / "pairs.csv")
    failed = pairs[pairs["status"] == "failed"]
    assert len(failed) == 1 and failed["error"].str.contains("silent").all() and (failed["pair"] == "quiet").all()
    text = (results / "tiny" / "results.md").read_text()
    assert "## Quarantined pairs" in text and "| quiet | 0 |" in text and "silent" in text


def test_repeated_configurations_are_reused_not_rerun(tmp_path, corpus):
    config = tiny_config(tmp_path, corpus, trials=5)
    results = tmp_path / "results"
    args = ["--config", str(config), "--results", str(results), "--quiet", "--set", "search.alpha.enabled=false",
            "--set", "search.beta.enabled=false", "--set", "search.filters.enabled=false",
            "--set", "search.activation.choices=[relu, elu]", "--set", "fixed.filters=16"]
    assert main(args) == 0
    study = load(results, "tiny")
    repeats = [t for t in study.trials if "repeat_of" in t.user_attrs]
    assert repeats, "two choices and five trials must repeat"
    for trial in repeats:
        original = study.trials[trial.user_attrs["repeat_of"]]
        assert trial.params == original.params and trial.state == original.state
        assert trial.values == original.values
    # re-run the best configuration over two seeds: mean ± std in results.md
    assert main(args + ["--report-only", "--reevaluate", "1", "--seeds", "2"]) == 0
    again = pd.read_csv(results / "tiny" / "reevaluate.csv")
    assert list(again["seed"]) == [0, 1] and again["quality_score"].notna().all()
    assert "re-run over 2 seeds" in (results / "tiny" / "results.md").read_text()


def test_pareto_objective_records_two_values_and_never_prunes(tmp_path, corpus):
    config = tiny_config(tmp_path, corpus, objective="pareto", trials=2)
    results = tmp_path / "results"
    assert main(["--config", str(config), "--results", str(results), "--quiet"]) == 0
    trials = pd.read_csv(results / "tiny" / "trials.csv")
    assert list(trials["state"]) == ["COMPLETE", "COMPLETE"]
    assert trials["objective_content_distance"].tolist() == pytest.approx(trials["content_distance"].tolist())
    assert trials["objective_style_distance"].tolist() == pytest.approx(trials["style_distance"].tolist())
    assert_png(results / "tiny" / "history.png")  # the Pareto front
    # resuming with another objective, corpus or fixed setting is refused in one line
    assert main(["--config", str(config), "--results", str(results), "--objective", "quality"]) == 2
    assert main(["--config", str(config), "--results", str(results), "--set", "fixed.iterations=6"]) == 2
    (tmp_path / "one.yaml").write_text(corpus.read_text().split("  - {name: p1")[0])
    assert main(["--config", str(config), "--results", str(results), "--corpus", str(tmp_path / "one.yaml")]) == 2
    assert main(["--config", str(config), "--results", str(results), "--quiet"]) == 0  # the same settings resume


def test_sqlite_storage_url(tmp_path, corpus):
    config = tiny_config(tmp_path, corpus, trials=1)
    url = f"sqlite:///{tmp_path / 'study.db'}"
    assert main(["--config", str(config), "--results", str(tmp_path / "r"), "--storage", url, "--quiet",
                 "--set", "study.paper_rows=false"]) == 0
    study = optuna.load_study(study_name="tiny", storage=url)
    counted = [t for t in study.trials if "discarded" not in t.user_attrs]
    assert len(counted) == 1 and counted[0].state == optuna.trial.TrialState.COMPLETE
    # two workers may both start a trial for the last slot: the later one is discarded, never counted
    assert all(t.user_attrs["discarded"] == "surplus" for t in study.trials if t not in counted)


def test_confirmation_reruns_the_best_distinct_settings_at_full_fidelity_and_leads_the_report(tmp_path, corpus,
                                                                                           capsys):
    config = tiny_config(tmp_path, corpus)
    full = ["--set", "confirm.enabled=true", "--set", "confirm.promote=0.34",  # 0.34 x 6 trials: the best 2
            "--set", "confirm.seeds=2", "--set", "confirm.fixed.clip_seconds=null",
            "--set", "confirm.fixed.iterations=8", "--set", "confirm.fixed.griffin_lim_iters=8",
            "--set", "confirm.fixed.frames=null"]
    results = tmp_path / "results"
    assert main(["--config", str(config), "--results", str(results), "--quiet", *full]) == 0
    assert "then the confirmation at full fidelity, 12 pair-runs" in capsys.readouterr().err  # in the projection
    folder = results / "tiny"
    rows = pd.read_csv(folder / "confirm.csv")
    assert len(rows) == 2 * 2 * 3 and (rows["state"] == "ok").all()
    assert sorted(rows["seed"].unique()) == [0, 1] and set(rows["pair"]) == {"p0", "p1", "p2"}
    assert (rows["iterations"] <= 8).all() and (rows["frames"] > 63).all()  # the whole 1.2 s clip, not 1 s
    trials = pd.read_csv(folder / "trials.csv")
    screen = trials[trials["state"] == "COMPLETE"].sort_values("objective_quality_score")
    assert rows["trial"].iloc[0] == screen["trial"].iloc[0]  # the screen's best is confirmed first
    params = rows.drop_duplicates("trial")[["alpha", "beta", "filters", "activation"]]
    assert len(params.drop_duplicates()) == 2  # distinct settings
    lines = (folder / "results.md").read_text().splitlines()
    assert lines[2] == "## Best at full fidelity" and any(line.startswith("**Best at full fidelity: trial")
                                                         for line in lines[3:8])
    before = (folder / "confirm.csv").read_bytes()
    assert main(["--config", str(config), "--results", str(results), "--quiet", *full]) == 0  # resumes: no rerun
    assert (folder / "confirm.csv").read_bytes() == before


BAD = [
    (["--set", "search.alpah.low=1"], "search.alpah"),
    (["--set", "search.alpha.low=10"], "low (10) must be below high"),
    (["--corpus", "/no/such/corpus.yaml"], "corpus file not found: /no/such/corpus.yaml"),
    (["--storage", "postgresql://user:secret@127.0.0.1:1/db"], "cannot open storage"),
    (["--storage", "nosuch://x"], "unsupported storage URL"),
    (["--set", "confirm.seeds=0"], "confirm.seeds must be >= 1"),
    (["--set", "confirm.promote=0"], "confirm.promote (the share of trials promoted to full fidelity) must be"),
    (["--set", "confirm.promote=1.5"], "between 0 and 1, exclusive, got 1.5"),
    (["--set", "confirm.fixed.iterations=2"], "the screen's iterations (5) is larger than the full fidelity's"),
    (["--set", "confirm.fixed.frames=10"], "the screen's frames (63) is larger than the full fidelity's"),
]


@pytest.mark.parametrize("extra, message", BAD)
def test_bad_input_is_one_line_and_exit_2_before_any_trial(tmp_path, corpus, extra, message):
    config = tiny_config(tmp_path, corpus)
    result = subprocess.run([sys.executable, "sweep.py", "--config", str(config), "--results",
                             str(tmp_path / "r"), *extra], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert "secret" not in result.stderr
    assert not (tmp_path / "r" / "tiny" / "trials.csv").exists()


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp.joinpath("x.wav").write_text("not audio"), "not a readable audio file"),
    (lambda tmp: None, "no such file"),
])
def test_bad_corpus_file_is_one_line_naming_it(tmp_path, corpus, make, message):
    make(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(corpus.read_text() + f"  - {{name: bad, content: {tmp_path / 'x.wav'}, "
                                        f"style: {tmp_path / 'style0.flac'}}}\n")
    result = subprocess.run([sys.executable, "sweep.py", "--config", str(tiny_config(tmp_path, bad)), "--results",
                             str(tmp_path / "r")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr and str(tmp_path / "x.wav") in result.stderr


def test_unwritable_results_folder_and_empty_corpus(tmp_path, corpus):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the results folder should go")
    config = tiny_config(tmp_path, corpus)
    assert main(["--config", str(config), "--results", str(blocker)]) == 2
    empty = tmp_path / "empty.yaml"
    empty.write_text("pairs: []\n")
    assert main(["--config", str(tiny_config(tmp_path, empty)), "--results", str(tmp_path / "r")]) == 2


def test_cached_evaluation_spaces_match_fresh_ones(tmp_path):
    """The sweep builds each pair's evaluation space once, sharing the fixed filters between pairs."""
    import torch

    from musicstyle.data.corpus import pairs_from_yaml
    from musicstyle.engine.metrics import evaluation_space
    from musicstyle.sweep.config import load_settings
    from musicstyle.sweep.objective import PairCache

    pairs = pairs_from_yaml(make_corpus(tmp_path))
    config = load_settings(tiny_config(tmp_path, tmp_path / "corpus.yaml")).base_config()
    cache = PairCache()
    spaces = [cache.space(pair, config, "cpu") for pair in pairs]
    assert spaces[1].filters is spaces[0].filters and cache.space(pairs[1], config, "cpu") is spaces[1]
    for pair, space in zip(pairs, spaces):
        spectrograms = cache.get(pair, config)
        fresh = evaluation_space(spectrograms.content, spectrograms.style, config.n_fft, config.hop)
        assert space.frames == fresh.frames
        assert torch.allclose(space.content_features, fresh.content_features)
        assert torch.allclose(space.style_features, fresh.style_features)


def test_report_only_reads_a_study_whose_auto_precision_was_resolved(tmp_path, corpus):
    """The sweep resolves `precision: auto` once and records what ran; --report-only, which resolves
    nothing, must take the study as it is rather than refuse it as 'other fixed settings'."""
    config = tiny_config(tmp_path, corpus, trials=1)
    results = tmp_path / "results"
    auto = ["--set", "fixed.precision=auto"]
    assert main(["--config", str(config), "--results", str(results), "--quiet", *auto]) == 0
    recorded = load(results, "tiny").user_attrs["fixed"]["precision"]
    assert recorded in ("fp32", "bf16")
    (results / "tiny" / "results.md").unlink()
    assert main(["--config", str(config), "--results", str(results), "--report-only", "--quiet", *auto]) == 0
    assert f"Precision used: {recorded}" in (results / "tiny" / "results.md").read_text()
