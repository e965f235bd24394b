"""The problem one optimisation solves: the random filters, the content features and the style target of a
(pair, network), on one device and dtype, and its loss.

They are built once and kept in a small LRU keyed by the spectrograms' hash and the network's settings,
so the trials of a sweep that share them (other alpha, beta, optimiser, iterations...) skip that work.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from ..config import TransferConfig
from .fast import fused
from .fast.anchors import ANCHOR_REFRESH_ITERATIONS, STYLE_REFRESH_ITERATIONS, Anchor, anchored_loss_terms, style_anchor
from .limit.kernels import LimitProblem, build_limit_problem
from .losses import StyleTarget, style_target
from .network import (
    ConvMatrices,
    bf16_supported,
    conv_matrices,
    convolve,
    convolve_from,
    pool_activations,
    random_filters,
    resolve_precision,
)

PROBLEM_CACHE_SIZE = 2  # (pair, network) problems kept; each holds the filters and their product matrices
# config fields that change the filters, the features or the style target (the rest only weigh or drive them)
NETWORK_FIELDS = ("filters", "kernel_width", "init_gain", "seed", "activation", "leaky_slope", "pooling",
                  "gram_mode", "precision")


class LossProblem(Protocol):
    """What the optimiser needs of a problem: `Problem` (a network of random filters) or the limit's
    `LimitProblem` (`--filters inf`)."""

    config: TransferConfig

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    def loss_parts(self, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(weighted total, unweighted content sum, unweighted style sum) of a (bins, frames) spectrogram."""
        ...

    def accept(self, spec: torch.Tensor, iteration: int | None) -> bool:
        """The optimiser's point `spec` after `iteration` accepted iterations (0: the start; None: the final
        point, whose loss is reported); True when the problem changed its state there, so that a loss
        evaluated before must be evaluated again."""
        ...

    def for_run(self) -> LossProblem:
        """The problem for one run, with its own per-run state."""
        ...


@dataclass
class Problem:
    """Everything one loss evaluation needs, on one device and dtype (a `LossProblem`)."""

    filters: torch.Tensor  # (filters, bins, width)
    content_features: torch.Tensor  # (filters, output_frames)
    style: StyleTarget
    config: TransferConfig
    matrices: ConvMatrices | None = None  # the filters as product matrices, in the products' dtype
    anchor: Anchor | None = None  # bf16: convolve through the difference to this point (`anchored`)
    last_convolved: Anchor | None = None  # the last spectrogram convolved, with its convolution

    @property
    def device(self) -> torch.device:
        return self.filters.device

    @property
    def dtype(self) -> torch.dtype:
        return self.filters.dtype

    @property
    def anchored(self) -> bool:
        """Whether the run convolves through anchors: with bfloat16 products (`engine/fast/anchors.py`)."""
        return self.matrices is not None and self.matrices.weight.dtype == torch.bfloat16

    def for_run(self) -> Problem:
        return dataclasses.replace(self, anchor=None)  # each run has its own anchors

    def accept(self, spec: torch.Tensor, iteration: int | None) -> bool:
        """bf16: the next evaluations go through an anchor at `spec` (`next_anchor`; exact at the start and
        at the final point). Otherwise nothing changes."""
        if not self.anchored:
            return False
        self.anchor = exact_anchor(self, spec) if iteration is None else next_anchor(self, iteration, spec)
        return True

    def features(self, spec: torch.Tensor) -> torch.Tensor:
        """(bins, frames) -> (filters, output_frames)."""
        c = self.config
        if self.matrices is None:
            self.matrices = conv_matrices(self.filters, product_dtype(c, self.filters.dtype, self.filters.device))
        pre = convolve_from(spec, self.matrices, self.anchor)
        self.last_convolved = Anchor(spec.detach(), pre.detach())
        return pool_activations(pre, c.activation, c.leaky_slope, c.pooling)

    def loss_parts(self, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(weighted total, unweighted content sum, unweighted style sum) for a (bins, frames) spectrogram.

        Through anchors with a gradient wanted, one written-out step with fused passes (`engine/fast/fused.py`).
        """
        parts = fused.loss_parts(self, spec) if fused.applies(self, spec) else None
        if parts is not None:
            return parts
        features = self.features(spec)
        style_anchor = None if self.anchor is None else self.anchor.style
        content, style, self.last_convolved.style = anchored_loss_terms(features, self.content_features,
                                                                        self.style, style_anchor)
        total = self.config.alpha * content + self.config.beta * style
        return total, content, style


def product_dtype(config: TransferConfig, dtype: torch.dtype, device: torch.device | str) -> torch.dtype:
    """dtype of the convolution's two products: bfloat16 for precision 'bf16' on a float32 run where
    bfloat16 products are fast (else float32 with a warning, once per process and device), bfloat16
    for 'auto' where they are fast (`network.resolve_precision`, silently), otherwise the run's dtype.
    A sweep resolves 'auto' and 'bf16' once before its trials, so its runs never warn."""
    if config.precision == "fp32" or dtype != torch.float32:
        return dtype
    if config.precision == "auto":
        return torch.bfloat16 if resolve_precision("auto", device)[0] == "bf16" else dtype
    if not bf16_supported(device):
        _warn_once(f"precision bf16: no fast bfloat16 products on {device}; running float32")
        return dtype
    return torch.bfloat16


@functools.cache
def _warn_once(message: str) -> None:
    warnings.warn(message, stacklevel=4)


def build_problem(
    content_spec: torch.Tensor, style_spec: torch.Tensor, config: TransferConfig, dtype: torch.dtype = torch.float32
) -> Problem | LimitProblem:
    """Draw the filters and compute the content features and the style target once.

    content_spec, style_spec: (bins, frames) on the target device. With bfloat16 products the
    filters are rounded to bfloat16 once (that is the run's network) and the targets are computed
    with float32 products, like the anchors (`exact_anchor`). filters inf: the limit's `LimitProblem`.
    """
    if math.isinf(config.filters):
        if config.precision == "bf16":
            warnings.warn("precision bf16: filters inf runs in float32 (its products are frames x frames)",
                          stacklevel=2)
        return build_limit_problem(content_spec, style_spec, config, dtype)
    device = content_spec.device
    filters = random_filters(content_spec.shape[0], config.filters, config.kernel_width, config.init_gain,
                             config.seed, device=device, dtype=dtype)
    matrices = conv_matrices(filters, product_dtype(config, dtype, device))
    if matrices.weight.dtype == torch.bfloat16:  # the bf16 weights, widened (the original freed first)
        shape = filters.shape
        del filters
        filters = matrices.weight.to(dtype).reshape(shape)
    problem = Problem(filters, content_features=None, style=None, config=config,  # type: ignore[arg-type]
                      matrices=matrices)
    content_features, style_features = (
        pool_activations(exact_anchor(problem, spec.to(dtype)).pre, config.activation, config.leaky_slope,
                         config.pooling) for spec in (content_spec, style_spec))
    problem.content_features = content_features
    problem.style = style_target(style_features, norm_frames=content_spec.shape[1], mode=config.gram_mode)
    return problem


def exact_anchor(problem: Problem, spec: torch.Tensor) -> Anchor:
    """`spec` (bins, frames), its convolution and, in 'frames' mode once the targets exist, the style
    term at its features, all by products in the filters' own dtype (float32 in a bf16 run, whose
    filters are already rounded to bfloat16): no rounding of spec or of the result."""
    c = problem.config
    with torch.no_grad():
        # contiguous, like the pre a step leaves: a strided view here made torch.compile compile
        # engine/fast/fused.py's features pass a second time at a run's first new anchor (its guards check views)
        pre = convolve(spec, conv_matrices(problem.filters, problem.filters.dtype)).contiguous()
        anchor = Anchor(spec, pre)
        if problem.style is not None and problem.style.mode == "frames":
            anchor.style = style_anchor(pool_activations(anchor.pre, c.activation, c.leaky_slope, c.pooling),
                                        problem.style)
    return anchor


def next_anchor(problem: Problem, iteration: int, spec: torch.Tensor) -> Anchor:
    """The anchor after `iteration` at the accepted `spec`: the last evaluation's, or an exact one.

    Every ANCHOR_REFRESH_ITERATIONS the whole anchor is recomputed exactly; every
    STYLE_REFRESH_ITERATIONS the style anchor is, at the features the last evaluation convolved.
    The anchor holds `spec` itself (Adam moves the tensor it evaluated in place: it passes a copy).
    """
    last = problem.last_convolved
    if iteration % ANCHOR_REFRESH_ITERATIONS == 0 or last is None or not torch.equal(last.spec, spec):
        return exact_anchor(problem, spec)
    if last.style is not None and iteration % STYLE_REFRESH_ITERATIONS == 0:
        last.style = style_anchor(last.style.features, problem.style)
    return last if last.spec is spec else Anchor(spec, last.pre, last.style)


_PROBLEMS: OrderedDict[tuple, Problem] = OrderedDict()


def _problem_key(content_spec: np.ndarray, style_spec: np.ndarray, config: TransferConfig,
                 device: torch.device | str) -> tuple:
    def digest(spec: np.ndarray) -> tuple:
        data = np.ascontiguousarray(spec, dtype=np.float32)
        return data.shape, hashlib.blake2b(data.tobytes(), digest_size=16).hexdigest()

    return (digest(content_spec), digest(style_spec), str(torch.device(device)),
            *(getattr(config, name) for name in NETWORK_FIELDS))


def cached_problem(content_spec: np.ndarray, style_spec: np.ndarray, config: TransferConfig,
                   device: torch.device | str = "cpu") -> Problem:
    """`build_problem` for float32, through an LRU of the last PROBLEM_CACHE_SIZE (pair, network)s.

    content_spec, style_spec: (bins, frames). A hit gives the same tensors, with `config` swapped in.
    """
    key = _problem_key(content_spec, style_spec, config, device)
    problem = _PROBLEMS.get(key)
    if problem is None:
        content_t = torch.as_tensor(content_spec, dtype=torch.float32, device=device)
        style_t = torch.as_tensor(style_spec, dtype=torch.float32, device=device)
        problem = build_problem(content_t, style_t, config)
        _PROBLEMS[key] = problem
        while len(_PROBLEMS) > PROBLEM_CACHE_SIZE:
            _PROBLEMS.popitem(last=False)
    _PROBLEMS.move_to_end(key)
    return dataclasses.replace(problem, config=config)


def clear_problem_cache() -> None:
    """Forget the cached problems (frees their filters)."""
    _PROBLEMS.clear()
