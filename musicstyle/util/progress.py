"""Progress lines with an ETA, for a transfer's iterations, a sweep's trials and reproduce's runs."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def format_duration(seconds: float) -> str:
    """'42 s', '17 min' or '1.6 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def eta(done: int, total: int, seconds_each: float | None, parallel: int = 1) -> str:
    """'ETA 1.6 h' for the `total - done` items left at `seconds_each` over `parallel` workers; '' if unknown."""
    if seconds_each is None:
        return ""
    return f"ETA {format_duration(max(total - done, 0) * seconds_each / max(parallel, 1))}"


def iteration_printer(label: str = "", every_seconds: float = 2.0) -> Callable[[int, int, float], None]:
    """A transfer's progress callback: iteration, loss, elapsed and ETA, about every `every_seconds`."""
    start = time.perf_counter()
    last = [0.0]

    def show(iteration: int, total: int, loss: float) -> None:
        now = time.perf_counter() - start
        if now - last[0] < every_seconds and iteration < total:
            return
        last[0] = now
        print(f"{label}iteration {iteration}/{total}  loss {loss:.6g}  {format_duration(now)}  "
              f"{eta(iteration, total, now / max(iteration, 1))}", file=sys.stderr, flush=True)

    return show
