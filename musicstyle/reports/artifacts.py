"""Optuna artifacts: each best trial's WAVs and spectrogram PNGs, so optuna-dashboard plays and shows them.

The files are stored in `results/<study>/artifacts/` (Optuna's FileSystemArtifactStore); open the
dashboard with `optuna-dashboard results/<study>/study.journal --artifact-dir results/<study>/artifacts`.
"""

from __future__ import annotations

import mimetypes
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta, upload_artifact
from optuna.trial import FrozenTrial

ARTIFACTS = "artifacts"


def _trial(study: optuna.Study, trial: int | FrozenTrial | optuna.Trial) -> FrozenTrial | optuna.Trial:
    if not isinstance(trial, int):
        return trial
    found = [t for t in study.get_trials(deepcopy=False) if t.number == trial]
    if not found:
        raise ValueError(f"study {study.study_name!r} has no trial {trial}")
    return found[0]


def attach_artifacts(study: optuna.Study, trial: int | FrozenTrial | optuna.Trial, files: Iterable[str | Path],
                     artifact_dir: str | Path) -> list[str]:
    """Upload `files` as artifacts of `trial` (a number, a FrozenTrial or a running Trial) into the store
    at `artifact_dir`, through Optuna's public `upload_artifact`.

    Optuna attaches artifacts to a trial only while it runs (the running `optuna.Trial` this process
    asked for: the sweep attaches a new best trial's files before it tells the result); any other trial's
    files become artifacts of the study, named `trial_NNNN_<file>` (the dashboard lists and plays them on
    the study's page). A name already attached is skipped, so calling again adds nothing twice. Returns
    the new ids.
    """
    target = _trial(study, trial)
    running = isinstance(target, optuna.Trial)
    owner: Any = target if running else study
    prefix = "" if running else f"trial_{target.number:04d}_"
    Path(artifact_dir).mkdir(parents=True, exist_ok=True)
    store = FileSystemArtifactStore(str(artifact_dir))
    have = {meta.filename for meta in get_all_artifact_meta(owner)}
    ids = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in map(Path, files):
            name = prefix + path.name
            if name in have:
                continue
            if prefix:  # the artifact's name is its file's name
                shutil.copyfile(path, Path(tmp) / name)
                path = Path(tmp) / name
            mimetype = "audio/wav" if path.suffix == ".wav" else mimetypes.guess_type(path.name)[0]
            ids.append(upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=owner,
                                       mimetype=mimetype))
            have.add(name)
    return ids


def spectrogram_pngs(folder: Path, sample_rate_hz: int, hop: int, title: str) -> list[Path]:
    """One PNG per pair (content, style, output panels) from `folder/spectrograms.npz`, beside it."""
    from .common import plot_spectrograms

    archive = folder / "spectrograms.npz"
    if not archive.exists():
        return []
    with np.load(archive) as data:
        specs = {name: data[name].astype(np.float32) for name in data.files}
    paths = []
    for pair in sorted({name.split("/")[0] for name in specs}):
        path = folder / f"{pair}_spectrograms.png"
        if not path.exists():
            roles = [r for r in ("content", "style", "target", "output") if f"{pair}/{r}" in specs]
            plot_spectrograms({f"{pair}: {r}": specs[f"{pair}/{r}"] for r in roles}, path, sample_rate_hz, hop,
                              title=f"{title}, pair {pair}")
        paths.append(path)
    return paths


def attach_best_artifacts(study: optuna.Study, results_dir: str | Path) -> int:
    """Attach every `best/trial_NNNN/` folder's WAVs and per-pair spectrogram PNGs (see `attach_artifacts`:
    finished trials' files go to the study, named by trial).

    Returns how many files were newly attached.
    """
    results_dir = Path(results_dir)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    added = 0
    for folder in sorted((results_dir / "best").glob("trial_*")):
        trial = trials.get(int(folder.name.split("_")[1]))
        if trial is None:
            continue
        wavs = sorted(folder.glob("*.wav"))
        config = trial.user_attrs.get("config", {})
        pngs = []
        if wavs and "hop" in config:
            import soundfile as sf

            pngs = spectrogram_pngs(folder, sf.info(str(wavs[0])).samplerate, int(config["hop"]),
                                    f"trial {trial.number}")
        added += len(attach_artifacts(study, trial, [*wavs, *pngs], results_dir / ARTIFACTS))
    return added
