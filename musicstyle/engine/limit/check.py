"""Finite-N losses on the limit's scale, to check that `--filters inf` is their limit (tests, benchmark).

A network of N filters drawn with the limit's variance (`limit.reference_gain`) gives content and
style sums whose ratios content_N * (4096 / N) and style_N * (4096 / N)^2 to the limit's losses
(engine/limit/kernels.py's convention) tend to 1, with a spread over seeds falling like 1 / sqrt(N).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...config import TransferConfig
from ..optimize import build_problem
from .kernels import LIMIT_REFERENCE_FILTERS, build_limit_problem, reference_gain


@dataclass
class Point:
    """Content and style losses on the limit's scale at one spectrogram, with their gradients (bins, frames)."""

    content: float
    style: float
    content_grad: torch.Tensor
    style_grad: torch.Tensor


def _point(problem, spec: torch.Tensor, content_scale: float, style_scale: float) -> Point:
    x = spec.detach().clone().requires_grad_(True)
    _, content, style = problem.loss_parts(x)
    (content_grad,) = torch.autograd.grad(content, x, retain_graph=True)
    (style_grad,) = torch.autograd.grad(style, x)
    return Point(float(content.detach()) * content_scale, float(style.detach()) * style_scale,
                 content_grad * content_scale, style_grad * style_scale)


def limit_point(content: torch.Tensor, style: torch.Tensor, spec: torch.Tensor, config: TransferConfig) -> Point:
    """The limit's losses and gradients at `spec`; all three (bins, frames) float32."""
    return _point(build_limit_problem(content, style, config.replace(filters="inf")), spec, 1.0, 1.0)


def finite_point(content: torch.Tensor, style: torch.Tensor, spec: torch.Tensor, config: TransferConfig,
                 filters: int, seed: int) -> Point:
    """A `filters`-filter network's losses at `spec` (filters of the limit's variance, seed `seed`), times
    4096 / N (content) and (4096 / N)^2 (style)."""
    gain = reference_gain(content.shape[0], filters, config.kernel_width, config.init_gain)
    finite = config.replace(filters=filters, init_gain=gain, seed=seed, precision="fp32")
    scale = LIMIT_REFERENCE_FILTERS / filters
    return _point(build_problem(content, style, finite), spec, scale, scale**2)


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity of two tensors, flattened, in float64."""
    a, b = a.reshape(-1).double(), b.reshape(-1).double()
    return float(a @ b / (a.norm() * b.norm()))
