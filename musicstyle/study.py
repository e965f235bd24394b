"""The Optuna sweep: storage, the paper's rows first, the objective over the corpus, pruning,
an exact total of trials across processes and restarts, stale-trial recovery, progress.

Each process runs an ask/tell loop on the shared storage. Before asking it fails trials left
RUNNING by dead processes (same host: the process is gone; any host: no heartbeat for
`stale_after_seconds`) and enqueues their parameters again. A trial only runs if fewer than N
counted trials (finished, failed or pruned, not discarded) or older running ones exist; a surplus
trial from a race is discarded, so a study ends with exactly N counted trials.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import os
import random
import resource
import socket
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from .audio import write_wav
from .config import TransferConfig
from .corpus import SongPair, preflight, resolve_corpus
from .errors import ConfigError, MusicStyleError
from .io import ensure_writable_folder
from .metrics import EvaluationSpace, evaluation_space
from .paper import PAPER_ROWS
from .sweepconfig import SweepSettings
from .transfer import PairSpectrograms, load_pair, resolve_device, run_transfer

MEASURES = ("final_loss", "content_loss", "style_loss", "content_loss_unweighted", "style_loss_unweighted",
            "style_distance", "content_distance", "spectral_convergence", "quality_score", "iterations",
            "evaluations", "optimize_seconds", "reconstruct_seconds")
HISTORY_POINTS = 200  # loss curves kept per pair (downsampled)
HEARTBEAT_SECONDS = 30.0
SCHEMA_RACE_ATTEMPTS = 5  # tries to open an RDB storage while other workers create its tables


class StorageError(MusicStyleError):
    """The study storage cannot be opened, reached or written."""


@dataclass
class SweepPlan:
    """Everything a worker process needs (picklable)."""

    settings: SweepSettings
    pairs: list[SongPair]
    study_name: str
    results_dir: Path
    storage_url: str | None
    trials: int
    workers: int = 1
    quiet: bool = False

    @property
    def seed(self) -> int:
        return self.settings.study["seed"]

    @property
    def objective(self) -> str:
        return self.settings.objective


@dataclass
class PairOutcome:
    """One pair's result in a trial: a row for pairs.csv, plus the output kept in memory."""

    row: dict[str, Any]
    history: list[float] = field(default_factory=list)
    audio: np.ndarray | None = None
    spectrograms: dict[str, np.ndarray] | None = None


# ---------------------------------------------------------------- storage and study


def _mask(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def journal_path(results_dir: Path) -> Path:
    return results_dir / "study.journal"


def normalise_url(url: str) -> str:
    """postgres:// and a bare postgresql:// get the installed driver (psycopg 3, else psycopg2)."""
    import importlib.util

    scheme, rest = url.split(":", 1)
    if scheme in ("postgres", "postgresql"):
        driver = "psycopg" if importlib.util.find_spec("psycopg") else "psycopg2"
        return f"postgresql+{driver}:{rest}"
    return url


def open_storage(url: str | None, results_dir: Path) -> optuna.storages.BaseStorage:
    """The study storage: a journal file under the results folder (default), a `journal:PATH`, or
    an RDB URL (sqlite:///..., postgresql://...). Checked reachable; StorageError in one line."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if url is None or url.startswith("journal:"):
        path = journal_path(results_dir) if url is None else Path(url[len("journal:"):]).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(exist_ok=True)
        except OSError as err:
            raise StorageError(f"cannot write the study journal {path}: {err.strerror}") from None
        return JournalStorage(JournalFileBackend(str(path)))
    if url.split(":", 1)[0].split("+")[0] not in ("sqlite", "postgresql", "postgres", "mysql"):
        raise StorageError(f"unsupported storage URL {_mask(url)!r}: use sqlite:///FILE, postgresql://..., "
                           "mysql://... or journal:FILE")
    url = normalise_url(url)
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("postgresql"):
        engine_kwargs = {"connect_args": {"connect_timeout": 10}}
    for attempt in range(SCHEMA_RACE_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
                storage.get_all_studies()
            return storage
        except Exception as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            # workers starting together on an empty database race to create Optuna's tables: the loser
            # sees a duplicate-key or already-exists error, and a second try finds the tables made
            racing = "UniqueViolation" in reason or "already exists" in reason
            if not racing or attempt == SCHEMA_RACE_ATTEMPTS - 1:
                raise StorageError(f"cannot open storage {_mask(url)}: {reason[:300]}") from None
            time.sleep(0.5 + random.random())
    raise AssertionError("unreachable")


def directions(objective: str) -> list[str]:
    return ["minimize", "minimize"] if objective == "pareto" else ["minimize"]


def objective_names(objective: str) -> list[str]:
    return {"quality": ["quality_score"], "loss": ["final_loss"],
            "pareto": ["content_distance", "style_distance"]}[objective]


def make_sampler(plan: SweepPlan, worker: int) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=plan.seed + 1000 * worker, multivariate=True, group=True,
                                          constant_liar=True, n_startup_trials=plan.settings.study["startup_trials"])


def make_pruner(plan: SweepPlan) -> optuna.pruners.BasePruner:
    s = plan.settings.study
    if plan.objective == "pareto" or not s["prune"]:
        return optuna.pruners.NopPruner()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.pruners.WilcoxonPruner(p_threshold=s["p_threshold"], n_startup_steps=s["n_startup_steps"])


def open_study(plan: SweepPlan, worker: int = 0, create: bool = True) -> optuna.Study:
    """Load the study, or create it (recording the config and corpus) when `create`."""
    storage = open_storage(plan.storage_url, plan.results_dir)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    names = [s.study_name for s in storage.get_all_studies()]
    if plan.study_name in names:
        study = optuna.load_study(study_name=plan.study_name, storage=storage, sampler=make_sampler(plan, worker),
                                  pruner=make_pruner(plan))
        wait_until_ready(study)
        check_same_study(study, plan)
        return study
    if not create:
        raise StorageError(f"no study named '{plan.study_name}' in the storage")
    try:  # exactly one process wins the creation; the others load the study it made
        study = optuna.create_study(study_name=plan.study_name, storage=storage,
                                    directions=directions(plan.objective), sampler=make_sampler(plan, worker),
                                    pruner=make_pruner(plan), load_if_exists=False)
    except optuna.exceptions.DuplicatedStudyError:
        return open_study(plan, worker, create=False)
    study.set_user_attr("objective", plan.objective)
    study.set_user_attr("config", plan.settings.raw)
    study.set_user_attr("config_source", plan.settings.source)
    study.set_user_attr("corpus", [p.to_dict() for p in plan.pairs])
    study.set_user_attr("fixed", plan.settings.base_config().to_dict())
    enqueue_paper_rows(study, plan.settings)
    study.set_user_attr("ready", True)  # set last: workers that lost the creation wait for it
    return study


def wait_until_ready(study: optuna.Study, timeout_seconds: float = 60.0) -> None:
    """Wait while another process is still creating the study (recording its config, queueing the
    paper's rows), so that the rows run first and once. A study with trials is ready."""
    end = time.time() + timeout_seconds
    while "ready" not in study.user_attrs and not study.get_trials(deepcopy=False) and time.time() < end:
        time.sleep(0.2)


def check_same_study(study: optuna.Study, plan: SweepPlan) -> None:
    """A resumed study keeps its objective, corpus and fixed settings (else its trials would not compare)."""
    attrs = study.user_attrs
    hint = "give a new --study name"
    if attrs.get("objective", plan.objective) != plan.objective:
        raise ConfigError(f"study '{plan.study_name}' was created with objective '{attrs['objective']}', not "
                          f"'{plan.objective}': give --objective {attrs['objective']} or a new --study name")
    if "corpus" in attrs and attrs["corpus"] != [p.to_dict() for p in plan.pairs]:
        raise ConfigError(f"study '{plan.study_name}' was created with another corpus "
                          f"({', '.join(p['name'] for p in attrs['corpus'])}): {hint}")
    fixed = plan.settings.base_config().to_dict()
    changed = sorted(k for k, v in attrs.get("fixed", fixed).items() if fixed.get(k) != v)
    if changed:
        was = ", ".join(f"{k}={attrs['fixed'][k]}" for k in changed)
        raise ConfigError(f"study '{plan.study_name}' was created with other fixed settings ({was}): {hint}")


def paper_row_params(settings: SweepSettings) -> list[tuple[str, dict[str, Any], float]]:
    """The paper's four rows as parameters of this search space.

    Each row's own settings (activation, alpha, beta, lr) are always kept (a float outside its range
    is still run, with Optuna's warning); a row whose activation the space lacks is left out. Other
    searched settings take the base paper's value when the space has it, else the sampler picks.
    """
    defaults = TransferConfig().to_dict()
    rows = []
    for row in PAPER_ROWS:
        own = {name: value for name, value in row.settings.items() if name in settings.search}
        if not all(settings.search[n].contains(v) or settings.search[n].choices is None for n, v in own.items()):
            print(f"note: the search space has no room for the paper row '{row.name}'; not enqueued",
                  file=sys.stderr)
            continue
        others = {n: defaults[n] for n, d in settings.search.items() if n not in own and d.contains(defaults[n])}
        rows.append((row.name, others | own, row.paper_loss))
    return rows


def enqueue_paper_rows(study: optuna.Study, settings: SweepSettings) -> None:
    """Enqueue the paper's four rows so they run first (by the process that created the study)."""
    if not settings.study["paper_rows"] or study.get_trials(deepcopy=False):
        return
    for label, params, figure in paper_row_params(settings):
        study.enqueue_trial(params, user_attrs={"paper_row": label, "paper_loss": figure}, skip_if_exists=True)


# ---------------------------------------------------------------- counting, stale trials


def is_discarded(trial: FrozenTrial) -> bool:
    return "discarded" in trial.user_attrs


def is_counted(trial: FrozenTrial) -> bool:
    """Finished, failed or pruned, and not discarded (stale, interrupted or surplus)."""
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL) and not is_discarded(trial)


def counted_trials(trials: list[FrozenTrial]) -> int:
    return sum(is_counted(t) for t in trials)


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def worker_identity() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _process_start(os.getpid())}


def _alive(identity: dict[str, Any]) -> bool:
    pid = int(identity.get("pid", -1))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return identity.get("start") is None or _process_start(pid) == identity.get("start")


def is_stale(trial: FrozenTrial, stale_after_seconds: float, now: float | None = None) -> bool:
    """A RUNNING trial whose process is gone (this host) or silent for too long (any host)."""
    if trial.state != TrialState.RUNNING:
        return False
    now = time.time() if now is None else now
    identity = trial.user_attrs.get("worker")
    if identity and identity.get("host") == socket.gethostname() and not _alive(identity):
        return True
    last = trial.user_attrs.get("heartbeat")
    if last is None:
        last = trial.datetime_start.timestamp() if trial.datetime_start else now
    return now - float(last) > stale_after_seconds


def requeue(study: optuna.Study, trial: FrozenTrial) -> None:
    """Enqueue a discarded trial's parameters again (keeping its paper-row label).

    An enqueued trial (a paper row) keeps all its fixed parameters even when it was stopped before
    suggesting them all; what it had suggested is kept too.
    """
    attrs = {k: trial.user_attrs[k] for k in ("paper_row", "paper_loss") if k in trial.user_attrs}
    study.enqueue_trial(trial.system_attrs.get("fixed_params", {}) | dict(trial.params),
                        user_attrs=attrs | {"retry_of": trial.number})


def discard(study: optuna.Study, trial: FrozenTrial, why: str, reason: str) -> bool:
    """Mark a RUNNING trial FAIL + discarded; False if another process finished it first."""
    storage = study._storage
    try:
        storage.set_trial_user_attr(trial._trial_id, "discarded", why)
        storage.set_trial_user_attr(trial._trial_id, "fail_reason", reason)
        return storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
        return False


def fail_stale_trials(study: optuna.Study, stale_after_seconds: float) -> list[int]:
    """Fail every stale RUNNING trial and enqueue its parameters again; return their numbers."""
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if is_stale(trial, stale_after_seconds):
            if discard(study, trial, "stale", "its process stopped while the trial was running; re-run"):
                requeue(study, trial)
                failed.append(trial.number)
    return failed


def claim_slot(study: optuna.Study, number: int, total: int) -> bool:
    """True when fewer than `total` counted trials or older running ones exist besides trial `number`."""
    trials = study.get_trials(deepcopy=False)
    ahead = sum(1 for t in trials if t.number != number and
                (is_counted(t) or (t.state == TrialState.RUNNING and t.number < number)))
    return ahead < total


# ---------------------------------------------------------------- one trial


class PairCache:
    """Per process: decoded clips keyed by everything `load_pair` reads, and each pair's evaluation
    space (its fixed network's filters shared between pairs of the same shape)."""

    def __init__(self) -> None:
        self._pairs: dict[tuple, PairSpectrograms] = {}
        self._spaces: dict[tuple, EvaluationSpace] = {}

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
            if same_shape:  # same fixed network: reuse its filters (185 MB at 1025 bins)
                space = dataclasses.replace(same_shape[0], frames=spectrograms.content.shape[1])
                space.content_features = space.features(spectrograms.content)
                space.style_features = space.features(spectrograms.style)
            else:
                space = evaluation_space(spectrograms.content, spectrograms.style, config.n_fft, config.hop,
                                         device=device)
            self._spaces[key] = space
        return self._spaces[key]


def pair_config(config: TransferConfig, pair: SongPair) -> TransferConfig:
    changes = {k: v for k, v in (("offset_seconds", pair.offset_seconds), ("clip_seconds", pair.clip_seconds))
               if v is not None}
    return config.replace(**changes) if changes else config


def _downsample(values: list[float], points: int = HISTORY_POINTS) -> list[float]:
    if len(values) <= points:
        return [float(v) for v in values]
    index = np.unique(np.linspace(0, len(values) - 1, points).round().astype(int))
    return [float(values[i]) for i in index]


def _peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_pair(pair: SongPair, index: int, config: TransferConfig, cache: PairCache,
             heartbeat: Any = None) -> PairOutcome:
    """Run one pair; an error becomes a row with its reason (the caller fails the trial)."""
    config = pair_config(config, pair)
    row: dict[str, Any] = {"pair": pair.name, "pair_index": index, "content": str(pair.content),
                           "style": str(pair.style)}
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
    row.update({k: summary[k] for k in MEASURES}, status="ok", error="",
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
    for key in MEASURES + ("seconds_per_iteration",):
        values = [r[key] for r in rows if r.get(key) is not None]
        summary[key] = float(np.mean(values)) if values else None
    return summary


def objective_values(summary: dict[str, Any], objective: str) -> list[float]:
    values = [summary[name] for name in objective_names(objective)]
    if any(v is None or not math.isfinite(v) for v in values):
        raise MusicStyleError(f"objective is not finite: {dict(zip(objective_names(objective), values))}")
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


class Heartbeat:
    """Progress callback that writes a `heartbeat` user attr at most every HEARTBEAT_SECONDS."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial
        self.last = 0.0

    def __call__(self, *_: Any) -> None:
        now = time.time()
        if now - self.last >= HEARTBEAT_SECONDS:
            self.last = now
            self.trial.set_user_attr("heartbeat", now)


def run_trial(study: optuna.Study, trial: optuna.Trial, plan: SweepPlan, cache: PairCache) -> list[PairOutcome]:
    """The objective's work: suggest, run the pairs in a shuffled order, report each for pruning.

    Sets the trial's user attrs as it goes. Raises TrialPruned, or MusicStyleError with the reason.
    """
    params = suggest_params(trial, plan.settings)
    config = plan.settings.config_for(params)
    trial.set_user_attr("seed", config.seed)
    trial.set_user_attr("config", config.to_dict())
    repeat = find_repeat(study, trial)
    if repeat is not None:
        for key in ("pairs", "loss_history", *MEASURES, "seconds_per_iteration", "pairs_done"):
            if key in repeat.user_attrs:
                trial.set_user_attr(key, repeat.user_attrs[key])
        trial.set_user_attr("repeat_of", repeat.number)
        if repeat.state == TrialState.PRUNED:
            raise optuna.TrialPruned(f"same parameters as pruned trial {repeat.number}")
        return []
    heartbeat = Heartbeat(trial)
    outcomes: list[PairOutcome] = []
    report = plan.objective != "pareto"  # Optuna has no intermediate values for multi-objective studies
    prune = report and "paper_row" not in trial.user_attrs  # the paper's rows run in full (and still report)
    rss_before = _peak_memory_mb()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    try:
        for index in pair_order(len(plan.pairs), plan.seed, trial.number):
            heartbeat.last = 0.0
            heartbeat()
            outcome = run_pair(plan.pairs[index], index, config, cache, heartbeat)
            outcomes.append(outcome)
            trial.set_user_attr("pairs", [o.row for o in outcomes])
            if outcome.row["status"] != "ok":
                raise MusicStyleError(f"pair '{outcome.row['pair']}': {outcome.row['error']}")
            if report:
                trial.report(objective_values(outcome.row, plan.objective)[0], step=index)
                if prune and len(outcomes) < len(plan.pairs) and trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after {len(outcomes)} of {len(plan.pairs)} pairs")
    finally:
        summary = summarise(outcomes)
        runtime = time.perf_counter() - start
        peak = _peak_memory_mb()
        summary.update(runtime_seconds=runtime, peak_memory_mb=peak, peak_memory_delta_mb=peak - rss_before)
        for key, value in summary.items():
            trial.set_user_attr(key, value)
        trial.set_user_attr("loss_history", {o.row["pair"]: o.history for o in outcomes if o.history})
    return outcomes


def save_best_outputs(plan: SweepPlan, number: int, outcomes: list[PairOutcome]) -> None:
    """Keep a best trial's WAVs and spectrograms under results/<study>/best/trial_<n>/."""
    folder = plan.results_dir / "best" / f"trial_{number:04d}"
    arrays = {}
    for outcome in outcomes:
        if outcome.audio is None:
            continue
        write_wav(folder / f"{outcome.row['pair']}.wav", outcome.audio, plan.settings.base_config().sample_rate_hz)
        arrays.update({f"{outcome.row['pair']}/{k}": v.astype(np.float16) for k, v in outcome.spectrograms.items()})
    if arrays:
        from .io import atomic_path

        with atomic_path(folder / "spectrograms.npz") as tmp:
            with open(tmp, "wb") as handle:
                np.savez_compressed(handle, **arrays)


def _is_best(study: optuna.Study, number: int) -> bool:
    try:
        best = study.best_trials if len(study.directions) > 1 else [study.best_trial]
    except ValueError:
        return False
    return any(t.number == number for t in best)


# ---------------------------------------------------------------- the worker loop and progress


def _fmt_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def progress_line(study: optuna.Study, plan: SweepPlan, trial: FrozenTrial) -> str:
    """'trial 12 COMPLETE 0.512 in 31 s | 12/200 done, best 0.48 (#7), ETA 1.6 h'."""
    trials = study.get_trials(deepcopy=False)
    done = counted_trials(trials)
    durations = [t.duration.total_seconds() for t in trials if is_counted(t) and t.duration is not None
                 and "repeat_of" not in t.user_attrs]
    eta = (plan.trials - done) * float(np.mean(durations)) / plan.workers if durations else None
    value = "" if trial.values is None else " " + ", ".join(f"{v:.4g}" for v in trial.values)
    reason = trial.user_attrs.get("fail_reason") or trial.user_attrs.get("prune_reason") or ""
    head = f"trial {trial.number} {trial.state.name}{value}"
    if trial.duration is not None:
        head += f" in {trial.duration.total_seconds():.0f} s"
    if reason:
        head += f" ({reason[:120]})"
    if "repeat_of" in trial.user_attrs:
        head += f" (repeat of #{trial.user_attrs['repeat_of']})"
    best = ""
    try:
        if len(study.directions) == 1:
            best = f", best {study.best_value:.4g} (#{study.best_trial.number})"
        else:
            best = f", Pareto front {len(study.best_trials)} trials"
    except ValueError:
        pass
    tail = f" | {done}/{plan.trials} done{best}" + (f", ETA {_fmt_duration(eta)}" if eta is not None else "")
    return head + tail


def _tell_failed(study: optuna.Study, trial: optuna.Trial, reason: str) -> FrozenTrial:
    try:
        trial.set_user_attr("fail_reason", reason[:1000])
    except optuna.exceptions.UpdateFinishedTrialError:  # another process failed it as stale meanwhile
        pass
    return study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


def run_one(study: optuna.Study, plan: SweepPlan, cache: PairCache) -> FrozenTrial | None:
    """Ask, run and tell one trial; None when the study already has its N trials."""
    fail_stale_trials(study, plan.settings.study["stale_after_seconds"])
    trials = study.get_trials(deepcopy=False)
    busy = sum(1 for t in trials if t.state == TrialState.RUNNING)
    if counted_trials(trials) + busy >= plan.trials:
        return None
    trial = study.ask()
    trial.set_user_attr("worker", worker_identity())
    trial.set_user_attr("heartbeat", time.time())
    if not claim_slot(study, trial.number, plan.trials):
        frozen = study._storage.get_trial(trial._trial_id)
        if discard(study, frozen, "surplus", "the study reached its trial count while this trial started"):
            if frozen.system_attrs.get("fixed_params"):
                requeue(study, study._storage.get_trial(trial._trial_id))
        return None
    try:
        outcomes = run_trial(study, trial, plan, cache)
        if "repeat_of" in trial.user_attrs:
            repeat = study._storage.get_trial(
                study._storage.get_trial_id_from_study_id_trial_number(study._study_id, trial.user_attrs["repeat_of"]))
            frozen = study.tell(trial, repeat.values, skip_if_finished=True)
        else:
            summary = summarise(outcomes)
            frozen = study.tell(trial, objective_values(summary, plan.objective), skip_if_finished=True)
            if _is_best(study, trial.number):
                save_best_outputs(plan, trial.number, outcomes)
    except optuna.TrialPruned as pruned:
        trial.set_user_attr("prune_reason", str(pruned))
        frozen = study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
    except KeyboardInterrupt:
        frozen = study._storage.get_trial(trial._trial_id)
        if discard(study, frozen, "interrupted", "interrupted (Ctrl-C); re-run on resume"):
            requeue(study, frozen)
        raise
    except Exception as err:  # any error: recorded with its reason, the sweep goes on
        text = str(err).splitlines()[0] if str(err) else ""
        reason = text if isinstance(err, MusicStyleError) else f"{type(err).__name__}: {text}"
        frozen = _tell_failed(study, trial, reason)
    finally:
        gc.collect()
    return frozen


def default_workers() -> int:
    """Worker processes when --workers is not given: one per CPU core (at most 8), one on a GPU."""
    return 1 if torch.cuda.is_available() else max(1, min(os.cpu_count() or 1, 8))


def limit_threads(threads: int) -> None:
    """Torch threads for this worker, and one BLAS thread: scipy's L-BFGS-B works on long vectors
    with small BLAS calls that are many times slower with OpenBLAS threads spinning (on this 2-core
    CPU about 190 ms per iteration with 2 threads, 10-20 ms with 1)."""
    torch.set_num_threads(max(1, threads))
    try:
        import threadpoolctl

        threadpoolctl.threadpool_limits(1, user_api="blas")
    except ImportError:  # threadpoolctl comes with scikit-learn/scipy stacks; without it, keep the default
        pass


def run_worker(plan: SweepPlan, worker: int = 0, threads: int | None = None, parent: int | None = None) -> int:
    """One process's loop until the study has its N trials (or its `parent` process is gone).
    Returns the trials it ran."""
    limit_threads(threads or max(1, (os.cpu_count() or 1) // plan.workers))
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")
    warnings.filterwarnings("ignore", message="Fixed parameter")
    study = open_study(plan, worker, create=False)
    cache = PairCache()
    ran = 0
    tag = f"[worker {worker}] " if plan.workers > 1 else ""
    while parent is None or os.getppid() == parent:  # a worker whose parent was killed stops after its trial
        frozen = run_one(study, plan, cache)
        if frozen is None:
            return ran
        ran += 1
        if not plan.quiet:
            print(tag + progress_line(study, plan, frozen), file=sys.stderr, flush=True)
    return ran


def catch_stop_signals(once: bool = False) -> None:
    """Ctrl-C (even where a background start ignored it) and SIGTERM stop cleanly via KeyboardInterrupt;
    with `once` (spawned workers) later signals are ignored so the clean-up is not cut short."""
    import signal

    def stop(signum: int, frame: Any) -> None:
        if once:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, stop if once else signal.default_int_handler)
    signal.signal(signal.SIGTERM, stop)


def _worker_entry(plan: SweepPlan, worker: int, threads: int, parent: int) -> None:
    catch_stop_signals(once=True)
    try:
        run_worker(plan, worker, threads, parent)
    except KeyboardInterrupt:
        pass
    except MusicStyleError as err:
        print(f"[worker {worker}] error: {err}", file=sys.stderr)
        sys.exit(2)


def run_workers(plan: SweepPlan) -> None:
    """Run the loop here (one worker) or in N spawned processes sharing the storage."""
    cores = os.cpu_count() or 1
    if plan.workers <= 1:
        run_worker(plan, 0, cores)
        return
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    threads = max(1, cores // plan.workers)
    processes = [context.Process(target=_worker_entry, args=(plan, w, threads, os.getpid()), daemon=False)
                 for w in range(plan.workers)]
    for process in processes:
        process.start()
    try:
        for process in processes:
            process.join()
    except KeyboardInterrupt:
        import signal

        for process in processes:  # pass the stop on (a terminal's Ctrl-C reached them already: no harm)
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGINT)
        for process in processes:  # let them record their trials
            process.join()
        raise


# ---------------------------------------------------------------- set-up and the whole sweep


def resolve_pairs(settings: SweepSettings, corpus: str | None = None, content_dir: str | None = None,
                  style_dir: str | None = None, paper_dir: str | None = None) -> list[SongPair]:
    """The corpus from the command line or the config, checked before any trial (pre-flight)."""
    spec = corpus if corpus is not None else settings.corpus
    if isinstance(spec, str) and spec not in ("builtin", "builtin-reverse", "paper") and not Path(spec).exists():
        beside = settings.base_dir / spec
        spec = str(beside) if beside.exists() else spec
    pairs = resolve_corpus(spec, content_dir, style_dir, paper_dir, source=str(settings.base_dir / "config"))
    preflight(pairs, settings.base_config().offset_seconds)
    return pairs


def check_results_dir(results_dir: Path) -> None:
    """The results folder exists or can be made, and is writable (one-line error otherwise)."""
    ensure_writable_folder(results_dir, "results")


def loss_objective_warning(settings: SweepSettings) -> str | None:
    if settings.objective == "loss" and {"alpha", "beta"} & set(settings.search):
        return ("warning: --objective loss with alpha/beta searched rewards small weights (the total loss "
                "scales with them); prefer --objective quality or fix alpha and beta")
    return None


def prepare(plan: SweepPlan) -> optuna.Study:
    """Open or create the study, enqueue the paper's rows in a new one, recover stale trials."""
    check_results_dir(plan.results_dir)
    study = open_study(plan)
    stale = fail_stale_trials(study, plan.settings.study["stale_after_seconds"])
    if stale:
        print(f"re-running {len(stale)} trial(s) left RUNNING by a stopped process: {stale}", file=sys.stderr)
    return study


def interrupted_requeue(study: optuna.Study) -> None:
    """Trials discarded as interrupted whose retry never got enqueued (a second Ctrl-C) are enqueued."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    for trial in trials:
        if trial.user_attrs.get("discarded") == "interrupted" and trial.number not in retried:
            requeue(study, trial)


# ---------------------------------------------------------------- re-evaluation and the report


def top_trials(study: optuna.Study, k: int) -> list[FrozenTrial]:
    """The k best completed, original (not repeated, not discarded) trials."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if not is_discarded(t) and "repeat_of" not in t.user_attrs]
    if len(study.directions) > 1:
        return sorted(done, key=lambda t: sum(t.values))[:k]
    return sorted(done, key=lambda t: t.values[0])[:k]


def reevaluate(study: optuna.Study, plan: SweepPlan, k: int, seeds: int) -> Any:
    """Re-run the top k configurations with `seeds` seeds over every pair (no pruning); rows per
    (trial, seed) are written to results/<study>/reevaluate.csv and returned as a DataFrame."""
    import pandas as pd

    from .io import write_csv

    cache = PairCache()
    rows = []
    for trial in top_trials(study, k):
        for offset in range(seeds):
            seed = plan.seed + offset
            config = plan.settings.config_for(dict(trial.params), seed=seed)
            outcomes = [run_pair(pair, i, config, cache) for i, pair in enumerate(plan.pairs)]
            failed = [o.row["error"] for o in outcomes if o.row["status"] != "ok"]
            summary = summarise(outcomes)
            rows.append({"trial": trial.number, "seed": seed, **dict(trial.params),
                         **{k2: summary[k2] for k2 in ("quality_score", "style_distance", "content_distance",
                                                       "spectral_convergence", "final_loss")},
                         "error": "; ".join(failed)})
            if not plan.quiet:
                print(f"re-evaluated trial {trial.number} seed {seed}: quality {summary['quality_score']}",
                      file=sys.stderr, flush=True)
    frame = pd.DataFrame(rows)
    write_csv(plan.results_dir / "reevaluate.csv", frame)
    return frame


def _best_spectrogram_plot(plan: SweepPlan, best: FrozenTrial, path: Path) -> bool:
    from .report import plot_spectrograms

    archive = plan.results_dir / "best" / f"trial_{best.number:04d}" / "spectrograms.npz"
    if not archive.exists():
        return False
    with np.load(archive) as data:
        pair = sorted({name.split("/")[0] for name in data.files})[0]
        specs = {f"{pair}: {role}": data[f"{pair}/{role}"].astype(np.float32)
                 for role in ("content", "style", "output")}
    config = plan.settings.base_config()
    plot_spectrograms(specs, path, config.sample_rate_hz, config.hop,
                      title=f"best trial {best.number}: {describe_params(best.params)}")
    return True


def describe_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def write_report(study: optuna.Study, plan: SweepPlan) -> Path:
    """trials.csv, pairs.csv, results.md and the PNG plots under results/<study>/ (atomically).

    A plot that cannot be drawn (too few trials, no alpha/beta searched) is skipped with a note.
    """
    import pandas as pd

    from . import report
    from .io import write_csv, write_text

    folder = plan.results_dir
    trials = [t for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING]
    frame = report.trial_table(trials, plan.objective)
    write_csv(folder / "trials.csv", frame)
    write_csv(folder / "pairs.csv", report.pair_table(trials))
    notes: list[str] = []
    plots: list[str] = []
    completed = [t for t in trials if t.state == TrialState.COMPLETE and not is_discarded(t)]
    best = top_trials(study, 3)

    def draw(name: str, needs: int, action: Any) -> None:
        if len(completed) < needs:
            notes.append(f"{name} skipped: needs {needs} completed trial(s), the study has {len(completed)}")
            return
        try:
            if action(folder / name) is not False:
                plots.append(name)
        except Exception as err:  # a plot never stops the report
            notes.append(f"{name} skipped: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")

    draw("by_activation.png", 1, lambda p: report.plot_by_activation(frame, p))
    draw("history.png", 1, lambda p: report.plot_optuna("history", study, p))
    draw("importance.png", 2, lambda p: report.plot_optuna("importance", study, p))
    draw("alpha_beta.png", 1, lambda p: report.plot_alpha_beta(frame, p, plan.objective))
    draw("runtime_quality.png", 1, lambda p: report.plot_runtime_quality(frame, p))
    draw("loss_curves.png", 1, lambda p: report.plot_loss_curves(best, p))
    if best:
        draw("best_spectrograms.png", 1, lambda p: _best_spectrogram_plot(plan, best[0], p) or notes.append(
            f"best_spectrograms.png skipped: the outputs of trial {best[0].number} are not under {folder / 'best'}")
            or False)
    reevaluation_path = folder / "reevaluate.csv"
    reevaluation = pd.read_csv(reevaluation_path) if reevaluation_path.exists() else None
    fixed = ", ".join(f"{k}={v}" for k, v in plan.settings.fixed.items()) or "TransferConfig defaults"
    meta = {"study": plan.study_name, "objective": plan.objective, "trials": plan.trials,
            "params": list(plan.settings.search), "fixed": fixed + f", seed={plan.seed}",
            "corpus": f"{len(plan.pairs)} pairs ({', '.join(p.name for p in plan.pairs)})"}
    path = folder / "results.md"
    write_text(path, report.results_markdown(frame, meta, reevaluation, plots, notes))
    return path


# ---------------------------------------------------------------- command line


def build_parser() -> Any:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python sweep.py", description="Optuna sweep of random-network audio style transfer over a corpus "
        "of song pairs: tables, plots and the paper's four rows under results/<study>/.")
    parser.add_argument("--config", default="configs/default.yaml", help="sweep config YAML (default: %(default)s)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config entry by dotted key, e.g. --set fixed.iterations=50 "
                             "--set search.alpha.low=1e-3 (repeatable)")
    parser.add_argument("--trials", type=int, help="trials in total for the study, across processes and "
                        "restarts (default: the config's study.trials)")
    parser.add_argument("--study", help="study name (default: the config file's name); an existing one resumes")
    parser.add_argument("--storage", help="Optuna storage URL: sqlite:///FILE, postgresql://USER@HOST/DB, "
                        "journal:FILE (default: a journal file results/<study>/study.journal)")
    parser.add_argument("--results", default="results", help="folder holding results/<study>/ (default: %(default)s)")
    parser.add_argument("--workers", type=int, help="processes to run here, sharing the storage, each with "
                        "cores/N torch threads (default: one per CPU core, at most 8; 1 with a GPU)")
    parser.add_argument("--seed", type=int, help="study seed (default: the config's study.seed)")
    parser.add_argument("--objective", choices=("quality", "loss", "pareto"),
                        help="quality (fair score), loss (final total loss) or pareto (content and style distance)")
    parser.add_argument("--corpus", help="builtin, builtin-reverse, paper or a corpus YAML file")
    parser.add_argument("--content-dir", help="folder of content songs (with --style-dir)")
    parser.add_argument("--style-dir", help="folder of style songs (paired by name, else by sorted order)")
    parser.add_argument("--paper-dir", help="folder with the paper's imperial.mp3 and usa.mp3 (--corpus paper)")
    parser.add_argument("--report-only", action="store_true", help="rebuild tables and plots from the storage")
    parser.add_argument("--reevaluate", type=int, default=0, metavar="K", help="re-run the top K configurations")
    parser.add_argument("--seeds", type=int, default=3, metavar="S", help="seeds per re-run configuration")
    parser.add_argument("--quiet", action="store_true", help="no per-trial progress lines")
    return parser


def plan_from_args(args: Any) -> SweepPlan:
    """Parse and check everything (config, corpus, results folder, storage) before any trial."""
    from .sweepconfig import load_settings

    overrides = list(args.overrides)
    for key in ("trials", "seed", "objective"):
        if getattr(args, key) is not None:
            overrides.append(f"study.{key}={getattr(args, key)}")
    settings = load_settings(args.config, overrides)
    workers = default_workers() if args.workers is None else args.workers
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if args.reevaluate < 0 or args.seeds < 1:
        raise ConfigError("--reevaluate K needs K >= 0 and --seeds S needs S >= 1")
    name = args.study or Path(args.config).stem
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ConfigError(f"--study name may hold letters, digits, '-', '_' and '.', got {name!r}")
    pairs = resolve_pairs(settings, args.corpus, args.content_dir, args.style_dir, args.paper_dir)
    results_dir = Path(args.results) / name
    check_results_dir(results_dir)
    return SweepPlan(settings, pairs, name, results_dir, args.storage, settings.study["trials"], workers,
                     args.quiet)


def sweep(args: Any) -> int:
    """The whole sweep: check, prepare, run the workers, then write the report (also after Ctrl-C)."""
    catch_stop_signals()
    plan = plan_from_args(args)
    limit_threads(os.cpu_count() or 1)  # this process's own work (re-evaluation); workers set theirs
    warning = loss_objective_warning(plan.settings)
    if warning and not args.report_only:
        print(warning, file=sys.stderr)
    study = open_study(plan, create=False) if args.report_only else prepare(plan)
    if args.report_only and args.trials is None:
        plan.trials = int(study.user_attrs.get("trials", plan.trials))
    elif not args.report_only:
        study.set_user_attr("trials", plan.trials)
    status = 0
    if not args.report_only:
        done = counted_trials(study.get_trials(deepcopy=False))
        print(f"study '{plan.study_name}' ({plan.objective}): {done}/{plan.trials} trials done, "
              f"{len(plan.pairs)} pairs, {plan.workers} worker(s); storage "
              f"{_mask(plan.storage_url) if plan.storage_url else journal_path(plan.results_dir)}", file=sys.stderr)
        try:
            run_workers(plan)
        except KeyboardInterrupt:
            print("interrupted: finished trials stay recorded; the running one re-runs on resume; writing the "
                  "report", file=sys.stderr)
            interrupted_requeue(study)
            status = 130
    if args.reevaluate and status == 0:
        reevaluate(study, plan, args.reevaluate, args.seeds)
    path = write_report(study, plan)
    print(f"wrote {path}, {plan.results_dir / 'trials.csv'}, {plan.results_dir / 'pairs.csv'} and plots",
          file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python sweep.py`: bad input is one line and exit status 2."""
    from .cli import run_cli

    args = build_parser().parse_args(argv)
    return run_cli(lambda: sweep(args))
