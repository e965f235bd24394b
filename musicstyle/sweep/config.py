"""The sweep's YAML config: study settings, corpus, fixed run settings and the search space.

Fixed settings and every searched value go through `musicstyle.config.make_config`, so their
defaults and checks live only in `TransferConfig`. Errors are one line naming the file and the key.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import FIELDS, TransferConfig, make_config
from ..errors import ConfigError
from ..measures import OBJECTIVES
from ..util.values import flag, number, reject_unknown

SECTIONS = ("study", "corpus", "fixed", "search", "confirm")
STUDY_DEFAULTS: dict[str, Any] = {
    "objective": "truth",  # a name in measures.OBJECTIVES
    "trials": 200,  # finished + failed + pruned trials in total, across processes and restarts
    "seed": 0,  # sampler seed, pair-order seed and every run's seed (filters, start noise, Griffin-Lim phase)
    "paper_rows": True,  # enqueue the paper's four rows first in a new study
    "prune": True,  # WilcoxonPruner over the pairs (single objectives only)
    "p_threshold": 0.15,  # above the exact one-sided minimum at 3 pairs (1/8): docs/sweep.md, Pruning
    "n_startup_steps": 2,
    "startup_trials": 10,  # random trials before TPE models the space
    "stale_after_seconds": 600,  # a RUNNING trial with no heartbeat for this long is failed and re-run
    "storage_retry_seconds": 300,  # how long a worker waits for an unreachable database before it stops
}
CONFIRM_DEFAULTS: dict[str, Any] = {  # the best trials again at full fidelity (sweep/confirm.py)
    "enabled": False,  # re-run the screen's best settings at full fidelity after the trials
    "promote": 0.015,  # the share of the study's trials promoted (at least 1): 3 of 200
    "seeds": 2,  # seeds per confirmed setting: study.seed, +1, ...
    "fixed": {"offset_seconds": 0.0, "clip_seconds": None, "frames": 430, "iterations": 300,
              "griffin_lim_iters": 500},  # full fidelity: the base paper's budget, over the sweep's fixed settings
}
FIDELITY = ("iterations", "griffin_lim_iters", "frames")  # none may be larger in the screen than in full
DIMENSION_KEYS = ("low", "high", "log", "step", "choices", "enabled", "when")


@dataclass(frozen=True)
class Dimension:
    """One searched setting: a float or int range (optionally log) or a list of choices.

    `when` makes it conditional: suggested only when every named setting has one of the values.
    """

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: int | None = None
    choices: tuple[Any, ...] | None = None
    when: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    @property
    def is_int(self) -> bool:
        return isinstance(FIELDS[self.name].default, int) and self.choices is None

    def suggest(self, trial: Any) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.is_int:
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=self.step or 1, log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)

    def contains(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        return self.low <= value <= self.high

    def active(self, values: dict[str, Any]) -> bool:
        return all(values.get(name) in allowed for name, allowed in self.when.items())


@dataclass
class SweepSettings:
    """A parsed, checked sweep config."""

    source: str
    study: dict[str, Any]
    corpus: Any
    fixed: dict[str, Any]
    search: dict[str, Dimension]
    raw: dict[str, Any]
    confirm: dict[str, Any] = field(default_factory=lambda: dict(CONFIRM_DEFAULTS))
    base_dir: Path = Path(".")

    @property
    def objective(self) -> str:
        return self.study["objective"]

    def base_config(self) -> TransferConfig:
        """The fixed settings (and the study seed) on top of TransferConfig's defaults."""
        return make_config(self.fixed | {"seed": self.study["seed"]})

    def config_for(self, params: dict[str, Any], seed: int | None = None) -> TransferConfig:
        """A trial's run settings: fixed settings, then its parameters, then the seed."""
        return make_config(self.fixed | params | {"seed": self.study["seed"] if seed is None else seed})


def _checked(fixed: dict[str, Any], name: str, value: Any, where: str) -> Any:
    """The value as TransferConfig stores it, checked by make_config on top of the fixed settings."""
    try:
        return getattr(make_config(fixed | {name: value}), name)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None


def _section(data: Any, name: str, defaults: dict[str, Any], source: str, what: str = "") -> dict[str, Any]:
    """A mapping section with known keys over its defaults; one-line errors naming file and key."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: '{name}' must be a mapping{what}")
    reject_unknown(data, defaults, f"key '{name}.{{}}'", source)
    return defaults | data


def parse_study(data: Any, source: str) -> dict[str, Any]:
    study = _section(data, "study", STUDY_DEFAULTS, source)
    where = f"{source}: study."
    if not isinstance(study["objective"], str) or study["objective"] not in OBJECTIVES:
        raise ConfigError(f"{where}objective must be one of {', '.join(OBJECTIVES)}, got {study['objective']!r}")
    for key in ("trials", "seed", "n_startup_steps", "startup_trials"):
        study[key] = number(study[key], where + key, integer=True)
        if study[key] < (1 if key == "trials" else 0):
            raise ConfigError(f"{where}{key} must be {'>= 1' if key == 'trials' else '>= 0'}, got {study[key]}")
    for key in ("paper_rows", "prune"):
        study[key] = flag(study[key], where + key)
    study["p_threshold"] = number(study["p_threshold"], where + "p_threshold")
    if not 0 < study["p_threshold"] < 1:
        raise ConfigError(f"{where}p_threshold must be between 0 and 1, got {study['p_threshold']}")
    study["stale_after_seconds"] = number(study["stale_after_seconds"], where + "stale_after_seconds")
    if study["stale_after_seconds"] <= 0:
        raise ConfigError(f"{where}stale_after_seconds must be positive")
    study["storage_retry_seconds"] = number(study["storage_retry_seconds"], where + "storage_retry_seconds")
    if study["storage_retry_seconds"] < 0:
        raise ConfigError(f"{where}storage_retry_seconds must be >= 0, got {study['storage_retry_seconds']}")
    return study


def parse_fixed(data: Any, source: str) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: 'fixed' must be a mapping of run settings")
    for name in data:
        if name not in FIELDS:
            raise ConfigError(f"{source}: unknown setting 'fixed.{name}' (known: {', '.join(FIELDS)})")
        if name == "seed":
            raise ConfigError(f"{source}: 'fixed.seed' is the study's: set 'study.seed' or --seed")
    try:
        return make_config(data).to_dict() | {}  # checks every value; keep only what the file set
    except ConfigError as err:
        raise ConfigError(f"{source}: fixed: {err}") from None


def _frames(config: TransferConfig) -> int | None:
    """The most frames a run keeps: `frames` and those of `clip_seconds`, the fewer; None for the whole file."""
    limits = [config.frames] if config.frames is not None else []
    if config.clip_seconds is not None:
        limits.append(1 + int(config.clip_seconds * config.sample_rate_hz) // config.hop)
    return min(limits) if limits else None


def parse_confirm(data: Any, fixed: dict[str, Any], source: str) -> dict[str, Any]:
    """The `confirm` section: enabled, promote in (0, 1), seeds >= 1, and full-fidelity settings no smaller
    than the screen's."""
    confirm = _section(data, "confirm", CONFIRM_DEFAULTS, source, " (enabled, promote, seeds, fixed)")
    data = data or {}
    confirm["enabled"] = flag(confirm["enabled"], f"{source}: confirm.enabled")
    confirm["promote"] = number(confirm["promote"], f"{source}: confirm.promote")
    if not 0 < confirm["promote"] < 1:
        raise ConfigError(f"{source}: confirm.promote (the share of trials promoted to full fidelity) must be "
                          f"between 0 and 1, exclusive, got {confirm['promote']}")
    confirm["seeds"] = number(confirm["seeds"], f"{source}: confirm.seeds", integer=True)
    if confirm["seeds"] < 1:
        raise ConfigError(f"{source}: confirm.seeds must be >= 1, got {confirm['seeds']}")
    full_fixed = parse_fixed(CONFIRM_DEFAULTS["fixed"] | (data.get("fixed") or {}), f"{source} (confirm)")
    full_fixed = CONFIRM_DEFAULTS["fixed"] | {k: full_fixed.get(k) for k in (data.get("fixed") or {})}
    screen, full = make_config(fixed), make_config(fixed | full_fixed)
    for key in FIDELITY:
        low, high = (_frames(c) if key == "frames" else getattr(c, key) for c in (screen, full))
        if high is not None and (low is None or low > high):
            raise ConfigError(f"{source}: the screen's {key} ({low}) is larger than the full fidelity's "
                              f"(confirm.fixed.{key} = {high})")
    return confirm | {"fixed": full_fixed}


def promoted(confirm: dict[str, Any], trials: int) -> int:
    """How many distinct best settings the confirmation re-runs after `trials` trials; 0 when it is off."""
    return max(1, round(confirm["promote"] * trials)) if confirm["enabled"] else 0


def parse_dimension(name: str, spec: Any, fixed: dict[str, Any], source: str) -> Dimension | None:
    """One `search.<name>` entry, or None when it is switched off (`enabled: false`)."""
    where = f"{source}: search.{name}"
    if name not in FIELDS:
        raise ConfigError(f"{where}: unknown setting '{name}' (known: {', '.join(FIELDS)})")
    if name == "seed":
        raise ConfigError(f"{where}: the seed is not searched (see --reevaluate K --seeds S)")
    if not isinstance(spec, dict):
        raise ConfigError(f"{where} must be a mapping such as {{low: 1e-3, high: 1, log: true}} or {{choices: [...]}}")
    reject_unknown(spec, DIMENSION_KEYS, "key '{}'", where)
    if not flag(spec.get("enabled", True), f"{where}.enabled"):
        return None
    when = {}
    if not isinstance(spec.get("when") or {}, dict):
        raise ConfigError(f"{where}.when must be a mapping of settings to values, such as {{optimizer: adam}}")
    for other, allowed in (spec.get("when") or {}).items():
        if other not in FIELDS:
            raise ConfigError(f"{where}.when: unknown setting '{other}'")
        allowed = allowed if isinstance(allowed, list) else [allowed]
        when[other] = tuple(_checked(fixed, other, v, f"{where}.when.{other}") for v in allowed)
    if "choices" in spec:
        if set(spec) & {"low", "high", "log", "step"}:
            raise ConfigError(f"{where}: give either 'choices' or 'low'/'high', not both")
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}.choices must be a non-empty list")
        values = tuple(_checked(fixed, name, c, f"{where}.choices") for c in choices)
        if len(set(values)) != len(values):
            raise ConfigError(f"{where}.choices has repeated values")
        return Dimension(name, choices=values, when=when)
    for key in ("low", "high"):
        if key not in spec:
            raise ConfigError(f"{where}: missing '{key}' (or give 'choices')")
    default = FIELDS[name].default
    if not isinstance(default, (int, float)) or isinstance(default, bool):
        raise ConfigError(f"{where}: '{name}' is not numeric; give 'choices'")
    integer = isinstance(default, int)
    low = number(spec["low"], f"{where}.low", integer)
    high = number(spec["high"], f"{where}.high", integer)
    log = flag(spec.get("log", False), f"{where}.log")
    step = number(spec["step"], f"{where}.step", True) if "step" in spec else None
    if step is not None and (not integer or step < 1 or log):
        raise ConfigError(f"{where}.step needs an integer setting, a step >= 1 and no log scale")
    if not low < high:
        raise ConfigError(f"{where}: low ({low:g}) must be below high ({high:g})")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log-scale range needs low > 0, got {low:g}")
    for key, value in (("low", low), ("high", high)):
        _checked(fixed, name, value, f"{where}.{key}")
    return Dimension(name, low, high, log, step, when=when)


def parse_settings(data: Any, source: str, base_dir: Path = Path(".")) -> SweepSettings:
    """Check a whole config mapping (after overrides); raise ConfigError naming file and key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a sweep config must be a mapping with sections {', '.join(SECTIONS)}")
    reject_unknown(data, SECTIONS, "section '{}'", source)
    study = parse_study(data.get("study"), source)
    fixed = parse_fixed(data.get("fixed"), source)
    fixed = {k: fixed[k] for k in (data.get("fixed") or {})}
    search_data = data.get("search") or {}
    if not isinstance(search_data, dict):
        raise ConfigError(f"{source}: 'search' must be a mapping of settings to ranges")
    search = {}
    for name, spec in search_data.items():
        dimension = parse_dimension(name, spec, fixed, source)
        if dimension is None:
            continue
        if name in fixed and isinstance(spec, dict) and "enabled" in spec:
            fixed.pop(name)  # a switched dimension: on, it is searched; off, the fixed value holds
        elif name in fixed:
            raise ConfigError(f"{source}: '{name}' is both fixed and searched (drop one, or set "
                              f"search.{name}.enabled: false)")
        search[name] = dimension
    for dimension in search.values():
        for other in dimension.when:
            if other == dimension.name:
                raise ConfigError(f"{source}: search.{other}.when cannot name itself")
    confirm = parse_confirm(data.get("confirm"), fixed, source)
    return SweepSettings(source, study, data.get("corpus"), fixed, search, data, base_dir=base_dir, confirm=confirm)


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one `--set dotted.key=value` (value read as YAML) to the raw config mapping."""
    if "=" not in assignment:
        raise ConfigError(f"--set needs key=value, got {assignment!r}")
    key, text = assignment.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"--set: bad key {key!r}")
    if parts[0] not in SECTIONS:
        raise ConfigError(f"--set {key}: unknown section '{parts[0]}' (known: {', '.join(SECTIONS)})")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None or not isinstance(child, dict):
            if child is not None and part != parts[0]:
                raise ConfigError(f"--set {key}: '{part}' is not a mapping")
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def load_settings(path: str | Path, overrides: list[str] | None = None) -> SweepSettings:
    """Read a sweep config YAML, check it as written, apply `--set` overrides, check everything again."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a sweep config must be a mapping with sections {', '.join(SECTIONS)}")
    if overrides:  # every value the file holds is checked, also one an override replaces (study.trials: many)
        parse_settings(copy.deepcopy(data), str(path), path.parent)
    for assignment in overrides or []:
        apply_override(data, assignment)
    source = str(path) + (" (with --set)" if overrides else "")
    return parse_settings(data, source, path.parent)
