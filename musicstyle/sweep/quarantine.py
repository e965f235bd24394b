"""Quarantine: a pair whose file becomes unreadable during the sweep is taken out of it.

The trial that meets the broken file records that pair's failure (with the reason) in pairs.csv,
quarantines the pair and completes on its remaining pairs; later trials skip it. The study keeps
one user attr per quarantined pair, `quarantine:<pair>` = {"reason", "trial"}, so every worker and
machine sees it and `--report-only` lists it.

Fair ranking: Optuna keeps the values trials were told (earlier trials' means include the pair,
later ones do not). The report re-scores every trial from its stored per-pair rows over the pairs
not quarantined, so all completed trials are compared on the same pairs; the told values stay in
trials.csv as `told_objective_*`. When more than half the pairs are quarantined the sweep stops.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd

from ..errors import MusicStyleError
from ..measures import MEASURES, objective_measures

PREFIX = "quarantine:"
FILE_ERRORS = ("AudioError", "FileNotFoundError", "PermissionError", "OSError", "LibsndfileError")


class TooManyQuarantined(MusicStyleError):
    """More than half the corpus is quarantined: the sweep's comparisons would mean little."""


def is_file_error(row: dict[str, Any]) -> bool:
    """A pair row failed because a file could not be read (not a divergence or another error)."""
    return row.get("status") == "failed" and str(row.get("error", "")).split(":", 1)[0] in FILE_ERRORS


def quarantined(study: optuna.Study) -> dict[str, dict[str, Any]]:
    """Pair name -> {"reason", "trial"} for every quarantined pair of the study."""
    return {k[len(PREFIX):]: v for k, v in study.user_attrs.items() if k.startswith(PREFIX)}


def recorded_before(storage_url: str | None, results_dir: Path, study_name: str) -> set[str]:
    """The pairs an existing study has already quarantined, read before the pre-flight check so that a
    resumed study skips the files it knows are broken instead of stopping on them. Creates nothing: a
    journal that does not exist yet, or a storage without this study, gives the empty set."""
    from .storage import journal_path, open_storage

    if storage_url is None or storage_url.startswith("journal:"):
        path = journal_path(results_dir) if storage_url is None else Path(storage_url[len("journal:"):]).expanduser()
        if not path.exists() or path.stat().st_size == 0:
            return set()
    storage = open_storage(storage_url, results_dir)
    if study_name not in {s.study_name for s in storage.get_all_studies()}:
        return set()
    return set(quarantined(optuna.load_study(study_name=study_name, storage=storage)))


def quarantine(study: optuna.Study, pair: str, reason: str, trial: int) -> None:
    """Record `pair` as quarantined (first report wins; a second worker's is the same fact)."""
    if PREFIX + pair not in study.user_attrs:
        study.set_user_attr(PREFIX + pair, {"reason": reason[:300], "trial": trial})


def stop_if_too_many(study: optuna.Study, pair_names: list[str]) -> None:
    """TooManyQuarantined (one line naming them) when more than half the pairs are quarantined."""
    gone = sorted(set(quarantined(study)) & set(pair_names))
    if 2 * len(gone) > len(pair_names):
        raise TooManyQuarantined(
            f"stopping: {len(gone)} of {len(pair_names)} pairs are quarantined (unreadable files: "
            + "; ".join(f"{name}: {quarantined(study)[name]['reason']}" for name in gone)[:600]
            + "); check the corpus's storage, then start a new --study")


def rescore(frame: pd.DataFrame, trials: list[Any], gone: set[str], objective: str) -> pd.DataFrame:
    """The trial table with measures and objective values re-computed over the pairs not in `gone`,
    from each trial's stored pair rows; the told values are kept as `told_objective_*`."""
    if not gone or frame.empty:
        return frame
    frame = frame.copy()
    by_number = {t.number: t for t in trials}
    names = objective_measures(objective)
    for name in names:
        frame[f"told_objective_{name}"] = frame[f"objective_{name}"]
    scored = []
    for index, number in frame["trial"].items():
        rows = [r for r in by_number[number].user_attrs.get("pairs", [])
                if r.get("status") == "ok" and r.get("pair") not in gone]
        scored.append(len(rows))
        for key in MEASURES:
            values = [r[key] for r in rows if r.get(key) is not None]
            if key in frame:
                frame.loc[index, key] = float(np.mean(values)) if values else None
        for name in names:
            if frame.loc[index, "state"] == "COMPLETE":
                values = [r[name] for r in rows if r.get(name) is not None]
                frame.loc[index, f"objective_{name}"] = float(np.mean(values)) if values else None
    frame["pairs_scored"] = scored
    return frame


def markdown(study: optuna.Study, n_pairs: int) -> list[str]:
    """The results.md section listing quarantined pairs (empty when none)."""
    gone = quarantined(study)
    if not gone:
        return []
    lines = ["## Quarantined pairs", "",
             f"{len(gone)} of {n_pairs} pairs became unreadable during the sweep and were skipped from the trial "
             "named on; every trial below is re-scored over the remaining pairs from its stored per-pair values "
             "(the values Optuna was told are in trials.csv as `told_objective_*`).", "",
             "| pair | quarantined by trial | reason |", "|---|---|---|"]
    lines += [f"| {name} | {info.get('trial')} | {str(info.get('reason', '')).replace('|', '/')} |"
              for name, info in sorted(gone.items())]
    return lines + [""]
