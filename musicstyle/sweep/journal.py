"""Repairing the default journal storage after a kill in the middle of a write.

Optuna's journal file is one JSON record per line, appended under a lock. A process killed while
appending leaves a last line without its newline (a torn record). Optuna reads past it, but the
next append would continue that line and make every later read fail. So before the storage is
opened, under the journal's own lock (no live writer is half-way through a record then), a torn
tail is cut off: every complete record is kept and the torn bytes are saved beside the journal.
A damaged record in the middle cannot be repaired safely; that is a one-line StorageError saying
what to do.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from optuna.storages.journal import JournalFileSymlinkLock

from ..errors import MusicStyleError


class JournalError(MusicStyleError):
    """The study journal is damaged beyond the torn last record."""


def damaged_line(path: Path) -> int | None:
    """The number (from 1) of the first complete line that is not a JSON record, or None."""
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith(b"\n"):
                return None  # the torn tail, handled by repair_journal
            try:
                json.loads(line)
            except ValueError:
                return number
    return None


def repair_journal(path: Path) -> str | None:
    """Cut a torn last record off the journal at `path` (saved to `<path>.torn-<time>`); returns a
    note for the user when it did. Raises JournalError naming the line when a record in the middle
    is damaged."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    lock = JournalFileSymlinkLock(str(path))
    lock.acquire()
    try:
        with open(path, "rb+") as handle:
            data = handle.read()
            note = None
            if not data.endswith(b"\n"):
                keep = data.rfind(b"\n") + 1
                saved = path.with_name(f"{path.name}.torn-{time.strftime('%Y%m%dT%H%M%S')}")
                saved.write_bytes(data[keep:])
                handle.truncate(keep)
                handle.flush()
                os.fsync(handle.fileno())
                records = data[:keep].count(b"\n")
                note = (f"note: the study journal {path} ended in a torn record (a process stopped while "
                        f"writing); kept its {records} complete records, saved the {len(data) - keep} torn "
                        f"bytes to {saved.name}")
    finally:
        lock.release()
    bad = damaged_line(path)
    if bad is not None:
        raise JournalError(f"the study journal {path} has a damaged record at line {bad}: keep a copy, then "
                           f"resume from the records before it with `head -n {bad - 1} {path.name} > "
                           f"{path.name}.fixed && mv {path.name}.fixed {path.name}` (in {path.parent}), or "
                           "start a new --study")
    return note
