"""The database restarts: the throwaway PostgreSQL server is stopped (3 s down) and started again twice
during a 3-worker sweep. Workers wait with backoff, re-run the trial they were running, and the
study ends at exactly N with no finished trial lost or counted twice. With the server down for
longer than `study.storage_retry_seconds` the sweep stops with one line, and a later run finishes.

MUSICSTYLE_FAULT_LOG=FILE appends the measured figures (trials lost, duplicated, recovery times) to
FILE as a markdown table row, for results/faults.md.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from helpers import REPO, counted, make_corpus, tiny_config, wait_for
from musicstyle.util.machine import describe


def sweep(config: Path, results: Path, url: str, study: str, trials: int, workers: int, retry_s: float):
    return subprocess.Popen([sys.executable, "sweep.py", "--config", str(config), "--results", str(results),
                             "--storage", url, "--study", study, "--trials", str(trials), "--workers", str(workers),
                             "--quiet", "--set", f"study.storage_retry_seconds={retry_s}"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=open(results.parent / f"{study}.err", "w"),
                            text=True)


def log(results: Path, study: str) -> str:
    return (results.parent / f"{study}.err").read_text()


def finished(url: str, study: str) -> dict[int, list[float] | None]:
    return {t.number: t.values for t in counted(optuna.load_study(study_name=study, storage=url))}


def record(figures: dict) -> None:
    path = os.environ.get("MUSICSTYLE_FAULT_LOG")
    if path:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True).stdout.strip()
        with open(path, "a") as handle:
            handle.write(f"| {figures.pop('fault')} | {json.dumps(figures)} | {commit} | {describe()} |\n")


@pytest.fixture
def server(postgres_server):
    if postgres_server.pg_ctl is None:
        pytest.skip("MUSICSTYLE_TEST_POSTGRES_URL names an existing server, which this test cannot restart")
    return postgres_server


def test_two_database_restarts_during_a_three_worker_sweep(server, tmp_path):
    config = tiny_config(tmp_path, make_corpus(tmp_path), trials=9, iterations=10)
    process = sweep(config, tmp_path / "r", server.url, "restarts", 9, 3, 120)
    seen: list[dict] = []
    for threshold in (2, 5):
        try:
            wait_for(lambda n=threshold: len(finished(server.url, "restarts")) >= n, process, timeout=150)
        except BaseException:
            print(log(tmp_path / "r", "restarts"), [(t.number, t.state.name, t.user_attrs.get("discarded")) for t in
                  optuna.load_study(study_name="restarts", storage=server.url).trials])
            raise
        seen.append(finished(server.url, "restarts"))
        server.pg_ctl("stop", "-m", "fast")  # every open connection is cut
        time.sleep(3)
        server.pg_ctl("start")
    process.communicate(timeout=600)
    err = log(tmp_path / "r", "restarts")
    assert process.returncode == 0 and "Traceback" not in err, err
    assert "storage is unreachable" in err, err  # the fault reached the workers
    study = optuna.load_study(study_name="restarts", storage=server.url)
    done = counted(study)
    assert len(done) == 9 and len({t.number for t in done}) == 9
    assert not [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]
    final = {t.number: t.values for t in done}
    lost = sum(1 for snapshot in seen for number, values in snapshot.items() if final.get(number) != values)
    assert lost == 0
    rows = [t.user_attrs["paper_row"] for t in done if "paper_row" in t.user_attrs]
    assert len(rows) == len(set(rows)) == 4  # the paper rows once each, none duplicated by a re-run
    interrupted = [t.number for t in study.trials if t.user_attrs.get("discarded") == "interrupted"]
    retried = {t.user_attrs.get("retry_of") for t in study.trials}
    assert set(interrupted) <= retried  # every cut-short trial was queued again
    recovery = [float(s) for s in re.findall(r"storage is back after ([0-9.]+) s", err)]
    record({"fault": "PostgreSQL stopped 3 s and started, twice, 3 workers, 9 trials", "counted": len(done),
            "lost": lost, "duplicated_paper_rows": len(rows) - len(set(rows)), "trials_rerun": len(interrupted),
            "recovery_seconds_max": max(recovery) if recovery else None})


def test_a_database_down_longer_than_the_retry_limit_stops_cleanly(server, tmp_path):
    config = tiny_config(tmp_path, make_corpus(tmp_path), trials=4, iterations=10)
    process = sweep(config, tmp_path / "r", server.url, "outage", 4, 1, 3)
    wait_for(lambda: len(finished(server.url, "outage")) >= 1, process, timeout=300)
    before = finished(server.url, "outage")
    server.pg_ctl("stop", "-m", "fast")
    try:
        process.communicate(timeout=120)
    finally:
        server.pg_ctl("start")
    err = log(tmp_path / "r", "outage")
    assert process.returncode == 2 and "Traceback" not in err, err
    assert "did not come back within 3 s" in err.strip().splitlines()[-1]
    assert {n: v for n, v in finished(server.url, "outage").items() if n in before} == before
    again = sweep(config, tmp_path / "r", server.url, "outage", 4, 1, 3)
    again.communicate(timeout=300)
    assert again.returncode == 0, log(tmp_path / "r", "outage")
    assert len(finished(server.url, "outage")) == 4
