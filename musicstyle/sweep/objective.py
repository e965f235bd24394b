"""The objective: one trial's work, from suggested parameters to the values Optuna minimises.

    params  = suggest_params(trial, settings)          # conditional dimensions last
    for pair in a per-trial shuffled order:
        outcome = run_pair(pair, config)                # transfer + fair measures of one pair
        trial.report(value, step=pair index)            # WilcoxonPruner compares trials pair by pair
    return the objective's measures, averaged over the pairs

`PairCache` keeps each pair's decoded spectrograms and evaluation space per process, so trials do
not decode or build them again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from ..config import TransferConfig
from ..data.corpus import SongPair
from ..engine.audio import write_wav
from ..engine.metrics import EvaluationSpace, evaluation_space
from ..engine.transfer import PairSpectrograms, load_pair, resolve_device, run_transfer
from ..errors import ConfigError, MusicStyleError
from ..measures import PAIR_MEASURES, is_multi_objective, objective_measures
from ..util.io import atomic_path
from ..util.names import inside
from .config import SweepSettings
from .plan import SweepPlan
from .quarantine import is_file_error, quarantine, quarantined
from .trials import Heartbeat

HISTORY_POINTS = 200  # loss curves kept per pair (downsampled)
CLIP_SETTINGS = ("offset_seconds", "clip_seconds", "sample_rate_hz", "n_fft", "hop")  # in pairs.csv: the clip heard


@dataclass
class PairOutcome:
    """One pair's result in a trial: a row for pairs.csv, plus the output kept in memory."""

    row: dict[str, Any]
    history: list[float] = field(default_factory=list)
    audio: np.ndarray | None = None  # (samples,)
    spectrograms: dict[str, np.ndarray] | None = None  # content, style, output: (bins, frames) each


class PairCache:
    """Per process: decoded clips keyed by everything `load_pair` reads, and each pair's evaluation
    space (its fixed network's filters shared between pairs of the same shape)."""

    def __init__(self) -> None:
        self._pairs: dict[tuple, PairSpectrograms] = {}
        self._spaces: dict[tuple, EvaluationSpace] = {}
        self.truth: dict = {}  # each target pair's Griffin-Lim references (musicstyle.truth.measures.reference_for)

    def _key(self, pair: SongPair, config: TransferConfig) -> tuple:
        return (pair, config.sample_rate_hz, config.offset_seconds, config.clip_seconds, config.frames,
                config.n_fft, config.hop, config.kernel_width * config.pooling)

    def get(self, pair: SongPair, config: TransferConfig) -> PairSpectrograms:
        key = self._key(pair, config)
        if key not in self._pairs:
            self._pairs[key] = load_pair(pair.content, pair.style, config)
        return self._pairs[key]

    def space(self, pair: SongPair, config: TransferConfig, device: str) -> EvaluationSpace:
        """The pair's evaluation space on `device`, built once."""
        key = self._key(pair, config) + (device,)
        if key not in self._spaces:
            spectrograms = self.get(pair, config)
            same_shape = [s for k, s in self._spaces.items() if k[-1] == device
                          and s.filters.shape[1] == spectrograms.content.shape[0]]
            if same_shape:  # same fixed network: reuse its filters (the largest tensor of a space)
                space = dataclasses.replace(same_shape[0], frames=spectrograms.content.shape[1])
                space.content_features = space.features(spectrograms.content)
                space.style_features = space.features(spectrograms.style)
            else:
                space = evaluation_space(spectrograms.content, spectrograms.style, config.n_fft, config.hop,
                                         device=device)
            self._spaces[key] = space
        return self._spaces[key]


def pair_config(config: TransferConfig, pair: SongPair) -> TransferConfig:
    """The trial's config with the pair's own offset and clip length, where the corpus gives them."""
    changes = {k: v for k, v in (("offset_seconds", pair.offset_seconds), ("clip_seconds", pair.clip_seconds))
               if v is not None}
    return config.replace(**changes) if changes else config


def _downsample(values: list[float], points: int = HISTORY_POINTS) -> list[float]:
    if len(values) <= points:
        return [float(v) for v in values]
    index = np.unique(np.linspace(0, len(values) - 1, points).round().astype(int))
    return [float(values[i]) for i in index]


def peak_memory_mb() -> float:
    """Peak memory of this process so far (CPU: resident set; GPU: allocated), in MiB."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_pair(pair: SongPair, index: int, config: TransferConfig, cache: PairCache,
             heartbeat: Any = None) -> PairOutcome:
    """Run one pair; an error becomes a row with its reason (the caller fails the trial)."""
    config = pair_config(config, pair)
    row: dict[str, Any] = {"pair": pair.name, "pair_index": index, "content": str(pair.content),
                           "style": str(pair.style), "target": str(pair.target) if pair.target else None,
                           **{k: getattr(config, k) for k in CLIP_SETTINGS}}
    start = time.perf_counter()
    try:
        spectrograms = cache.get(pair, config)
        space = cache.space(pair, config, str(resolve_device(config.device)))
        result = run_transfer(spectrograms, config, progress=heartbeat, space=space)
    except Exception as err:  # recorded, then the trial fails with this reason
        row.update(status="failed", error=f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
                   runtime_seconds=time.perf_counter() - start)
        return PairOutcome(row)
    summary = result.summary()
    if pair.target is not None:  # the corpus knows the right answer: distances to it (musicstyle.truth)
        from ..truth.measures import truth_measures

        clips = (spectrograms.content_audio, spectrograms.style_audio)  # as loaded: only the target is read
        summary |= truth_measures(result.audio, pair, config, cache.truth, clips)
    row.update({k: summary.get(k) for k in PAIR_MEASURES}, status="ok", error="",
               runtime_seconds=time.perf_counter() - start, stop_reason=summary["stop_reason"],
               float64_fallback=summary["float64_fallback"], frames=int(spectrograms.content.shape[1]))
    row["seconds_per_iteration"] = row["optimize_seconds"] / max(row["iterations"], 1)
    for key, value in row.items():
        if isinstance(value, float) and not math.isfinite(value):
            row[key] = None
    specs = {"content": spectrograms.content, "style": spectrograms.style, "output": result.optimization.spectrogram}
    return PairOutcome(row, _downsample(result.optimization.loss_history), result.audio, specs)


def pair_order(n_pairs: int, seed: int, number: int) -> list[int]:
    """A per-trial shuffled order of the pairs, reproducible from the study seed and trial number."""
    order = list(range(n_pairs))
    random.Random(seed * 1_000_003 + number).shuffle(order)
    return order


def summarise(outcomes: list[PairOutcome]) -> dict[str, Any]:
    """Means over the pairs that ran (the trial's figures)."""
    rows = [o.row for o in outcomes if o.row.get("status") == "ok"]
    summary: dict[str, Any] = {"pairs_done": len(rows)}
    for key in PAIR_MEASURES + ("seconds_per_iteration",):
        values = [r[key] for r in rows if r.get(key) is not None]
        summary[key] = float(np.mean(values)) if values else None
    return summary


def objective_values(summary: dict[str, Any], objective: str) -> list[float]:
    """The objective's measures from a summary (or a pair's row); MusicStyleError when not finite."""
    names = objective_measures(objective)
    values = [summary[name] for name in names]
    if any(v is None or not math.isfinite(v) for v in values):
        raise MusicStyleError(f"objective is not finite: {dict(zip(names, values))}")
    return [float(v) for v in values]


def suggest_params(trial: optuna.Trial, settings: SweepSettings) -> dict[str, Any]:
    """Suggest the unconditional dimensions, then those whose `when` holds (lr only for adam)."""
    base = settings.base_config().to_dict()
    params: dict[str, Any] = {}
    pending = dict(settings.search)
    while pending:
        ready = [d for d in pending.values() if all(w not in pending for w in d.when)]
        if not ready:
            raise ConfigError(f"{settings.source}: search 'when' conditions form a cycle")
        for dimension in ready:
            del pending[dimension.name]
            if dimension.active(base | params):
                params[dimension.name] = dimension.suggest(trial)
    return params


def find_repeat(study: optuna.Study, trial: optuna.Trial) -> FrozenTrial | None:
    """An earlier finished trial with exactly these parameters (TPE repeats on small spaces)."""
    for other in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        if other.number != trial.number and other.params == trial.params and "repeat_of" not in other.user_attrs:
            return other
    return None


def copy_repeat(trial: optuna.Trial, repeat: FrozenTrial) -> list[float]:
    """Record `repeat`'s figures on `trial` instead of running it again; its values (or TrialPruned)."""
    for key in ("pairs", "loss_history", *PAIR_MEASURES, "seconds_per_iteration", "pairs_done"):
        if key in repeat.user_attrs:
            trial.set_user_attr(key, repeat.user_attrs[key])
    trial.set_user_attr("repeat_of", repeat.number)
    if repeat.state == TrialState.PRUNED:
        raise optuna.TrialPruned(f"same parameters as pruned trial {repeat.number}")
    return list(repeat.values)


@contextlib.contextmanager
def recorded(trial: optuna.Trial, outcomes: list[PairOutcome]) -> Iterator[None]:
    """On the way out (also when pruned or failed): the trial's means, runtime, memory and loss curves."""
    before = peak_memory_mb()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        yield
    finally:
        peak = peak_memory_mb()
        summary = summarise(outcomes) | {"runtime_seconds": time.perf_counter() - start,
                                         "peak_memory_mb": peak, "peak_memory_delta_mb": peak - before}
        for key, value in summary.items():
            trial.set_user_attr(key, value)
        trial.set_user_attr("loss_history", {o.row["pair"]: o.history for o in outcomes if o.history})


def objective(trial: optuna.Trial, plan: SweepPlan, cache: PairCache,
              outcomes: list[PairOutcome]) -> list[float]:
    """Suggest, run the pairs in a shuffled order (reporting each for pruning), return the means.

    `outcomes` collects each pair's outcome as it runs. Raises TrialPruned, or MusicStyleError
    naming the pair that failed; a pair whose file is unreadable is quarantined and skipped instead.
    """
    config = plan.settings.config_for(suggest_params(trial, plan.settings))
    trial.set_user_attr("seed", config.seed)
    trial.set_user_attr("config", config.to_dict())
    repeat = find_repeat(trial.study, trial)
    if repeat is not None:
        return copy_repeat(trial, repeat)
    report = not is_multi_objective(plan.objective)  # Optuna has no intermediate values for several objectives
    prune = report and "paper_row" not in trial.user_attrs  # the paper's rows run in full (and still report)
    heartbeat = Heartbeat(trial)
    skip = set(quarantined(trial.study))  # pairs whose files became unreadable (quarantine.py)
    with recorded(trial, outcomes):
        for index in pair_order(len(plan.pairs), plan.seed, trial.number):
            if plan.pairs[index].name in skip:
                continue
            heartbeat.last = 0.0
            heartbeat()
            outcome = run_pair(plan.pairs[index], index, config, cache, heartbeat)
            outcomes.append(outcome)
            trial.set_user_attr("pairs", [o.row for o in outcomes])
            if is_file_error(outcome.row):  # quarantined; this trial completes on its other pairs
                quarantine(trial.study, outcome.row["pair"], outcome.row["error"], trial.number)
                continue
            if outcome.row["status"] != "ok":
                raise MusicStyleError(f"pair '{outcome.row['pair']}': {outcome.row['error']}")
            if report:
                trial.report(objective_values(outcome.row, plan.objective)[0], step=index)
                if prune and len(outcomes) < len(plan.pairs) and trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after {len(outcomes)} of {len(plan.pairs)} pairs")
    return objective_values(summarise(outcomes), plan.objective)


def save_best_outputs(plan: SweepPlan, number: int, outcomes: list[PairOutcome]) -> Path:
    """Keep a trial's WAVs and spectrograms under results/<study>/best/trial_<n>/ (returned)."""
    folder = plan.results_dir / "best" / f"trial_{number:04d}"
    arrays = {}
    for outcome in outcomes:
        if outcome.audio is None:
            continue
        rate = plan.settings.base_config().sample_rate_hz
        write_wav(inside(folder, f"{outcome.row['pair']}.wav"), outcome.audio, rate)
        arrays.update({f"{outcome.row['pair']}/{k}": v.astype(np.float16) for k, v in outcome.spectrograms.items()})
    if arrays:
        with atomic_path(folder / "spectrograms.npz") as tmp, open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)
    return folder


def improves(study: optuna.Study, values: list[float]) -> bool:
    """`values` would be the new best (one objective) or join the Pareto front (several): checked
    before the trial is told, so its outputs can still be attached to it as artifacts."""
    try:
        best = study.best_trials
    except ValueError:
        return True
    if not best:
        return True
    if len(values) == 1:
        return values[0] < best[0].values[0]
    return not any(all(b <= v for b, v in zip(t.values, values)) for t in best)


def keep_outputs(plan: SweepPlan, trial: optuna.Trial, outcomes: list[PairOutcome]) -> None:
    """A new best trial's (or a paper row's) WAVs and spectrograms under results/<study>/best/, attached
    to the running trial as Optuna artifacts so that optuna-dashboard plays them. Attaching never fails
    the trial: a problem is recorded in its `artifacts_error` user attr."""
    from ..reports.artifacts import ARTIFACTS, attach_artifacts, spectrogram_pngs

    folder = save_best_outputs(plan, trial.number, outcomes)
    config = plan.settings.base_config()
    try:
        files = [*sorted(folder.glob("*.wav")),
                 *spectrogram_pngs(folder, config.sample_rate_hz, config.hop, f"trial {trial.number}")]
        attach_artifacts(trial.study, trial, files, plan.results_dir / ARTIFACTS)
    except Exception as err:  # the dashboard's copy is a convenience; the files stay under best/
        trial.set_user_attr("artifacts_error", f"{type(err).__name__}: {err}"[:300])
