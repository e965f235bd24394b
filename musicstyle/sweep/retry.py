"""Riding out a database restart: a worker that loses its storage connection waits with backoff for
up to `study.storage_retry_seconds`, discards and re-queues the trial it was running (its result
may not have been stored), and goes on; past the limit it stops with one line.

Why discard the running trial rather than retry the failed call: a call cut off by the restart may
or may not have been committed (a `tell` whose answer was lost), so the trial is marked by a fresh
call afterwards. `discard` refuses a trial that already finished, so a committed result is kept
once and an uncommitted one is re-run: nothing lost, nothing counted twice.
"""

from __future__ import annotations

import datetime
import random
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import optuna
from optuna.trial import TrialState

from .storage import StorageError
from .trials import discard, requeue, worker_identity

T = TypeVar("T")
CONNECTION_WORDS = ("server closed the connection", "connection refused", "could not connect",
                    "terminating connection", "connection already closed", "connection to server",
                    "the database system is", "ssl connection has been closed", "server has gone away",
                    "lost connection", "connection reset", "no connection to the server")


def is_connection_error(err: BaseException | None) -> bool:
    """The storage's server cannot be reached (restarting, network cut), as opposed to a bad request;
    also when Optuna wrapped that error (StorageInternalError from a failed commit)."""
    seen = 0
    while err is not None and seen < 10:
        if _is_connection_error(err):
            return True
        err = err.__cause__ or err.__context__
        seen += 1
    return False


def _is_connection_error(err: BaseException) -> bool:
    try:
        from sqlalchemy import exc
    except ImportError:  # no RDB storage in use
        return False
    if isinstance(err, exc.DBAPIError) and err.connection_invalidated:
        return True
    if isinstance(err, (exc.OperationalError, exc.InterfaceError, exc.DisconnectionError)):
        return True
    text = str(err).lower()
    return type(err).__name__ in ("OperationalError", "InterfaceError") or any(w in text for w in CONNECTION_WORDS)


def backoff_seconds(attempt: int) -> float:
    """0.5, 1, 2, 4, 8, then 10 s between tries, with up to 25 % jitter so workers do not retry in step."""
    return min(0.5 * 2 ** attempt, 10.0) * (1 + 0.25 * random.random())


def retrying(call: Callable[[], T], limit_seconds: float, what: str, first: BaseException | None = None) -> T:
    """`call()`, retried with backoff while the storage is unreachable, for up to `limit_seconds`."""
    start = time.monotonic()
    attempt = 0
    error = first
    while True:
        if error is not None:
            waited = time.monotonic() - start
            if waited >= limit_seconds:
                reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
                raise StorageError(f"lost the study storage while {what} and it did not come back within "
                                   f"{limit_seconds:g} s ({reason}); finished trials are kept: run the same "
                                   "command again to resume (study.storage_retry_seconds sets the wait)") from None
            time.sleep(min(backoff_seconds(attempt), max(0.0, limit_seconds - waited) + 0.05))
            attempt += 1
        try:
            return call()
        except Exception as err:
            if not is_connection_error(err):
                raise
            error = err


def recover_own_trials(study: optuna.Study, lost_at: datetime.datetime) -> list[int]:
    """Discard (and re-queue) the RUNNING trials of this process, whose results may be lost, and the
    orphans of a lost `ask`: RUNNING trials started before the connection was lost that never got
    their `worker` attr (every worker sets it right after asking), which no one would finish."""
    me = worker_identity()
    recovered = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get("worker")
        orphan = owner is None and trial.datetime_start is not None and trial.datetime_start < lost_at
        if (owner == me or orphan) and discard(
                study, trial.number, "interrupted", "the storage connection was lost during the trial; re-run"):
            recovered.append(trial.number)
    # queue them again, and any interrupted trial of this process whose re-queue a lost connection cut off
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    for trial in trials:
        mine = trial.number in recovered or trial.user_attrs.get("worker") == me
        if mine and trial.user_attrs.get("discarded") == "interrupted" and trial.number not in retried:
            requeue(study, trial)
    return recovered


def after_connection_loss(study: optuna.Study, limit_seconds: float, err: BaseException, tag: str = "") -> None:
    """Wait for the storage to answer again (or StorageError), then recover this process's trial."""
    print(f"{tag}the study storage is unreachable ({type(err).__name__}); retrying for up to {limit_seconds:g} s",
          file=sys.stderr, flush=True)
    start = time.monotonic()
    lost_at = datetime.datetime.now()
    recovered: Any = retrying(lambda: recover_own_trials(study, lost_at), limit_seconds,
                              "recovering the running trial", err)
    print(f"{tag}the study storage is back after {time.monotonic() - start:.1f} s; re-queued trial(s) {recovered}",
          file=sys.stderr, flush=True)
