"""The worker loop: ask a trial, run the objective, tell the result; N processes share the study.

Each process runs `run_one` until the study has its total. Ctrl-C and SIGTERM stop a worker
cleanly: its running trial is discarded as "interrupted" and queued again, finished trials stay.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import sys
import time
import warnings

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from ..errors import MusicStyleError, OutputError
from ..util.machine import limit_threads
from ..util.progress import eta
from .objective import PairCache, PairOutcome, improves, keep_outputs, objective
from .plan import SweepPlan
from .quarantine import stop_if_too_many
from .retry import after_connection_loss, is_connection_error
from .stop import catch_stop_signals, raise_if_stopped
from .storage import QUEUED, open_study
from .trials import (
    claim_slot,
    counted_trials,
    discard,
    fail_stale_trials,
    is_counted,
    requeue,
    room_for_another,
    trial_by_number,
    worker_identity,
)


def progress_line(study: optuna.Study, plan: SweepPlan, trial: FrozenTrial) -> str:
    """'trial 12 COMPLETE 0.512 in 31 s | 12/200 done, best 0.48 (#7), ETA 1.6 h'."""
    trials = study.get_trials(deepcopy=False)
    done = counted_trials(trials)
    durations = [t.duration.total_seconds() for t in trials if is_counted(t) and t.duration is not None
                 and "repeat_of" not in t.user_attrs]
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
    left = eta(done, plan.trials, float(np.mean(durations)) if durations else None, plan.workers)
    return head + f" | {done}/{plan.trials} done{best}" + (f", {left}" if left else "")


def _tell_failed(study: optuna.Study, trial: optuna.Trial, reason: str) -> FrozenTrial:
    try:
        trial.set_user_attr("fail_reason", reason[:1000])
    except optuna.exceptions.UpdateFinishedTrialError:  # another process failed it as stale meanwhile
        pass
    return study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


def run_one(study: optuna.Study, plan: SweepPlan, cache: PairCache) -> FrozenTrial | None:
    """Ask, run and tell one trial; None when the study already has its N trials."""
    fail_stale_trials(study, plan.settings.study["stale_after_seconds"])
    stop_if_too_many(study, [pair.name for pair in plan.pairs])
    if not room_for_another(study, plan.trials):
        return None
    trial = study.ask()
    trial.set_user_attr("worker", worker_identity())
    trial.set_user_attr("heartbeat", time.time())
    if not claim_slot(study, trial.number, plan.trials):
        frozen = trial_by_number(study, trial.number)
        if discard(study, trial.number, "surplus", "the study reached its trial count while this trial started"):
            if QUEUED in frozen.user_attrs:
                requeue(study, trial_by_number(study, trial.number))
        return None
    outcomes: list[PairOutcome] = []
    try:
        values = objective(trial, plan, cache, outcomes)
        if outcomes and (improves(study, values) or "paper_row" in trial.user_attrs):
            keep_outputs(plan, trial, outcomes)
        frozen = study.tell(trial, values, skip_if_finished=True)
    except optuna.TrialPruned as pruned:
        trial.set_user_attr("prune_reason", str(pruned))
        frozen = study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
    except KeyboardInterrupt:
        if discard(study, trial.number, "interrupted", "interrupted (Ctrl-C); re-run on resume"):
            requeue(study, trial_by_number(study, trial.number))
        raise
    except OutputError:  # disk full or read-only: the trial re-runs on resume, the worker stops
        if discard(study, trial.number, "interrupted", "its outputs could not be written; re-run on resume"):
            requeue(study, trial_by_number(study, trial.number))
        raise
    except Exception as err:  # any error: recorded with its reason, the sweep goes on
        if is_connection_error(err):  # not the trial's fault: run_worker waits, then re-runs it
            raise
        text = str(err).splitlines()[0] if str(err) else ""
        reason = text if isinstance(err, MusicStyleError) else f"{type(err).__name__}: {text}"
        frozen = _tell_failed(study, trial, reason)
    finally:
        gc.collect()
    return frozen


def default_workers() -> int:
    """Worker processes when --workers is not given: one per CPU core (at most 8), one on a GPU."""
    return 1 if torch.cuda.is_available() else max(1, min(os.cpu_count() or 1, 8))


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
        raise_if_stopped()
        try:
            frozen = run_one(study, plan, cache)
        except Exception as err:
            if not is_connection_error(err):
                raise
            after_connection_loss(study, plan.settings.study["storage_retry_seconds"], err, tag)
            continue
        if frozen is None:
            return ran
        ran += 1
        if not plan.quiet:
            print(tag + progress_line(study, plan, frozen), file=sys.stderr, flush=True)
    return ran


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
    context = multiprocessing.get_context("spawn")
    threads = max(1, cores // plan.workers)
    processes = [context.Process(target=_worker_entry, args=(plan, w, threads, os.getpid()), daemon=False)
                 for w in range(plan.workers)]
    for process in processes:
        process.start()
    try:
        while any(p.is_alive() for p in processes):
            for process in processes:
                process.join(timeout=0.2)
            raise_if_stopped()
    except KeyboardInterrupt:
        for process in processes:  # pass the stop on (a terminal's Ctrl-C reached them already: no harm)
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGINT)
        for process in processes:  # let them record their trials
            process.join()
        raise
