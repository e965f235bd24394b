"""Best trials' audio as Optuna artifacts, listed and served by optuna-dashboard on a loopback port."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import optuna
import pytest
import soundfile as sf
from optuna.storages.journal import JournalFileBackend, JournalStorage

from musicstyle.reports.artifacts import attach_artifacts, attach_best_artifacts

DASHBOARD = shutil.which("optuna-dashboard") or str(Path(sys.executable).parent / "optuna-dashboard")


def make_results(folder: Path) -> optuna.Study:
    """A three-trial study in a journal file, with best/trial_NNNN/ outputs for trials 0 and 2."""
    storage = JournalStorage(JournalFileBackend(str(folder / "study.journal")))
    study = optuna.create_study(study_name="dash", storage=storage)
    rng = np.random.default_rng(0)
    for value in (0.8, 0.9, 0.5):
        trial = study.ask()
        trial.suggest_float("alpha", 1e-3, 1.0, log=True)
        trial.set_user_attr("config", {"hop": 64, "sample_rate_hz": 8000})
        if trial.number == 1:  # a running trial takes artifacts of its own
            sf.write(folder / "live.wav", np.zeros(800, np.float32), 8000)
            assert len(attach_artifacts(study, trial, [folder / "live.wav"], folder / "artifacts")) == 1
        study.tell(trial, value)
    for number in (0, 2):
        best = folder / "best" / f"trial_{number:04d}"
        best.mkdir(parents=True)
        sf.write(best / "calm.wav", (0.1 * rng.standard_normal(8000)).astype(np.float32), 8000)
        specs = {f"calm/{role}": rng.random((33, 125)).astype(np.float16) for role in ("content", "style", "output")}
        np.savez_compressed(best / "spectrograms.npz", **specs)
    return study


STUDY_FILES = ["trial_0000_calm.wav", "trial_0000_calm_spectrograms.png", "trial_0002_calm.wav",
               "trial_0002_calm_spectrograms.png"]


def test_attach_is_idempotent(tmp_path: Path) -> None:
    study = make_results(tmp_path)
    assert attach_best_artifacts(study, tmp_path) == 4  # a WAV and a PNG for each of two finished trials
    assert attach_best_artifacts(study, tmp_path) == 0
    metas = optuna.artifacts.get_all_artifact_meta(study)
    assert sorted(m.filename for m in metas) == STUDY_FILES
    assert {m.mimetype for m in metas} == {"audio/wav", "image/png"}
    live = optuna.artifacts.get_all_artifact_meta(study.trials[1], storage=study._storage)
    assert [m.filename for m in live] == ["live.wav"]
    with pytest.raises(ValueError, match="no trial 7"):
        attach_artifacts(study, 7, [], tmp_path / "artifacts")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_dashboard_lists_trials_and_artifacts(tmp_path: Path) -> None:
    if not Path(DASHBOARD).exists():
        pytest.skip("optuna-dashboard is not installed (it is in requirements.txt)")
    study = make_results(tmp_path)
    attach_best_artifacts(study, tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([DASHBOARD, str(tmp_path / "study.journal"), "--artifact-dir",
                               str(tmp_path / "artifacts"), "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                studies = get_json(f"{base}/api/studies")["study_summaries"]
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"dashboard did not start: {server.stderr.read().decode()[-500:]}") from None
                time.sleep(0.3)
        assert [s["study_name"] for s in studies] == ["dash"]
        detail = get_json(f"{base}/api/studies/{studies[0]['study_id']}")
        trials = {t["number"]: t for t in detail["trials"]}
        assert sorted(trials) == [0, 1, 2]
        assert [a["filename"] for a in trials[1]["artifacts"]] == ["live.wav"]
        assert sorted(a["filename"] for a in detail["artifacts"]) == STUDY_FILES
        wav = next(a for a in detail["artifacts"] if a["filename"] == "trial_0002_calm.wav")
        with urllib.request.urlopen(f"{base}/artifacts/{studies[0]['study_id']}/{wav['artifact_id']}",
                                    timeout=5) as response:
            assert response.headers["Content-Type"] == "audio/wav" and response.read(4) == b"RIFF"
    finally:
        server.terminate()
        server.wait(timeout=10)
