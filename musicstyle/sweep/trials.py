"""Counting trials to an exact total, and recovering trials left RUNNING by a stopped process.

A trial is *counted* when it finished, failed or was pruned and is not *discarded*. Discarded
trials (FAIL plus a user attr saying why) are those a stopped process left behind ("stale"),
those Ctrl-C cut short ("interrupted") and those started after the study had its total
("surplus"); the first two are queued again with the same parameters ("retry_of").

Why not Optuna's MaxTrialsCallback and RetryFailedTrialCallback: MaxTrialsCallback stops a
process after its trial, so parallel workers overshoot the total (optuna issues #1883, #3518),
and the retry callback needs an RDB heartbeat, which the default journal storage lacks. The
rule here is the same on every storage: a heartbeat user attr, a slot claimed before the trial
runs, and a surplus trial discarded.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from .stop import raise_if_stopped
from .storage import QUEUED, enqueue, mark_trial

HEARTBEAT_SECONDS = 30.0  # how often a running trial writes its `heartbeat` user attr


def is_discarded(trial: FrozenTrial) -> bool:
    return "discarded" in trial.user_attrs


def is_counted(trial: FrozenTrial) -> bool:
    """Finished, failed or pruned, and not discarded (stale, interrupted or surplus)."""
    return trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL) and not is_discarded(trial)


def counted_trials(trials: list[FrozenTrial]) -> int:
    return sum(is_counted(t) for t in trials)


def trial_by_number(study: optuna.Study, number: int) -> FrozenTrial:
    """The stored trial `number` as it is now."""
    return study.get_trials(deepcopy=False)[number]


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def worker_identity() -> dict[str, Any]:
    """Host, pid and process start time: recorded on each trial so others can tell if its process died."""
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


class Heartbeat:
    """Progress callback that writes a `heartbeat` user attr at most every HEARTBEAT_SECONDS; called at
    each optimiser iteration, it is also where a Ctrl-C stops the running trial (`stop.raise_if_stopped`)."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial
        self.last = 0.0

    def __call__(self, *_: Any) -> None:
        raise_if_stopped()
        now = time.time()
        if now - self.last >= HEARTBEAT_SECONDS:
            self.last = now
            try:
                self.trial.set_user_attr("heartbeat", now)
            except Exception:  # best effort: an unreachable storage is handled after the trial (retry.py)
                pass


def requeue(study: optuna.Study, trial: FrozenTrial) -> None:
    """Enqueue a discarded trial's parameters again (keeping its paper-row label).

    An enqueued trial (a paper row) keeps all its queued parameters even when it was stopped before
    suggesting them all; what it had suggested is kept too.
    """
    attrs = {k: trial.user_attrs[k] for k in ("paper_row", "paper_loss") if k in trial.user_attrs}
    enqueue(study, trial.user_attrs.get(QUEUED, {}) | dict(trial.params), attrs | {"retry_of": trial.number})


def discard(study: optuna.Study, number: int, why: str, reason: str) -> bool:
    """Mark RUNNING trial `number` FAIL + discarded; False if another process finished it first."""
    try:
        mark_trial(study, number, {"discarded": why, "fail_reason": reason})
        study.tell(number, state=TrialState.FAIL)
    except (RuntimeError, ValueError, optuna.exceptions.UpdateFinishedTrialError):
        return False
    return True


def fail_stale_trials(study: optuna.Study, stale_after_seconds: float) -> list[int]:
    """Fail every stale RUNNING trial and enqueue its parameters again; return their numbers."""
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if is_stale(trial, stale_after_seconds):
            if discard(study, trial.number, "stale", "its process stopped while the trial was running; re-run"):
                requeue(study, trial)
                failed.append(trial.number)
    return failed


def claim_slot(study: optuna.Study, number: int, total: int) -> bool:
    """True when fewer than `total` counted trials or older running ones exist besides trial `number`."""
    trials = study.get_trials(deepcopy=False)
    ahead = sum(1 for t in trials if t.number != number and
                (is_counted(t) or (t.state == TrialState.RUNNING and t.number < number)))
    return ahead < total


def room_for_another(study: optuna.Study, total: int) -> bool:
    """Fewer than `total` trials counted or running: worth asking for one more."""
    trials = study.get_trials(deepcopy=False)
    busy = sum(1 for t in trials if t.state == TrialState.RUNNING)
    return counted_trials(trials) + busy < total


def requeue_interrupted(study: optuna.Study) -> None:
    """Trials discarded as interrupted whose retry never got enqueued (a second Ctrl-C) are enqueued."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    for trial in trials:
        if trial.user_attrs.get("discarded") == "interrupted" and trial.number not in retried:
            requeue(study, trial)


def top_trials(study: optuna.Study, k: int) -> list[FrozenTrial]:
    """The k best completed, original (not repeated, not discarded) trials (several objectives: by their sum)."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if not is_discarded(t) and "repeat_of" not in t.user_attrs]
    return sorted(done, key=lambda t: sum(t.values))[:k]
