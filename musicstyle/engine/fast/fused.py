"""The bf16 step through its anchors, written out, with its elementwise passes fused.

Between its four bfloat16 products, a bf16 step through anchors (`anchors.py`) makes some
fifteen passes over (filters, frames) tensors when autograd runs it op by op: the anchor offset,
the activation, the differences to the anchor and to the content and their sums, the bfloat16
copies, the gradient's sum and the activation's derivative. Here the step is written out (no
autograd graph), and those passes are two functions of plain torch ops,

    `features_pass`  pre = P0 + W dX;  F = act(pre);  D = F - F0 into the bfloat16 operand;
                     sum (F - C)^2;  <G0, D>
    `gradient_pass`  G = G0 + dG;  d total / d pre = act'(pre) (2 alpha (F - C) + beta s G),
                     into the bfloat16 operand of the input-gradient product

that torch.compile turns into one loop each (inductor: C++ with OpenMP on a CPU), which
benchmark/ab_fused.py alternates with the autograd step on the same inputs (results/fused-ab.md). Op by op, this
written-out step would be slower than autograd's, so where compiling is off (MUSICSTYLE_COMPILE=0)
or fails (no C++ compiler; warned once) runs keep the autograd path (`Problem.loss_parts`), which
gives the same numbers to float32 round-off. So do runs on a GPU: there the passes compile to Triton
and give the same numbers, but the step was slower than autograd's (results/benchmarks-cuda.md),
the GPU waiting on launches rather than on memory. The first step of a process compiles (inductor
keeps the code on disk for later processes), and so does each further activation.
"""

from __future__ import annotations

import functools
import os
import warnings
from typing import Protocol

import torch

from ...config import TransferConfig
from ..losses import StyleTarget, style_grad_scale, style_sum
from ..network import ConvMatrices, activate, conv_product, gradient_columns, input_gradient
from .anchors import Anchor, StyleAnchor, anchor_operand, style_through_difference

COMPILE = os.environ.get("MUSICSTYLE_COMPILE", "1") != "0"  # 0: the autograd step (benchmarks flip this)


class Problem(Protocol):
    """What the written-out step reads of `optimize.Problem` (and `last_convolved`, which it writes);
    a protocol here so that this module does not import optimize, which imports it."""

    config: TransferConfig
    content_features: torch.Tensor  # (filters, output frames)
    style: StyleTarget
    matrices: ConvMatrices | None
    anchor: Anchor | None
    last_convolved: Anchor | None


def features_pass(product: torch.Tensor, anchor_pre: torch.Tensor, anchor_features: torch.Tensor,
                  content_features: torch.Tensor, anchor_grad: torch.Tensor, delta_slot: torch.Tensor,
                  activation: str, leaky_slope: float
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pre, F, sum (F - C)^2, <G0, F - F0>): (filters, frames) float32 and 0-d float32; F - F0 into
    delta_slot (bfloat16). product: W dX (filters, frames), bfloat16."""
    pre = anchor_pre + product
    features = activate(pre, activation, leaky_slope)
    delta = features - anchor_features
    delta_slot.copy_(delta)
    diff = features - content_features
    return pre, features, (diff * diff).sum(1).sum(), (anchor_grad * delta).sum(1).sum()


def gradient_pass(change: torch.Tensor, anchor_grad: torch.Tensor, features: torch.Tensor,
                  content_features: torch.Tensor, pre: torch.Tensor, content_weight: torch.Tensor,
                  style_weight: torch.Tensor, grad_slot: torch.Tensor, activation: str, leaky_slope: float
                  ) -> torch.Tensor:
    """The unscaled style gradient G0 + change (filters, frames); act'(pre) (content_weight (F - C) +
    style_weight G) = d total / d pre into grad_slot (bfloat16)."""
    style_grad = anchor_grad + change
    grad_features = (features - content_features) * content_weight + style_grad * style_weight
    _, pullback = torch.func.vjp(functools.partial(activate, activation=activation, leaky_slope=leaky_slope), pre)
    grad_slot.copy_(pullback(grad_features)[0])
    return style_grad


# compiled once each, for every activation and shape (dynamic: no recompiling per clip length or slope)
_features_pass = torch.compile(features_pass, fullgraph=True, dynamic=True)
_gradient_pass = torch.compile(gradient_pass, fullgraph=True, dynamic=True)
_compiles: list[bool] = []  # [whether compiling worked here], once tried


def applies(problem: Problem, spec: torch.Tensor) -> bool:
    """Whether `anchored_step` evaluates `problem` at `spec`: on a CPU (on a GPU the autograd step was
    faster, launches being what a GPU step waits on: results/benchmarks-cuda.md), a gradient is wanted,
    the run goes through anchors that carry the style term ('frames' mode), there is no pooling, and
    compiling is on and has not failed here (op by op, the written-out step is slower than autograd's)."""
    anchor = problem.anchor
    wanted = (COMPILE and _compiles != [False] and torch.is_grad_enabled() and spec.requires_grad
              and spec.device.type == "cpu")
    return (wanted and anchor is not None and anchor.style is not None and problem.config.pooling == 1
            and problem.matrices is not None)


def anchored_step(problem: Problem, spec: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, Anchor]:
    """(total, content sum, style sum, d total / d spec, the Anchor at spec) through problem.anchor.

    spec: (bins, frames); the gradient has its shape and dtype. The same numbers as
    `Problem.loss_parts` and backward through `anchors.anchored_style` (tests/test_fused.py).
    """
    config, anchor, matrices, target = problem.config, problem.anchor, problem.matrices, problem.style
    frames = spec.shape[1]
    product = conv_product(spec - anchor.spec, matrices)  # (filters, out), bfloat16
    out = product.shape[1]
    left, delta_slot = anchor_operand(anchor.style, target)
    pre, features, content, first_order = _features_pass(
        product, anchor.pre, anchor.style.features, problem.content_features, anchor.style.grad, delta_slot,
        config.activation, config.leaky_slope)
    value, ftf, change = style_through_difference(left, target, anchor.style, first_order)
    style = style_sum(value, target)
    padded = gradient_columns(matrices, frames, spec.device)
    content_weight = torch.tensor(2.0 * config.alpha, device=spec.device)
    style_weight = torch.tensor(config.beta * style_grad_scale(target), device=spec.device)
    style_grad = _gradient_pass(change, anchor.style.grad, features, problem.content_features, pre,
                                content_weight, style_weight, padded[:, :out], config.activation, config.leaky_slope)
    grad = input_gradient(matrices, padded, frames).to(spec.dtype)
    total = config.alpha * content + config.beta * style
    return total, content, style, grad, Anchor(spec, pre, StyleAnchor(features, ftf, style_grad, value))


class _AnchoredStep(torch.autograd.Function):
    """(total, content, style) of `anchored_step`; the gradient comes with them, backward scales it."""

    @staticmethod
    def forward(ctx, spec: torch.Tensor, problem: Problem  # type: ignore[override]
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        total, content, style, grad, problem.last_convolved = anchored_step(problem, spec.detach())
        ctx.save_for_backward(grad)
        ctx.mark_non_differentiable(content, style)
        return total, content, style

    @staticmethod
    def backward(ctx, up_total: torch.Tensor, *_: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return grad if bool(up_total == 1) else grad * up_total.to(grad.dtype), None


def loss_parts(problem: Problem, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """`Problem.loss_parts` by `anchored_step` (where `applies`); sets problem.last_convolved.

    None where the first compile fails (no C++ compiler, no Triton): warned once, and `applies`
    is False from then on, so the caller's autograd path takes over.
    """
    if _compiles:
        return _AnchoredStep.apply(spec, problem)
    try:
        parts = _AnchoredStep.apply(spec, problem)
    except Exception as error:  # noqa: BLE001 - whatever stops the compiler; a real error recurs unfused
        _compiles.append(False)
        reason = (str(error).strip().splitlines() or [""])[0][:200]
        warnings.warn(f"torch.compile failed here ({type(error).__name__}: {reason}); the bf16 step runs "
                      "without its fused passes (same numbers, slower)", stacklevel=3)
        return None
    _compiles.append(True)
    return parts
