"""Faults a long sweep must survive: several worker processes on PostgreSQL, kill -9, files that
break after the pre-flight check, diverging losses, and bad storage. Each test says what it injects.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import soundfile as sf

import musicstyle.data.corpus
from helpers import REPO, counted, load, make_corpus, tiny_config, wait_for
from musicstyle.sweep.cli import main


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return make_corpus(tmp_path)


def sweep_process(config: Path, results: Path, storage: str, study: str, trials: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "sweep.py", "--config", str(config), "--results", str(results),
                             "--storage", storage, "--study", study, "--trials", str(trials), "--workers", "1",
                             "--quiet"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_three_workers_on_postgresql_end_at_exactly_n(postgres_url, tmp_path, corpus):
    """Three sweep.py processes at once share one PostgreSQL study: none lost, none duplicated."""
    config = tiny_config(tmp_path, corpus, trials=9, iterations=30)
    workers = [sweep_process(config, tmp_path / f"r{i}", postgres_url, "three", 9) for i in range(3)]
    errors = []
    for process in workers:
        _, err = process.communicate(timeout=600)
        errors.append(err)
        assert process.returncode == 0, err
        assert "Traceback" not in err
    study = optuna.load_study(study_name="three", storage=postgres_url)
    done = counted(study)
    states = [(t.number, t.state.name, t.user_attrs.get("discarded")) for t in study.trials]
    assert len(done) == 9, (states, errors)
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    assert len({t.number for t in done}) == 9
    pids = {t.user_attrs["worker"]["pid"] for t in done if "worker" in t.user_attrs}
    assert len(pids) == 3, (states, errors)  # every process ran trials
    rows = [t.user_attrs.get("paper_row") for t in done if t.user_attrs.get("paper_row")]
    assert sorted(rows) == sorted(["base paper (ReLU)", "blog LeakyReLU", "blog ELU", "blog SELU"])  # once each
    # the report built from the database matches the trials
    report = subprocess.run([sys.executable, "sweep.py", "--config", str(config), "--results", str(tmp_path / "rep"),
                             "--storage", postgres_url, "--study", "three", "--report-only", "--quiet"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    table = pd.read_csv(tmp_path / "rep" / "three" / "trials.csv")
    counted_rows = table[table["discarded"].isna()]
    assert sorted(counted_rows["trial"]) == sorted(t.number for t in done)
    by_number = {t.number: t for t in done}
    for _, row in counted_rows.iterrows():
        trial = by_number[row["trial"]]
        assert row["state"] == trial.state.name
        if trial.state == optuna.trial.TrialState.COMPLETE:
            assert row["objective_quality_score"] == pytest.approx(trial.value)
    pairs = pd.read_csv(tmp_path / "rep" / "three" / "pairs.csv")
    assert set(pairs["trial"]) <= set(table["trial"])


def test_sigkill_on_postgresql_trial_is_failed_and_rerun(postgres_url, tmp_path, corpus):
    """A worker killed with SIGKILL mid-trial: on restart its trial is failed and re-run; the study ends at N."""
    config = tiny_config(tmp_path, corpus, iterations=30)
    process = sweep_process(config, tmp_path / "r", postgres_url, "killed", 4)

    def running() -> bool:
        trials = optuna.load_study(study_name="killed", storage=postgres_url).get_trials()
        return any(t.state == optuna.trial.TrialState.RUNNING and "worker" in t.user_attrs for t in trials)

    wait_for(running, process, timeout=120)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    before = optuna.load_study(study_name="killed", storage=postgres_url)
    finished_before = {t.number: t.values for t in counted(before)}
    killed = [t.number for t in before.trials if t.state == optuna.trial.TrialState.RUNNING]
    assert len(killed) == 1
    assert main(["--config", str(config), "--results", str(tmp_path / "r"), "--storage", postgres_url,
                 "--study", "killed", "--trials", "4", "--quiet"]) == 0
    study = optuna.load_study(study_name="killed", storage=postgres_url)
    assert study.trials[killed[0]].state == optuna.trial.TrialState.FAIL
    assert [t for t in study.trials if t.user_attrs.get("retry_of") == killed[0]]
    assert len(counted(study)) == 4
    assert {t.number: t.values for t in counted(study) if t.number in finished_before} == finished_before


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:200])


BREAKAGES = {
    "missing": lambda path: path.unlink(),
    "empty": lambda path: path.write_bytes(b""),
    "truncated": _truncate,
    "not audio": lambda path: path.write_bytes(np.random.default_rng(0).bytes(4000)),
}


def break_after_preflight(monkeypatch, victims: list[Path], kind: str) -> None:
    """The pre-flight check passes, then the `victims` break (as a network share dropping mid-sweep)."""
    checked = musicstyle.data.corpus.preflight

    def preflight_then_break(*args, **kwargs):
        result = checked(*args, **kwargs)
        for victim in victims:
            BREAKAGES[kind](victim)
        return result

    monkeypatch.setattr(musicstyle.data.corpus, "preflight", preflight_then_break)


@pytest.mark.parametrize("kind", list(BREAKAGES))
def test_a_file_breaking_mid_sweep_quarantines_its_pair_and_the_sweep_goes_on(tmp_path, corpus, monkeypatch, kind):
    """A corpus file breaks after the pre-flight check: the first trial that meets it records the pair's
    failure with the file named, quarantines the pair (study attr with reason and trial number) and
    completes on its other pairs; later trials skip the pair; results.md lists it at the top."""
    victim = tmp_path / "content1.wav"
    break_after_preflight(monkeypatch, [victim], kind)
    config = tiny_config(tmp_path, corpus, trials=3)
    results = tmp_path / "results"
    assert main(["--config", str(config), "--results", str(results), "--quiet", "--workers", "1",
                 "--set", "study.paper_rows=false", "--set", "study.prune=false"]) == 0
    trials = pd.read_csv(results / "tiny" / "trials.csv")
    assert len(trials) == 3 and (trials["state"] == "COMPLETE").all()
    assert (trials["pairs_scored"] == 2).all()  # every trial ranked on the same two pairs
    pairs = pd.read_csv(results / "tiny" / "pairs.csv")
    broken = pairs[pairs["pair"] == "p1"]
    assert len(broken) == 1 and broken["status"].iloc[0] == "failed"  # met once, then skipped
    assert str(victim) in broken["error"].iloc[0]
    assert (pairs[pairs["pair"] != "p1"]["status"] == "ok").all() and len(pairs) == 1 + 3 * 2
    study = load(results, "tiny")
    record = study.user_attrs["quarantine:p1"]
    assert record["trial"] == int(broken["trial"].iloc[0]) and str(victim) in record["reason"]
    report = (results / "tiny" / "results.md").read_text().splitlines()
    assert report[2] == "## Quarantined pairs" and any(line.startswith("| p1 |") for line in report[:12])
    monkeypatch.undo()  # the file stays broken on disk: a resumed study skips it instead of stopping on it
    assert main(["--config", str(config), "--results", str(results), "--quiet", "--workers", "1", "--trials", "5",
                 "--set", "study.paper_rows=false", "--set", "study.prune=false"]) == 0
    resumed = pd.read_csv(results / "tiny" / "pairs.csv")
    assert len(counted(load(results, "tiny"))) == 5 and len(resumed) == 1 + 5 * 2


def test_more_than_half_the_pairs_gone_stops_the_sweep(tmp_path, corpus, monkeypatch, capsys):
    break_after_preflight(monkeypatch, [tmp_path / "content1.wav", tmp_path / "style2.flac"], "missing")
    config = tiny_config(tmp_path, corpus, trials=4)
    results = tmp_path / "results"
    assert main(["--config", str(config), "--results", str(results), "--quiet", "--workers", "1",
                 "--set", "study.paper_rows=false", "--set", "study.prune=false"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "stopping: 2 of 3 pairs are quarantined" in err[-1] and "Traceback" not in "".join(err)
    assert len(counted(load(results, "tiny"))) < 4
    assert "## Quarantined pairs" in (results / "tiny" / "results.md").read_text()


def test_rescoring_compares_trials_on_the_pairs_they_share():
    """Trial 0 ran both pairs (the later-quarantined p1 scored badly); trial 1 ran p0 only. Told values
    favour trial 1; re-scored on p0 alone, trial 0 is better."""
    from types import SimpleNamespace

    from musicstyle.sweep.quarantine import rescore

    rows = [[{"pair": "p0", "status": "ok", "quality_score": 1.0}, {"pair": "p1", "status": "ok",
             "quality_score": 99.0}], [{"pair": "p0", "status": "ok", "quality_score": 2.0}]]
    trials = [SimpleNamespace(number=i, user_attrs={"pairs": r}) for i, r in enumerate(rows)]
    frame = pd.DataFrame({"trial": [0, 1], "state": ["COMPLETE"] * 2, "objective_quality_score": [50.0, 2.0],
                          "quality_score": [50.0, 2.0]})
    scored = rescore(frame, trials, {"p1"}, "quality")
    assert list(scored["objective_quality_score"]) == [1.0, 2.0]
    assert list(scored["told_objective_quality_score"]) == [50.0, 2.0] and list(scored["pairs_scored"]) == [1, 1]


def test_diverging_losses_fail_the_trial_with_the_reason(tmp_path, corpus):
    """An absurd Adam learning rate makes the loss infinite: each trial fails (or is pruned), with the reason."""
    config = tiny_config(tmp_path, corpus, trials=3)
    results = tmp_path / "results"
    assert main(["--config", str(config), "--results", str(results), "--quiet", "--workers", "1",
                 "--set", "study.paper_rows=false", "--set", "fixed.optimizer=adam",
                 "--set", "search.lr.low=1e25", "--set", "search.lr.high=1e30"]) == 0
    trials = pd.read_csv(results / "tiny" / "trials.csv")
    assert len(trials) == 3 and trials["state"].isin(["FAIL", "PRUNED"]).all()
    assert trials["reason"].str.contains("loss became").all()


@pytest.mark.parametrize("storage, message", [
    ("postgresql://postgres@127.0.0.1:9/nodb", "cannot open storage"),  # nothing listens on port 9
    ("postgressql://postgres@127.0.0.1/db", "unsupported storage URL"),  # a typo in the scheme
])
def test_bad_storage_is_one_line_before_any_trial(tmp_path, corpus, storage, message):
    config = tiny_config(tmp_path, corpus)
    done = subprocess.run([sys.executable, "sweep.py", "--config", str(config), "--results", str(tmp_path / "r"),
                           "--storage", storage], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_unwritable_results_folder_is_one_line(tmp_path, corpus):
    if os.geteuid() == 0:
        target = Path("/proc/musicstyle-results")  # root may write anywhere on disk; /proc refuses everyone
    else:
        target = tmp_path / "locked" / "r"
        target.parent.mkdir()
        target.parent.chmod(0o500)
    done = subprocess.run([sys.executable, "sweep.py", "--config", str(tiny_config(tmp_path, corpus)),
                           "--results", str(target)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and str(target) in done.stderr


def test_random_bytes_to_transfer_never_traceback(tmp_path):
    """Random bytes under audio names, a zero-length file and a huge offset, fed to `transfer`."""
    rng = np.random.default_rng(7)
    good = tmp_path / "good.wav"
    sf.write(good, (0.1 * rng.standard_normal(16000)).astype(np.float32), 8000)
    cases = []
    for suffix in (".wav", ".mp3", ".ogg", ".flac", ".opus"):
        junk = tmp_path / f"junk{suffix}"
        junk.write_bytes(rng.bytes(int(rng.integers(1, 50_000))))
        cases.append([junk, good])
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    cases += [[good, empty], [good, good, "--offset-seconds", "1e12"], [good, good, "--offset-seconds", "nan"]]
    for args in cases:
        out = tmp_path / "out.wav"
        done = subprocess.run([sys.executable, "-m", "musicstyle", "transfer", *map(str, args[:2]), "--out", str(out),
                               "--sample-rate", "8000", "--n-fft", "256", "--hop", "64", "--filters", "16",
                               "--iterations", "2", "--griffin-lim-iters", "1", *args[2:]],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, (args, done.stderr)
        assert "Traceback" not in done.stderr and done.stderr.strip().startswith("error:"), (args, done.stderr)
        assert not out.exists()
