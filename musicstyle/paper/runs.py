"""Reproduce and extend the paper's comparison (559 vs 81.79) on the base paper's two songs: the runs.

Groups of runs, all on the same pair with the base paper's settings unless a run says otherwise:

- rows:      the table's four rows as printed (base paper's L-BFGS, gain sqrt(2), LeakyReLU slope 0.3);
- ablation:  every activation at both weight settings, so activation and weights are separated;
- converged: every such cell again with L-BFGS left to stop on its own tolerance (at most
             `converge_iterations`), so "does not reproduce" does not hang on a 300-iteration budget;
- limit:     every cell with infinitely many filters (`--filters inf`, engine/limit/kernels.py; docs/limit.md);
- search / finalists: the joint search for one setup behind the blog's three rows (paper/search.py).

Every run also gets the fair measures (`engine/metrics.py`), which do not depend on the run's weights, and
its record names the machine, device, precision really used, code version and invocation.
Results go to `runs.csv` after each run (a restart skips what is done); paper/report.py writes the report.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import campaign
from ..config import PAPER_ACTIVATIONS, TransferConfig
from ..data.paper_songs import BASE_ROW, CONTENT_SONG, PAPER_ROWS, STYLE_SONG, paper_song_paths
from ..engine.transfer import load_pair, run_transfer
from ..errors import MusicStyleError
from ..reports.listening import write_ogg
from ..util.io import atomic_path, write_csv
from ..util.machine import code_version, describe
from ..util.names import slug

AUDIO = "audio"  # the folder of kept runs' audio, beside runs.csv
ACTIVATIONS = PAPER_ACTIVATIONS
WEIGHTS = {"paper (alpha 1e-2, beta 1)": (1e-2, 1.0), "blog (alpha 1e-3, beta 10)": (1e-3, 10.0)}
BLOG_LEAKY = PAPER_ROWS[1]
CONVERGE_ITERATIONS = 3000  # the converged group's L-BFGS cap; it normally stops on its tolerance first
RECORDED = ("activation", "alpha", "beta", "optimizer", "lr", "init_gain", "leaky_slope", "iterations", "filters",
            "pooling", "precision", "init", "kernel_width", "griffin_lim_iters")


def invocation_id() -> str:
    """One id per command: UTC start time and process id, written into every row that command adds."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{os.getpid()}"


@dataclass(frozen=True)
class Run:
    """One optimisation: which group and label it reports under, its settings and seed.

    `notes` are extra columns for its record (a search setup's normalisation, say), not settings.
    """

    group: str
    label: str
    row: str  # the paper row it varies, or "" for ablation cells
    settings: dict[str, Any] = field(hash=False)
    seed: int = 0
    keep_audio: bool = field(default=False, compare=False)  # write its output under audio/ (paper/listen.py)
    notes: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def run_id(self) -> str:
        return f"{self.group}|{self.label}|{self.row}|seed{self.seed}"


def cells() -> list[tuple[str, str, dict[str, Any]]]:
    """(activation, weights name, settings) of the 4 x 2 ablation cells."""
    return [(activation, name, {"activation": activation, "alpha": alpha, "beta": beta})
            for name, (alpha, beta) in WEIGHTS.items() for activation in ACTIVATIONS]


def plan_runs(seeds: int, limit_seeds: int = 1, converged_seeds: int = 1, quick: bool = False,
              converge_iterations: int = CONVERGE_ITERATIONS, limit_activations: tuple[str, ...] = ACTIVATIONS
              ) -> list[Run]:
    """The comparison's runs: rows and ablation over `seeds` seeds, converged and limit cells over theirs
    (the limit only for `limit_activations`)."""
    runs: list[Run] = []
    for row in PAPER_ROWS:
        runs += [Run("rows", row.name, row.name, row.settings, s, keep_audio=s == 0) for s in range(seeds)]
    for activation, name, settings in cells():
        if any(r.settings | {"lr": 0} == settings | {"lr": 0} for r in PAPER_ROWS):
            continue  # this cell is one of the rows: the report reuses those runs
        runs += [Run("ablation", f"{activation} @ {name}", "", settings, s) for s in range(seeds)]
    for activation, name, settings in cells():
        converged = settings | {"optimizer": "lbfgs", "iterations": converge_iterations}
        runs += [Run("converged", f"{activation} @ {name}", "", converged, s) for s in range(converged_seeds)]
    for activation, name, settings in cells():  # every cell in the infinite-filter limit (engine/limit/kernels.py)
        if activation not in limit_activations:
            continue
        runs += [Run("limit", f"{activation} @ {name}, filters inf", "", settings | {"filters": math.inf}, s,
                     keep_audio=s == 0) for s in range(limit_seeds)]  # beside the 4096-filter rows' audio
    if quick:  # the four rows once and one cell of each other group: a smoke test of the whole report
        firsts = [next(r for r in runs if r.group == g) for g in ("ablation", "converged", "limit")]
        runs = [r for r in runs if (r.group == "rows" and r.seed == 0) or r in firsts]
    return runs


def keep_audio(out_dir: Path, run: Run, audio: np.ndarray, spectrogram: np.ndarray, sample_rate_hz: int) -> str:
    """Write a run's output as OGG and its (bins, frames) log-magnitude as .npz; the OGG's path relative
    to `out_dir`."""
    name = f"{AUDIO}/{slug(run.row if run.group in ('rows', 'listen') else f'{run.label} {run.row}')}_seed{run.seed}"
    write_ogg(out_dir / f"{name}.ogg", audio, sample_rate_hz)
    with atomic_path(out_dir / f"{name}.npz") as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, output=spectrogram.astype(np.float16))
    return f"{name}.ogg"


def run_one(run: Run, pair, base: TransferConfig, out_dir: Path, invocation: str = "",
            progress: Callable[[int, int, float], None] | None = None) -> dict[str, Any]:
    """Run one optimisation; a failure becomes a row with its reason, not an exception.

    The record carries the machine, device, precision really used, code version and `invocation`.
    The base row's first seed also keeps its audio and a spectrogram figure in `out_dir`.
    """
    config = base.replace(**run.settings, seed=run.seed)
    record: dict[str, Any] = {"run_id": run.run_id, "group": run.group, "label": run.label, "row": run.row,
                              "seed": run.seed, **{k: getattr(config, k) for k in RECORDED}, **run.notes,
                              "frames": int(pair.content.shape[1]), "machine": describe(config.device),
                              "code_version": code_version(), "invocation": invocation}
    start = time.perf_counter()
    try:
        result = run_transfer(pair, config, progress=progress)
    except MusicStyleError as err:
        return record | {"state": "failed", "reason": str(err), "seconds": time.perf_counter() - start}
    if run.group == "rows" and run.row == BASE_ROW.name and run.seed == 0:
        from ..engine.audio import write_wav
        from ..reports.common import plot_spectrograms

        write_wav(out_dir / "base_row.wav", result.audio, config.sample_rate_hz)
        plot_spectrograms({f"content ({CONTENT_SONG})": pair.content, f"style ({STYLE_SONG})": pair.style,
                           f"result (base row, seed 0, final loss {result.optimization.final_loss:.1f})":
                           result.optimization.spectrogram},
                          out_dir / "base_row_spectrograms.png", config.sample_rate_hz, config.hop,
                          title="Base paper's settings on its two songs")
    if run.keep_audio:
        record["audio"] = keep_audio(out_dir, run, result.audio, result.optimization.spectrogram,
                                     config.sample_rate_hz)
    summary = result.summary()
    summary.pop("config")
    summary["iterations_done"] = summary.pop("iterations")
    summary["abnormal_stop"] = "ABNORMAL" in str(summary["stop_reason"]).upper()
    return record | summary | {"state": "ok", "reason": "", "seconds": time.perf_counter() - start}


def same_run(runs: pd.DataFrame, config: TransferConfig, frames: int | None = None) -> dict[str, Any] | None:
    """A finished run of the comparison (runs.csv) with exactly this config and seed, to reuse rather than
    repeat (a reading such as 'as printed' is a row the comparison has run). L-BFGS ignores `lr`."""
    if runs.empty or "state" not in runs:
        return None
    ok = runs[(runs["state"] == "ok") & (runs["seed"] == config.seed)]
    if frames is not None:
        ok = ok[ok["frames"] == frames]
    for name in RECORDED:
        if name == "lr" and config.optimizer == "lbfgs":
            continue
        value = getattr(config, name)
        close = (ok[name] - value).abs() <= 1e-12 * abs(value) if isinstance(value, float) else ok[name] == value
        ok = ok[close]
    return ok.iloc[0].to_dict() if len(ok) else None


_worker: dict[str, Any] = {}  # each process loads the pair once: what run_in_process reads


def _load_pair(paper_dir: str, base: TransferConfig) -> None:
    _worker["pair"] = load_pair(*paper_song_paths(paper_dir), base)


def run_in_process(run: Run, base: TransferConfig, out_dir: Path, invocation: str) -> dict[str, Any]:
    return run_one(run, _worker["pair"], base, out_dir, invocation)


def run_all(paper_dir: str | Path, out_dir: str | Path, base: TransferConfig, runs: list[Run],
            workers: int = 1, invocation: str = "", csv_name: str = "runs.csv",
            reusable: pd.DataFrame | None = None) -> pd.DataFrame:
    """Run what `csv_name` in `out_dir` does not have yet (musicstyle.campaign), saving after each run;
    return all rows. A recorded run, failed or not, is not run again.

    A run made before with the same config and seed, in `csv_name` or in `reusable` (the search's
    finished rows), is taken rather than repeated (`reused_from` names it).

    With `workers` > 1 the runs go to that many processes (each with cores / workers threads).
    """
    from functools import partial

    out_dir = Path(out_dir)
    csv = out_dir / csv_name
    done = pd.read_csv(csv) if csv.exists() else pd.DataFrame()
    finished = set(done["run_id"]) if len(done) else set()
    todo = [r for r in runs if r.run_id not in finished]
    todo.sort(key=lambda r: -r.settings.get("iterations", base.iterations))  # longest first packs workers best
    records = done.to_dict("records") if len(done) else []
    made = pd.concat([done, reusable]) if reusable is not None and len(reusable) else done
    for run in list(todo):  # a run the folder has made already under another name (same config and seed)
        same = same_run(made, base.replace(**run.settings, seed=run.seed))
        if same is not None and not run.keep_audio:
            records.append(same | {"run_id": run.run_id, "group": run.group, "label": run.label, "row": run.row,
                                   **run.notes, "reused_from": same["run_id"]})
            todo.remove(run)
    if len(records) > len(done):
        write_csv(csv, pd.DataFrame(records))
        print(f"{len(records) - len(done)} run(s) reused: made before under another name (reused_from)",
              file=sys.stderr, flush=True)
    if todo:  # (with nothing to run the songs are not even decoded)
        campaign.run_all(todo, partial(run_in_process, base=base, out_dir=out_dir, invocation=invocation), csv,
                         workers, initializer=_load_pair, initargs=(str(paper_dir), base),
                         label=lambda r: f"[{r['group']}] {r['state']} loss {r.get('final_loss', float('nan')):.4g}",
                         kind=lambda r: f"{r.group}|{r.settings.get('filters')}", ident=lambda r: r.run_id,
                         records=records)
        records = pd.read_csv(csv).to_dict("records")
    frame = pd.DataFrame(records)
    wanted = {r.run_id for r in runs}
    return frame[frame["run_id"].isin(wanted)].reset_index(drop=True) if len(frame) else frame


