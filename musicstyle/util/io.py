"""Atomic writes: a reader never sees a half-written output, and a crash leaves the old file."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import OutputError

DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG)


def output_error(path: Path, err: OSError) -> OutputError:
    """The one line for an output that cannot be written because of its disk or folder."""
    return OutputError(f"cannot write {path}: {err.strerror or err} (the old file, if any, is unchanged; "
                       "free space or make the folder writable, then run the same command again to resume)")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it over `path`, else delete it.
    A full disk or read-only folder (DISK_ERRNOS) becomes a one-line OutputError."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
        os.close(fd)
    except OSError as err:
        if err.errno in DISK_ERRNOS:
            raise output_error(path, err) from None
        raise
    tmp = Path(tmp_name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file a normal file's mode
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.errno in DISK_ERRNOS:
            raise output_error(path, err) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 110) -> None:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    plt.close(fig)


def write_csv(path: str | os.PathLike, frame: Any) -> None:
    """Write a pandas DataFrame as CSV atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def ensure_writable_folder(folder: str | os.PathLike, what: str = "output") -> None:
    """Create `folder` if needed and check it is writable: a one-line MusicStyleError otherwise."""
    from ..errors import MusicStyleError

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise MusicStyleError(f"cannot create {what} folder {folder}: {err.strerror}") from None
    if not os.access(folder, os.W_OK):
        raise MusicStyleError(f"{what} folder is not writable: {folder}")


def earlier_runs(out_dir: str | os.PathLike) -> Any:
    """runs.csv of an earlier invocation, for --report-only; a one-line ConfigError when there is none."""
    import pandas as pd

    from ..errors import ConfigError

    csv = Path(out_dir) / "runs.csv"
    if not csv.exists():
        raise ConfigError(f"--report-only needs the runs of an earlier invocation: no {csv}")
    return pd.read_csv(csv)
