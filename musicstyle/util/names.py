"""Names that become file or folder names (a study under results/, a pair's WAV under best/): plain
ASCII letters, digits, '-', '_' and '.', never '..' or a path, so no name writes outside its folder."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import ConfigError

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # starts with a letter or digit: no '.', '..', '-x'


def is_safe_name(name: str) -> bool:
    return isinstance(name, str) and SAFE_NAME.fullmatch(name) is not None and ".." not in name


def check_name(name: str, what: str) -> str:
    """`name` unchanged when safe, else a one-line ConfigError saying what is allowed."""
    if not is_safe_name(name):
        raise ConfigError(f"{what} may hold ASCII letters, digits, '-', '_' and '.' (starting with a letter or "
                          f"digit, at most 100, no '..'), got {name!r}")
    return name


def safe_name(text: str, fallback: str = "pair") -> str:
    """A safe name made from any text (a file's stem): other characters become '-'."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:100].replace("..", "-")
    return name if is_safe_name(name) else fallback


def inside(folder: Path, name: str) -> Path:
    """folder / name, refusing a name that would leave `folder` (defence behind `check_name`)."""
    path = (folder / name).resolve()
    if path.parent != folder.resolve():
        raise ConfigError(f"refusing to write {name!r} outside {folder}")
    return folder / name


def slug(name: str) -> str:
    """`name` with every character but letters, digits, '-' and '_' turned into '_' (a player's or clip's file stem)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in str(name))
