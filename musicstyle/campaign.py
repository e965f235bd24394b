"""One resumable runner for a plan of runs: skip what runs.csv holds, run the rest (in worker processes
when asked), write runs.csv after every run, print an ETA, stop cleanly after a time budget.

A run is a dict with a unique "run_id" (or any object, with `ident` giving its id). `run_one(run)` returns
the run's record (a dict with "run_id", its results, "state" "ok" or "failed", and "seconds"); it is a
module-level function or a partial of one, so that a spawned worker can call it. A failed run is recorded
with its reason and runs again next time; an "ok" run never does. Worker processes each get cores /
workers torch threads and one BLAS thread, and call `initializer(*initargs)` once (to load what every run
of the process shares; with one worker, in this process). Used by truth/ (validation, verdict) and
paper/ (the reproduction).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import pandas as pd

from .util.io import write_csv
from .util.machine import limit_threads
from .util.progress import format_duration

Record = dict[str, Any]


def _run_id(run: Any) -> str:
    return run["run_id"]


def finished_records(csv: Path) -> list[Record]:
    """The ok rows of an earlier invocation's runs.csv (failed rows are dropped: they run again)."""
    if not csv.exists():
        return []
    return [r for r in pd.read_csv(csv).to_dict("records") if r.get("state") == "ok"]


def _start(threads: int, initializer: Callable[..., None] | None, initargs: tuple) -> None:
    limit_threads(threads)
    if initializer is not None:
        initializer(*initargs)


def remaining_estimate(todo_kinds: list[str], done: list[tuple[str, float]], workers: int) -> str:
    """'ETA 1.6 h' for runs of `todo_kinds` from the mean seconds of the finished (kind, seconds); 'ETA > ...'
    while a kind left to run has no finished run yet (its cost is unknown, so the figure is a lower bound)."""
    seconds: dict[str, list[float]] = {}
    for kind, spent in done:
        seconds.setdefault(kind, []).append(spent)
    known = [sum(seconds[k]) / len(seconds[k]) for k in todo_kinds if k in seconds]
    unknown = sum(1 for k in todo_kinds if k not in seconds)
    text = format_duration(sum(known) / max(workers, 1))
    if unknown:
        return f"ETA {'> ' + text if known else 'unknown'} ({unknown} runs of kinds not timed yet)"
    return f"ETA {text}"


def run_all(runs: list[Any], run_one: Callable[[Any], Record], csv: Path, workers: int = 1,
            budget_minutes: float | None = None, initializer: Callable[..., None] | None = None,
            initargs: tuple = (), label: Callable[[Record], str] | None = None,
            kind: Callable[[Any], str] = lambda run: "run", ident: Callable[[Any], str] = _run_id,
            records: list[Record] | None = None) -> pd.DataFrame:
    """Run every run that `csv` lacks as ok; return all the plan's records (earlier ones first).

    No new run starts after `budget_minutes` (running ones finish and are kept); rerun to resume. The ETA
    times each `kind` of run (for instance its arm and budget) on its own. `records`: the rows to start
    from, when the caller has read (and added to) runs.csv itself."""
    records = finished_records(csv) if records is None else list(records)  # every ok row stays in runs.csv
    done_ids = {r["run_id"] for r in records}
    todo = [r for r in runs if ident(r) not in done_ids]
    kind_of = {ident(r): kind(r) for r in runs}
    timed: list[tuple[str, float]] = []  # (kind, seconds) of this invocation's runs
    start = time.perf_counter()
    workers = max(1, min(workers, len(todo)))

    def out_of_time() -> bool:
        return budget_minutes is not None and time.perf_counter() - start > budget_minutes * 60

    def record_done(index: int, record: Record) -> None:
        records.append(record)
        write_csv(csv, pd.DataFrame(records))
        timed.append((kind_of[record["run_id"]], float(record.get("seconds", 0.0))))
        recorded = {d["run_id"] for d in records}
        left = [kind_of[ident(r)] for r in todo if ident(r) not in recorded]
        detail = label(record) if label else record["state"]
        print(f"run {index}/{len(todo)} {record['run_id']}: {detail} in {record.get('seconds', 0):.0f} s; "
              f"{remaining_estimate(left, timed, workers)}", file=sys.stderr, flush=True)

    if workers == 1:
        if initializer is not None:  # in this process, with its own threads
            initializer(*initargs)
        for index, run in enumerate(todo, 1):
            if out_of_time():
                print(f"stopping after {budget_minutes:g} min; run the same command to resume", file=sys.stderr)
                break
            record_done(index, run_one(run))
        return _planned(records, {ident(r) for r in runs})
    threads = max(1, (os.cpu_count() or 1) // workers)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # BLAS in the workers too
        os.environ[name] = str(threads)
    queue = list(todo)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start,
                             initargs=(threads, initializer, initargs)) as pool:
        running: set[Future] = set()
        index = 0
        while queue or running:
            while queue and len(running) < workers and not out_of_time():
                running.add(pool.submit(run_one, queue.pop(0)))
            if not running:
                print(f"stopping after {budget_minutes:g} min; run the same command to resume", file=sys.stderr)
                break
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                index += 1
                record_done(index, future.result())
    return _planned(records, {ident(r) for r in runs})


def _planned(records: list[Record], wanted: set[str]) -> pd.DataFrame:
    return pd.DataFrame([r for r in records if r["run_id"] in wanted])

