"""Reading settings from YAML and the command line: numbers, flags and unknown keys, each with a
one-line ConfigError that names where the value came from (`where`)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from ..errors import ConfigError


def number(value: Any, where: str, integer: bool = False, finite: bool = True) -> float | int:
    """A number, also from strings such as '1e-3' (which YAML 1.1 reads as text); never a bool.
    `integer`: a whole number, returned as int ('3', 3.0 and 3 all give 3)."""
    if isinstance(value, bool):
        raise ConfigError(f"{where} must be a number, got {value!r}")
    try:
        result = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer beyond any float
        raise ConfigError(f"{where} must be a number, got {value!r}") from None
    if finite and not math.isfinite(result):
        raise ConfigError(f"{where} must be finite, got {value!r}")
    if integer:
        if not result.is_integer():
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return int(result)
    return result


def flag(value: Any, where: str) -> bool:
    """true/false, also as the strings yes/no/on/off."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off"):
        return value.lower() in ("true", "yes", "on")
    raise ConfigError(f"{where} must be true or false, got {value!r}")


def reject_unknown(data: Iterable[str], known: Iterable[str], label: str, source: str) -> None:
    """ConfigError naming the first key of `data` not in `known`; `label` formats it, e.g. "section '{}'"."""
    known = list(known)
    unknown = sorted(set(data) - set(known), key=str)  # YAML keys may be numbers or null too
    if unknown:
        raise ConfigError(f"{source}: unknown {label.format(unknown[0])} (known: {', '.join(known)})")
