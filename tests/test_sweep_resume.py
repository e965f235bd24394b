"""Resume: Ctrl-C and kill -9 in the middle of a sweep, then a restart ends at exactly N trials."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from helpers import REPO, counted, load, make_corpus, tiny_config, wait_for
from musicstyle.sweep.cli import main


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return make_corpus(tmp_path)


def run_sweep(config: Path, results: Path, trials: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "sweep.py", "--config", str(config), "--results", str(results),
                             "--trials", str(trials), "--workers", "1"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_resume_after_ctrl_c_keeps_finished_trials_and_ends_at_exactly_n(tmp_path, corpus):
    config = tiny_config(tmp_path, corpus, iterations=30)
    results = tmp_path / "results"
    process = run_sweep(config, results, 5)
    wait_for(lambda: len(counted(load(results, "tiny"))) >= 2, process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    before = {t.number: t.values for t in counted(load(results, "tiny"))}
    assert 2 <= len(before) < 5
    assert (results / "tiny" / "results.md").exists()  # the report is written after Ctrl-C
    assert main(["--config", str(config), "--results", str(results), "--trials", "5", "--quiet"]) == 0
    study = load(results, "tiny")
    after = counted(study)
    assert len(after) == 5
    assert {t.number: t.values for t in after if t.number in before} == before
    for trial in study.get_trials():
        if trial.user_attrs.get("discarded") == "interrupted":  # the trial Ctrl-C stopped was run again
            assert any(t.user_attrs.get("retry_of") == trial.number for t in after)
    # asking for the same total again runs nothing more
    assert main(["--config", str(config), "--results", str(results), "--trials", "5", "--quiet"]) == 0
    assert len(counted(load(results, "tiny"))) == 5


def test_trial_of_a_killed_process_is_failed_and_rerun(tmp_path, corpus):
    config = tiny_config(tmp_path, corpus, iterations=30)
    results = tmp_path / "results"
    process = run_sweep(config, results, 4)

    def running_with_worker() -> bool:
        return any(t.state == optuna.trial.TrialState.RUNNING and "worker" in t.user_attrs
                   for t in load(results, "tiny").get_trials())

    wait_for(running_with_worker, process)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    killed = [t for t in load(results, "tiny").get_trials() if t.state == optuna.trial.TrialState.RUNNING]
    assert len(killed) == 1
    assert main(["--config", str(config), "--results", str(results), "--trials", "4", "--quiet"]) == 0
    study = load(results, "tiny")
    stale = study.trials[killed[0].number]
    assert stale.state == optuna.trial.TrialState.FAIL and stale.user_attrs["discarded"] == "stale"
    retry = [t for t in study.trials if t.user_attrs.get("retry_of") == stale.number]
    # killed before, while or after suggesting: the retry is queued with what was fixed and suggested
    wanted = stale.system_attrs.get("fixed_params", {}) | stale.params
    assert len(retry) == 1 and retry[0].state.is_finished()
    assert retry[0].system_attrs["fixed_params"] == wanted
    assert {k: v for k, v in retry[0].params.items() if k in wanted} == {k: wanted[k] for k in retry[0].params
                                                                          if k in wanted}
    assert len(counted(study)) == 4
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]


def test_two_workers_share_the_study_and_stop_at_exactly_n(tmp_path, corpus):
    config = tiny_config(tmp_path, corpus, trials=6, iterations=30)  # trials long enough for both to start
    results = tmp_path / "results"
    assert main(["--config", str(config), "--results", str(results), "--workers", "2", "--quiet"]) == 0
    study = load(results, "tiny")
    assert len(counted(study)) == 6
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    pids = {t.user_attrs["worker"]["pid"] for t in study.trials if "worker" in t.user_attrs}
    assert len(pids) == 2 and os.getpid() not in pids  # both spawned processes ran trials
    assert [t.user_attrs.get("paper_row") for t in study.trials[:4]] == [
        "base paper (ReLU)", "blog LeakyReLU", "blog ELU", "blog SELU"]
