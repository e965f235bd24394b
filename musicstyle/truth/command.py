"""The validation's runs: transfers across the search space and the activation x weights ablation, on the
rendered corpus, each scored by the fair measures and the ground truth; plus the baselines on every corpus.

`runs.csv` is written after every run and a restart skips the runs it already holds, so an interrupted
validation resumes where it stopped.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import campaign
from ..config import PAPER_ACTIVATIONS, TransferConfig
from ..data.baselines import score_baselines
from ..data.corpus import SongPair, builtin_pairs, paper_pairs, resolve_corpus
from ..engine.audio import load_clip
from ..engine.metrics import EvaluationSpace, evaluation_space
from ..engine.transfer import load_pair, run_transfer
from ..errors import MusicStyleError
from ..util.io import write_csv
from .measures import reference_for

ACTIVATIONS = PAPER_ACTIVATIONS
FILTERS = (1024, 2048, 4096)
ALPHA_RANGE = (1e-4, 1.0)  # log-uniform, as configs/default.yaml's search section
BETA_RANGE = (1e-2, 100.0)
WEIGHTS = {"paper (alpha 1e-2, beta 1)": (1e-2, 1.0), "blog (alpha 1e-3, beta 10)": (1e-3, 10.0)}


@dataclass(frozen=True)
class Plan:
    """Sizes of a validation: the random design, the ablation, and the fixed run settings."""

    random_runs: int = 60
    iterations_range: tuple[int, int] = (20, 150)  # log-uniform
    ablation_seeds: int = 3
    ablation_pairs: int = 2
    ablation_iterations: int = 40
    ablation_filters: int = 2048
    filters: tuple[int, ...] = FILTERS
    pairs: int | None = None  # None: every rendered pair
    baseline_corpora: tuple[str, ...] = ("rendered", "builtin", "paper")
    fixed: dict[str, Any] = field(default_factory=lambda: {
        "offset_seconds": 0.0, "clip_seconds": 2.0, "frames": None, "griffin_lim_iters": 30,
        "precision": "bf16", "device": "cpu"})


QUICK = Plan(random_runs=3, iterations_range=(3, 6), ablation_seeds=1, ablation_pairs=1, ablation_iterations=3,
             ablation_filters=128, filters=(64, 128), pairs=2, baseline_corpora=("rendered",),
             fixed={"offset_seconds": 0.0, "clip_seconds": 1.0, "frames": None, "griffin_lim_iters": 5,
                    "n_fft": 512, "hop": 128, "precision": "bf16", "device": "cpu"})


def plan_runs(plan: Plan, pairs: list[SongPair], seed: int = 0) -> list[dict[str, Any]]:
    """Every run as a dict of run_id, group, label, pair name and settings; deterministic from `seed`."""
    rng = np.random.default_rng(seed)
    runs = []
    lo, hi = plan.iterations_range
    for i in range(plan.random_runs):
        runs.append({
            "run_id": f"random-{i:03d}", "group": "random", "label": "", "pair": pairs[i % len(pairs)].name,
            "seed": i, "alpha": float(math.exp(rng.uniform(*np.log(ALPHA_RANGE)))),
            "beta": float(math.exp(rng.uniform(*np.log(BETA_RANGE)))),
            "activation": ACTIVATIONS[int(rng.integers(len(ACTIVATIONS)))],
            "filters": int(plan.filters[int(rng.integers(len(plan.filters)))]),
            "iterations": int(round(math.exp(rng.uniform(math.log(lo), math.log(hi))))),
        })
    for weights, (alpha, beta) in WEIGHTS.items():
        for activation in ACTIVATIONS:
            for s in range(plan.ablation_seeds):
                for pair in pairs[: plan.ablation_pairs]:
                    runs.append({
                        "run_id": f"ablation-{activation}-{alpha:g}-{beta:g}-s{s}-{pair.name}", "group": "ablation",
                        "label": weights, "pair": pair.name, "seed": s, "alpha": alpha, "beta": beta,
                        "activation": activation, "filters": plan.ablation_filters,
                        "iterations": plan.ablation_iterations})
    return [r for r in runs if r["group"] == "ablation"] + [r for r in runs if r["group"] == "random"]  # ablation first


class PairData:
    """Each rendered pair's clips and evaluation space (one fixed network shared by all pairs) and its truth
    references (per Griffin-Lim seed), loaded once."""

    def __init__(self, pairs: list[SongPair]) -> None:
        self.pairs = {p.name: p for p in pairs}
        self._cache: dict[tuple, Any] = {}
        self.references: dict = {}

    def get(self, name: str, config: TransferConfig) -> tuple[Any, Any, Any]:
        key = (name, config.clip_seconds, config.n_fft, config.hop)
        pair = self.pairs[name]
        if key not in self._cache:
            spectrograms = load_pair(pair.content, pair.style, config)
            shared = next(iter(self._cache.values()), None)
            if shared is not None and shared[1].filters.shape[1] == spectrograms.content.shape[0]:
                space = EvaluationSpace(shared[1].filters, None, None, min(spectrograms.content.shape[1],
                                        spectrograms.style.shape[1]), config.n_fft, config.hop)  # type: ignore[arg-type]
                space.content_features = space.features(spectrograms.content)
                space.style_features = space.features(spectrograms.style)
            else:
                space = evaluation_space(spectrograms.content, spectrograms.style, config.n_fft, config.hop)
            self._cache[key] = (spectrograms, space)
        spectrograms, space = self._cache[key]
        return spectrograms, space, reference_for(pair, config, self.references)


def run_one(run: dict[str, Any], data: PairData, base: TransferConfig) -> dict[str, Any]:
    """One transfer: its settings, final loss, fair and truth measures and time; a failure is a row."""
    settings = {k: run[k] for k in ("alpha", "beta", "activation", "filters", "iterations", "seed")}
    config = base.replace(**settings)
    start = time.perf_counter()
    try:
        spectrograms, space, reference = data.get(run["pair"], config)
        result = run_transfer(spectrograms, config, space=space)
        truth = reference.measures(result.audio)
    except MusicStyleError as err:
        return run | {"state": "failed", "reason": str(err), "seconds": time.perf_counter() - start}
    return run | {"state": "ok", "reason": "", "final_loss": result.optimization.final_loss,
                  **result.measures.to_dict(), **truth, "precision": config.precision,
                  "seconds": time.perf_counter() - start}


_WORKER: dict[str, PairData] = {}  # per process: the pairs' data, loaded once (start_worker)


def start_worker(pairs: list[SongPair]) -> None:
    _WORKER["data"] = PairData(pairs)


def run_in_worker(run: dict[str, Any], base: TransferConfig) -> dict[str, Any]:
    return run_one(run, _WORKER["data"], base)


def _label(record: dict[str, Any]) -> str:
    return (f"{record['state']} truth {record.get('truth_score', float('nan')):.3f} "
            f"quality {record.get('quality_score', float('nan')):.3f}")


def run_all(runs: list[dict[str, Any]], pairs: list[SongPair], base: TransferConfig, out_dir: Path,
            workers: int = 1) -> pd.DataFrame:
    """Run what runs.csv lacks (musicstyle.campaign) in `workers` processes, writing it after every run; return
    every planned run's row."""
    return campaign.run_all(runs, partial(run_in_worker, base=base), out_dir / "runs.csv", workers,
                            initializer=start_worker, initargs=(pairs,), label=_label,
                            kind=lambda run: f"{run['filters']} filters")


def corpus_pairs(name: str, paper_dir: str | None) -> list[SongPair]:
    if name == "rendered":
        return resolve_corpus("rendered")
    if name == "builtin":
        return builtin_pairs()
    return paper_pairs(paper_dir)


def baselines_on(name: str, pairs: list[SongPair], base: TransferConfig, offset_seconds: float) -> list[dict]:
    """Baseline rows (fair measures, and truth where a target exists) for every pair of one corpus."""
    config = base.replace(offset_seconds=offset_seconds)
    references: dict = {}
    rows = []
    for pair in pairs:
        spectrograms = load_pair(pair.content, pair.style, config)
        reference = target = None
        if pair.target is not None:
            reference = reference_for(pair, config, references)
            target = load_clip(pair.target, config.sample_rate_hz, config.offset_seconds, config.clip_seconds)
        for row in score_baselines(spectrograms, config, reference, target):
            rows.append({"corpus": name, "pair": pair.name, **row})
    return rows


def all_baselines(plan: Plan, rendered: list[SongPair], base: TransferConfig, paper_dir: str | None,
                  out_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    """baselines.csv (kept when present: a restart does not redo it) and notes on corpora skipped."""
    csv = out_dir / "baselines.csv"
    notes = []
    if csv.exists():
        return pd.read_csv(csv), notes
    rows = []
    for name in plan.baseline_corpora:
        if name == "paper" and not paper_dir:
            notes.append("the paper's songs: skipped (set MUSICSTYLE_PAPER_SONGS or pass --paper-dir)")
            continue
        try:
            pairs = rendered if name == "rendered" else corpus_pairs(name, paper_dir)
            # the built-in tracks fade in and the paper's content starts quietly: read from 5 s as the sweep does
            rows += baselines_on(name, pairs, base, 0.0 if name == "rendered" else 5.0)
        except MusicStyleError as err:
            notes.append(f"{name}: skipped ({err})")
    frame = pd.DataFrame(rows)
    write_csv(csv, frame)
    return frame, notes
