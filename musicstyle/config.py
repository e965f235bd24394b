"""Every setting of one style-transfer run, with its single default.

The defaults are the base paper's (Ulyanov & Lebedev 2016, its TensorFlow notebook), so a run
with no options reproduces its result. The command line,
the YAML sweep configs and the tests all read their defaults from `TransferConfig`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .util.values import number

ACTIVATIONS = ("relu", "leaky_relu", "elu", "selu", "gelu", "tanh", "softplus", "linear")
PAPER_ACTIVATIONS = ACTIVATIONS[:4]  # the base paper's and the blog's: what the comparison and the truth runs vary
OPTIMIZERS = ("lbfgs", "adam")
LR_SCHEDULES = ("constant", "cosine")
INITS = ("noise", "content", "zeros")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "auto", "fp64")
GRAM_MODES = ("auto", "filters", "frames")
INF_WORDS = ("inf", "infinity", ".inf")  # how `filters` is set to the infinite-filter limit


def _opt(default: Any, help: str, cli: str | None = None, **extra: Any) -> Any:
    """A dataclass field whose metadata carries its help text (and CLI flag if not derived)."""
    return field(default=default, metadata={"help": help, "cli": cli, **extra})


@dataclass(frozen=True)
class TransferConfig:
    """Settings of one run: audio in, spectrogram, network, losses, optimiser, reconstruction."""

    # audio in
    sample_rate_hz: int = _opt(22050, "working sample rate (Hz); audio is resampled to it", "--sample-rate")
    offset_seconds: float = _opt(0.0, "start of the clip in each file (s)")
    clip_seconds: float | None = _opt(None, "length of the clip read from each file (s); none = to the end")
    frames: int | None = _opt(430, "crop both spectrograms to this many STFT frames; none = all")
    # spectrogram
    n_fft: int = _opt(2048, "STFT size (samples): n_fft // 2 + 1 frequency bins")
    hop: int = _opt(512, "STFT hop (samples)")
    # network
    filters: int | float = _opt(4096, "number of random convolution filters, or inf: the infinite-filter limit "
                                "(docs/limit.md)")
    kernel_width: int = _opt(11, "filter width along time (frames)")
    init_gain: float = _opt(math.sqrt(2.0), "gain of the Glorot-normal init (base paper sqrt(2), Keras 1)")
    activation: str = _opt("relu", "non-linearity after the convolution", choices=ACTIVATIONS)
    leaky_slope: float = _opt(0.3, "negative slope of leaky_relu (Keras default 0.3, PyTorch 0.01)")
    pooling: int = _opt(1, "max-pooling width over time after the activation (1 = none)")
    # losses
    alpha: float = _opt(1e-2, "weight of the content loss")
    beta: float = _opt(1.0, "weight of the style loss")
    gram_mode: str = _opt("auto", "style loss via filters x filters Grams or the frames x frames identity",
                          choices=GRAM_MODES)
    # optimisation
    optimizer: str = _opt("lbfgs", "lbfgs (scipy L-BFGS-B, memory 10, as the base paper) or adam",
                          choices=OPTIMIZERS)
    lr: float = _opt(1e-3, "Adam learning rate (L-BFGS ignores it, as the base paper did)")
    lr_schedule: str = _opt("constant", "Adam learning rate over the steps: constant, or cosine decay to 0",
                            choices=LR_SCHEDULES)
    iterations: int = _opt(300, "optimiser iterations (L-BFGS maxiter, Adam steps)")
    init: str = _opt("noise", "start of the optimised spectrogram: noise (randn * 1e-3), content or zeros",
                     choices=INITS)
    # reconstruction
    griffin_lim_iters: int = _opt(500, "Griffin-Lim iterations")
    # run
    seed: int = _opt(0, "seed of the filters, the start noise and the Griffin-Lim phase")
    device: str = _opt("auto", "auto (CUDA when present), cpu or cuda", choices=DEVICES)
    precision: str = _opt("fp32", "fp32, bf16 matrix products for speed, auto: bf16 where its products "
                          "are fast (AVX-512 BF16 / AMX, CUDA), else fp32; or fp64 throughout (slow)",
                          choices=PRECISIONS)

    def replace(self, **changes: Any) -> TransferConfig:
        """A copy with some settings changed, checked."""
        return make_config(self.to_dict() | changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1


FIELDS = {f.name: f for f in dataclasses.fields(TransferConfig)}

INIT_NOISE_STD = 1e-3  # the base paper's start: randn(bins, frames) * 1e-3


def _coerce(name: str, value: Any) -> Any:
    """Convert a value (possibly a string from the CLI or YAML) to the field's type."""
    default = FIELDS[name].default
    if name == "filters" and (value == math.inf or (isinstance(value, str) and value.strip().lower() in INF_WORDS)):
        return math.inf
    optional = name in ("clip_seconds", "frames")
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
        if optional:
            return None
        raise ConfigError(f"setting '{name}' needs a value")
    kind = type(default) if default is not None else (float if name == "clip_seconds" else int)
    where = f"setting '{name}'"
    if kind in (int, float):  # range checks (finite, positive, ...) are `validate`'s
        return number(value, where, integer=kind is int, finite=False)
    if kind is bool:
        raise ConfigError(f"{where} must be bool, got {value!r}")
    return str(value)


def make_config(values: dict[str, Any] | None = None) -> TransferConfig:
    """Build a checked `TransferConfig` from a dict of (possibly string) values.

    Raises ConfigError with one line naming the bad setting.
    """
    values = dict(values or {})
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)} (known: {', '.join(FIELDS)})")
    coerced = {name: _coerce(name, value) for name, value in values.items()}
    config = TransferConfig(**coerced)
    validate(config)
    return config


def validate(config: TransferConfig) -> None:
    """Raise ConfigError for the first nonsense setting."""
    c = config

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    for name in ("sample_rate_hz", "n_fft", "hop", "filters", "kernel_width", "pooling", "iterations"):
        need(getattr(c, name) >= 1, f"setting '{name}' must be a positive integer, got {getattr(c, name)}")
    need(c.n_fft >= 16, f"setting 'n_fft' must be at least 16, got {c.n_fft}")
    need(c.griffin_lim_iters >= 0, f"setting 'griffin_lim_iters' must be >= 0, got {c.griffin_lim_iters}")
    need(c.frames is None or c.frames >= 1, f"setting 'frames' must be a positive integer, got {c.frames}")
    need(c.clip_seconds is None or (math.isfinite(c.clip_seconds) and c.clip_seconds > 0),
         f"setting 'clip_seconds' must be positive, got {c.clip_seconds}")
    need(math.isfinite(c.offset_seconds) and c.offset_seconds >= 0,
         f"setting 'offset_seconds' must be >= 0, got {c.offset_seconds}")
    for name in ("alpha", "beta"):
        value = getattr(c, name)
        need(math.isfinite(value) and value >= 0, f"setting '{name}' must be a finite number >= 0, got {value}")
    need(c.alpha > 0 or c.beta > 0, "settings 'alpha' and 'beta' cannot both be 0")
    need(math.isfinite(c.lr) and c.lr > 0, f"setting 'lr' must be positive, got {c.lr}")
    need(math.isfinite(c.init_gain) and c.init_gain > 0, f"setting 'init_gain' must be positive, got {c.init_gain}")
    need(math.isfinite(c.leaky_slope) and c.leaky_slope >= 0,
         f"setting 'leaky_slope' must be >= 0, got {c.leaky_slope}")
    need(not (math.isinf(c.filters) and c.pooling > 1),
         f"setting 'filters' inf has no closed form with max pooling: set 'pooling' to 1 (got {c.pooling})")
    for name, f in FIELDS.items():
        choices = f.metadata.get("choices")
        if choices:
            need(getattr(c, name) in choices,
                 f"setting '{name}' must be one of {', '.join(choices)}, got {getattr(c, name)!r}")
