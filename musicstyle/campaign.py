"""One resumable runner for a plan of runs: skip what runs.csv holds, run the rest (in worker processes
when asked), write runs.csv after every run, print an ETA, stop cleanly after a time budget.

A run is a dict with a unique "run_id"; `run_one(run) -> record` is a module-level function (so that a
spawned worker can call it) returning the run's dict with its results, "state" ("ok" or "failed") and
"seconds". A failed run is recorded with its reason and retried by the next invocation; an "ok" run is
never run again. The worker processes each get cores / workers torch threads and one BLAS thread, and
`initializer(*initargs)` once (load what every run of the process shares).
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


def finished_records(csv: Path) -> list[Record]:
    """The ok rows of an earlier invocation's runs.csv (failed rows are dropped: they run again)."""
    if not csv.exists():
        return []
    return [r for r in pd.read_csv(csv).to_dict("records") if r.get("state") == "ok"]


def _start(threads: int, initializer: Callable[..., None] | None, initargs: tuple) -> None:
    limit_threads(threads)
    if initializer is not None:
        initializer(*initargs)


def remaining_estimate(todo: list[Record], done: list[Record], kind: Callable[[Record], str], workers: int) -> str:
    """'ETA 1.6 h' from the mean seconds of finished runs of each kind; 'ETA > ...' while a kind left to run
    has no finished run yet (its cost is unknown, so the figure is a lower bound)."""
    seconds: dict[str, list[float]] = {}
    for record in done:
        if record.get("state") == "ok":
            seconds.setdefault(kind(record), []).append(float(record.get("seconds", 0.0)))
    known = [sum(v) / len(v) for v in (seconds.get(kind(r)) for r in todo) if v]
    unknown = sum(1 for r in todo if kind(r) not in seconds)
    text = format_duration(sum(known) / max(workers, 1))
    return f"ETA > {text} ({unknown} runs of kinds not timed yet)" if unknown else f"ETA {text}"


def run_all(runs: list[Record], run_one: Callable[[Record], Record], csv: Path, workers: int = 1,
            budget_minutes: float | None = None, initializer: Callable[..., None] | None = None,
            initargs: tuple = (), label: Callable[[Record], str] | None = None,
            kind: Callable[[Record], str] = lambda run: "run") -> pd.DataFrame:
    """Run every run that `csv` lacks as ok; return all the plan's records (earlier ones first).

    No new run starts after `budget_minutes` (running ones finish and are kept); rerun to resume. The ETA
    times each `kind` of run (for instance its arm and budget) on its own."""
    records = [r for r in finished_records(csv) if r["run_id"] in {run["run_id"] for run in runs}]
    done_ids = {r["run_id"] for r in records}
    todo = [r for r in runs if r["run_id"] not in done_ids]
    start = time.perf_counter()
    workers = max(1, min(workers, len(todo)))

    def out_of_time() -> bool:
        return budget_minutes is not None and time.perf_counter() - start > budget_minutes * 60

    def record_done(index: int, record: Record) -> None:
        records.append(record)
        write_csv(csv, pd.DataFrame(records))
        left = [r for r in todo if r["run_id"] not in {d["run_id"] for d in records}]
        detail = label(record) if label else record["state"]
        print(f"run {index}/{len(todo)} {record['run_id']}: {detail} in {record.get('seconds', 0):.0f} s; "
              f"{remaining_estimate(left, records, kind, workers)}", file=sys.stderr, flush=True)

    if workers == 1:
        _start(max(1, torch_threads_now()), initializer, initargs)
        for index, run in enumerate(todo, 1):
            if out_of_time():
                print(f"stopping after {budget_minutes:g} min; run the same command to resume", file=sys.stderr)
                break
            record_done(index, run_one(run))
        return pd.DataFrame(records)
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
    return pd.DataFrame(records)


def torch_threads_now() -> int:
    import torch

    return torch.get_num_threads()
