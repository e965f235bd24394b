"""Before any trial: the precision the sweep really uses, and what its trials will cost here.

    precision, why = resolve_sweep_precision(settings)      # 'auto'/'bf16' -> what runs, once
    projection = measure(plan)                               # a few timed steps at the config's shapes
    print(projection.line())                                 # one line: precision, why, s/trial, wall time

The timing runs the first pair at each searched filter count (the cost's main knob besides frames and
iterations) and each searched activation (on the infinite-filter limit ELU and SELU run a series that costs
more than ReLU's closed form; a trial is costed at their mean) with `cores // workers` torch threads, as the
workers run: after a one-iteration warm-up, the pair's problem is built (filters, content features, style
target; timed apart) and L-BFGS runs TIMED_ITERATIONS iterations on it (seconds per loss evaluation); then
Griffin-Lim and the fair measures run once, and where the pair has a target the truth measures (its frontier
once, then the run's measures). An iteration is projected at EVALUATIONS_PER_ITERATION evaluations, and a
trial as every pair at that cost; pruning and Adam trials (one evaluation per step) only make it shorter. A config
with a `confirm` section is timed again at the full fidelity for the confirmation's own line.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch

from ..config import TransferConfig
from ..engine.metrics import evaluation_space, fair_measures
from ..engine.network import resolve_precision
from ..engine.optimize import OptimizationResult, cached_problem, clear_problem_cache, optimize_spectrogram
from ..engine.reconstruct import griffin_lim
from ..engine.spectrogram import magnitude_from_log
from ..engine.transfer import load_pair, resolve_device
from ..util.machine import describe
from ..util.progress import format_duration
from .config import SweepSettings, promoted
from .objective import pair_config
from .plan import SweepPlan

TIMED_ITERATIONS = 5  # L-BFGS iterations timed per filter count and activation, after a one-iteration warm-up
# Loss evaluations per L-BFGS iteration over a whole run, for the projection: the first iterations take
# several (line searches from a poor start), which the short timed runs would otherwise extrapolate. The
# value sits at the top of the range of the committed paper runs (results/paper/runs.csv: evaluations /
# iterations), so that the projection errs long.
EVALUATIONS_PER_ITERATION = 1.25


def resolve_sweep_precision(settings: SweepSettings) -> tuple[str, str]:
    """Replace the fixed `precision` ('auto' or 'bf16') by what runs on this machine; (precision, why).

    Done once in the main process, so the trials' configs (trials.csv, results.md) name the precision
    actually used and no run warns about it.
    """
    base = settings.base_config()
    precision, why = resolve_precision(base.precision, resolve_device(base.device))
    if "precision" in settings.search:
        return "searched", "precision is a searched setting"
    if math.isinf(base.filters) and "filters" not in settings.search and precision == "bf16":
        precision, why = "fp32", "the infinite-filter limit (filters inf) runs in float32 (frames x frames products)"
    settings.fixed["precision"] = precision
    return precision, why


def searched_filters(settings: SweepSettings) -> list[int]:
    """The filter counts trials will use: the searched choices (or range ends), else the fixed one."""
    dimension = settings.search.get("filters")
    if dimension is None:
        return [settings.base_config().filters]
    if dimension.choices is not None:
        return sorted(int(c) for c in dimension.choices)
    return [int(dimension.low), int(dimension.high)]


@dataclass
class Projection:
    """Measured seconds per trial at each filter count, and the sweep's projected wall time."""

    precision: str
    reason: str
    seconds_per_trial: dict[int, float]  # filters -> one trial (every pair), seconds
    pairs: int
    iterations: int
    frames: int
    griffin_lim_iters: int
    trials_left: int
    workers: int
    threads: int
    parts: dict[str, float] = field(default_factory=dict)  # per pair at the largest filter count, seconds
    confirmation_seconds: dict[int, float] = field(default_factory=dict)  # filters -> the confirmation's wall time
    confirmation_runs: int = 0

    @property
    def mean_trial_seconds(self) -> float:
        """A trial's cost, filter counts equally likely (as the sampler's random start draws them)."""
        return sum(self.seconds_per_trial.values()) / len(self.seconds_per_trial)

    @property
    def frontier_seconds(self) -> float:
        """Each worker builds each pair's truth frontier once (in parallel with the others)."""
        return self.pairs * self.parts.get("frontier_seconds_once_per_pair", 0.0)

    @property
    def wall_seconds(self) -> float:
        return self.trials_left * self.mean_trial_seconds / max(self.workers, 1) + self.frontier_seconds

    @property
    def worst_wall_seconds(self) -> float:
        """Every trial at the dearest filter count: where TPE goes when more filters score better."""
        return self.trials_left * max(self.seconds_per_trial.values()) / max(self.workers, 1) + self.frontier_seconds

    def line(self) -> str:
        """One line: the precision and why, seconds per trial over the filter counts, projected wall time."""
        low, high = min(self.seconds_per_trial.values()), max(self.seconds_per_trial.values())
        filters = "/".join(str(f) for f in sorted(self.seconds_per_trial))
        span = f"{low:.0f} s" if round(low) == round(high) else f"{low:.0f}-{high:.0f} s"
        truth = " + truth measures (each pair's frontier once per worker)" if self.frontier_seconds else ""
        return (f"projection: precision {self.precision} ({self.reason}); {span} per trial (filters {filters}: "
                f"{self.pairs} pairs x {self.iterations} L-BFGS iterations ({EVALUATIONS_PER_ITERATION:g} "
                f"evaluations each) at {self.frames} frames + Griffin-Lim "
                f"{self.griffin_lim_iters} + fair measures{truth}, {self.threads} torch thread(s) per worker); "
                f"{self.trials_left} trials on {self.workers} worker(s): about {format_duration(self.wall_seconds)} "
                + (f"with the filter counts drawn equally, up to {format_duration(self.worst_wall_seconds)} if the "
                   f"search settles on {max(self.seconds_per_trial, key=self.seconds_per_trial.get)} "
                   if len(self.seconds_per_trial) > 1 else "")
                + "(before pruning)" + self.confirmation_text())

    def confirmation_text(self) -> str:
        if not self.confirmation_seconds:
            return ""
        low, high = min(self.confirmation_seconds.values()), max(self.confirmation_seconds.values())
        span = format_duration(low) if round(low) == round(high) else f"{format_duration(low)}-{format_duration(high)}"
        which = " (all at the smallest / the largest filter count)" if len(self.confirmation_seconds) > 1 else ""
        return (f"; then the confirmation at full fidelity, {self.confirmation_runs} pair-runs: {span}{which}; "
                f"in all about {format_duration(self.total_seconds)}")

    @property
    def total_seconds(self) -> float:
        """The screen (filter counts drawn equally, before pruning) and the confirmation (its mean over them)."""
        confirmation = self.confirmation_seconds.values()
        return self.wall_seconds + (sum(confirmation) / len(confirmation) if confirmation else 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {"precision": self.precision, "reason": self.reason,
                "seconds_per_trial": {str(k): v for k, v in self.seconds_per_trial.items()},
                "mean_trial_seconds": self.mean_trial_seconds, "wall_seconds": self.wall_seconds,
                "worst_wall_seconds": self.worst_wall_seconds, "total_seconds": self.total_seconds,
                "trials_left": self.trials_left, "workers": self.workers, "threads": self.threads,
                "parts": self.parts, "confirmation_seconds": {str(k): v for k, v in self.confirmation_seconds.items()},
                "confirmation_runs": self.confirmation_runs, "line": self.line(), "machine": describe()}


def _timed(action: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    value = action()
    return value, time.perf_counter() - start


def time_pair_runs(plan: SweepPlan, base: TransferConfig, filters: list[int], threads: int
                   ) -> tuple[dict[int, float], dict[str, float], int]:
    """Seconds of one pair-run at `base`'s fidelity per filter count, the mean over the searched activations
    (problem, L-BFGS at EVALUATIONS_PER_ITERATION evaluations per iteration, Griffin-Lim, fair measures),
    timed on the first pair with `threads` torch threads; the parts at the largest count; the frames."""
    dimension = plan.settings.search.get("activation")
    activations = list(dimension.choices) if dimension is not None and dimension.choices else [base.activation]
    device = resolve_device(base.device)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        spectrograms = load_pair(plan.pairs[0].content, plan.pairs[0].style, base)
        per_run: dict[int, float] = {}
        parts: dict[str, float] = {}
        result = None

        def run(config: TransferConfig) -> tuple[float, OptimizationResult, float]:
            """(seconds to build the pair's problem, the run, seconds of the run after it)."""
            clear_problem_cache()  # each trial builds its pairs' problems (the cache holds two)
            problem, setup = _timed(lambda: cached_problem(spectrograms.content, spectrograms.style, config,
                                                           device))
            result, seconds = _timed(lambda: optimize_spectrogram(spectrograms.content, spectrograms.style, config,
                                                                  device, problem=problem))
            return setup, result, seconds

        for count in filters:
            runs = []
            for activation in activations:  # the limit's series activations cost more than ReLU's closed form
                config = base.replace(filters=count, activation=activation, iterations=TIMED_ITERATIONS)
                run(config.replace(iterations=1))  # warm-up (the bf16 step and the series compile once per process)
                setup, result, seconds = run(config)
                per_iteration = seconds / max(result.evaluations, 1) * EVALUATIONS_PER_ITERATION
                runs.append(setup + base.iterations * per_iteration)
                parts |= {f"seconds_per_iteration_{activation}": per_iteration}
            per_run[count] = sum(runs) / len(runs)  # activations drawn equally
            parts |= {"setup_seconds": setup, "seconds_per_iteration": (per_run[count] - setup) / base.iterations}
        clear_problem_cache()
        magnitude = magnitude_from_log(result.spectrogram)
        audio, t_gl = _timed(lambda: griffin_lim(magnitude, base.n_fft, base.hop, base.griffin_lim_iters,
                                                 base.seed, device=device))
        space = evaluation_space(spectrograms.content, spectrograms.style, base.n_fft, base.hop, device=device)
        _, t_measures = _timed(lambda: fair_measures(audio, space, magnitude))
        t_frontier = t_truth = 0.0
        if plan.pairs[0].target is not None:  # the truth measures: the pair's frontier once, then each run
            from ..truth.measures import reference_for

            reference, t_frontier = _timed(lambda: reference_for(plan.pairs[0], base))
            _, t_truth = _timed(lambda: reference.measures(audio))
    finally:
        torch.set_num_threads(before)
    parts |= {"griffin_lim_seconds": t_gl, "measures_seconds": t_measures, "truth_seconds": t_truth,
              "frontier_seconds_once_per_pair": t_frontier}
    frames = int(spectrograms.content.shape[1])
    return {f: s + t_gl + t_measures + t_truth for f, s in per_run.items()}, parts, frames


def measure(plan: SweepPlan, precision: str, reason: str, trials_left: int) -> Projection:
    """Time a few L-BFGS iterations at each searched filter count, Griffin-Lim and the fair measures,
    on the first pair with the workers' thread count; the projection for `trials_left` trials, and for
    the confirmation at full fidelity when the config asks for one (timed the same way at its settings)."""
    settings = plan.settings
    base = pair_config(settings.base_config(), plan.pairs[0]).replace(optimizer="lbfgs")
    threads = max(1, (os.cpu_count() or 1) // max(plan.workers, 1))
    filters = searched_filters(settings)
    per_run, parts, frames = time_pair_runs(plan, base, filters, threads)
    pairs = len(plan.pairs)
    confirmation: dict[int, float] = {}
    runs = promoted(settings.confirm, plan.trials) * settings.confirm["seeds"] * pairs
    if runs:
        full = base.replace(**settings.confirm["fixed"])
        full_run, full_parts, _ = time_pair_runs(plan, full, filters, threads)
        frontiers = pairs * full_parts["frontier_seconds_once_per_pair"]
        confirmation = {f: runs * s / max(min(plan.workers, runs), 1) + frontiers for f, s in full_run.items()}
        parts |= {f"confirm_{k}": v for k, v in full_parts.items()}
    return Projection(precision, reason, {f: pairs * s for f, s in per_run.items()}, pairs, base.iterations, frames,
                      base.griffin_lim_iters, trials_left, plan.workers, threads, parts, confirmation, runs)


def record(study: optuna.Study, precision: str, reason: str, projection: Projection | None) -> None:
    """The precision used, the machine and the projection as study user attrs (results.md reads them)."""
    study.set_user_attr("precision", precision)
    study.set_user_attr("precision_reason", reason)
    study.set_user_attr("machine", describe())
    if projection is not None:
        study.set_user_attr("projection", projection.to_dict())
