"""Losses: content = alpha * sum (F - F_content)^2; style = beta * sum (G - G_style)^2, G = F F^T / n.

`n` is the spectrogram's input frame count (as the base paper's notebook). F has shape
(filters K, frames T). For T well below K ('auto': see `choose_gram_mode`) the style term is
computed through frames x frames products,

    ||F F^T - S S^T||^2 = ||F^T F||^2 - 2 ||F^T S||^2 + ||S^T S||^2,

the same number for about 2T/K of the work (tests check loss and gradient agree). The three
squared norms are summed in float64: near the optimum they are large and nearly cancel.

Both terms are fused (`loss_terms`): the forward pass computes the losses and, when a gradient is
wanted, the gradient too (two products in 'filters' mode, four thin ones in 'frames' mode), so
backward is one weighted sum. Autograd would spend one product and several passes more.

bf16 runs evaluate the style term through anchors instead (`engine/fast/anchors.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class StyleTarget:
    """What the style term needs of the style song, computed once.

    features: S, (filters, frames_s); gram: S S^T / n, (filters, filters), only in 'filters' mode;
    self_term: ||S^T S||^2 / n^2, a float64 scalar, only in 'frames' mode. operand: the bfloat16
    [F0 | S | D] of `fast.anchors.anchored_style`, made once and shared by the anchors; operand_features: the F0 in it.
    """

    features: torch.Tensor
    norm_frames: int
    mode: str
    gram: torch.Tensor | None = None
    self_term: torch.Tensor | None = None
    operand: torch.Tensor | None = None
    operand_features: torch.Tensor | None = None


# 'auto' uses the frames x frames identity while frames * FRAMES_MODE_CROSSOVER < filters: measured by
# benchmark/bench_step.py (section "Gram crossover"); the identity costs ~4 K T^2, the Gram ~2 K^2 T.
FRAMES_MODE_CROSSOVER = 1.6


def choose_gram_mode(mode: str, filters: int, frames: int) -> str:
    """'auto' picks the frames x frames identity when it is faster (frames well below filters)."""
    if mode != "auto":
        return mode
    return "frames" if frames * FRAMES_MODE_CROSSOVER < filters else "filters"


def gram(features: torch.Tensor, norm_frames: int) -> torch.Tensor:
    """G = F F^T / n: (filters, frames) -> (filters, filters)."""
    return features @ features.T / norm_frames


def style_target(style_features: torch.Tensor, norm_frames: int, mode: str) -> StyleTarget:
    """Precompute the style side of the style loss for `mode` ('auto', 'filters' or 'frames').

    style_features: (filters, frames_s).
    """
    filters, frames = style_features.shape
    mode = choose_gram_mode(mode, filters, frames)
    s = style_features.detach()
    if mode == "filters":
        return StyleTarget(s, norm_frames, mode, gram=gram(s, norm_frames))
    self_term = sq_norm64(s.T @ s) / norm_frames**2
    return StyleTarget(s, norm_frames, mode, self_term=self_term)


def sq_norm64(matrix: torch.Tensor) -> torch.Tensor:
    """sum of squares accumulated in float64 (a 0-d float64 tensor)."""
    flat = matrix.reshape(-1).double()
    return torch.dot(flat, flat)


def gram_difference_sq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """||a a^T - b b^T||^2 (unnormalised Grams) through the frames x frames identity, a 0-d float64.

    a: (filters, frames_a), b: (filters, frames_b); cheaper than the Grams while frames < filters.
    """
    return sq_norm64(a.T @ a) - 2.0 * sq_norm64(a.T @ b) + sq_norm64(b.T @ b)


def frames_terms(f: torch.Tensor, target: StyleTarget, want_grad: bool
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """'frames' mode, unscaled: (F^T F, ||F^T F||^2 - 2 ||F^T S||^2 in float64, (F F^T - S S^T) F or None)."""
    s = target.features
    ftf = f.T @ f  # (frames, frames)
    fts = f.T @ s  # (frames, frames_s)
    value = sq_norm64(ftf) - 2.0 * sq_norm64(fts)
    return ftf, value, torch.addmm(f @ ftf, s, fts.T, alpha=-1.0) if want_grad else None


def style_sum(value: torch.Tensor, target: StyleTarget) -> torch.Tensor:
    """The style sum from the unscaled 'frames' value: value / n^2 + ||S^T S||^2 / n^2 (never below 0)."""
    return (value / target.norm_frames**2 + target.self_term).clamp_min(0.0)


def style_grad_scale(target: StyleTarget) -> float:
    """The factor from the unscaled 'frames' gradient (F F^T - S S^T) F to d style sum / d F: 4 / n^2."""
    return 4.0 / target.norm_frames**2


def style_value_and_grad(features: torch.Tensor, target: StyleTarget, want_grad: bool
                          ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """sum (G - G_style)^2 (0-d, float64 in 'frames' mode) and its gradient in F (filters, frames)."""
    n = target.norm_frames
    f = features.detach()
    if target.mode == "filters":
        diff = gram(f, n) - target.gram  # (filters, filters)
        value = diff.square().sum()
        return value, (diff @ f).mul_(4.0 / n) if want_grad else None
    _, value, grad = frames_terms(f, target, want_grad)
    return style_sum(value, target), None if grad is None else grad.mul_(style_grad_scale(target))


class _FusedLosses(torch.autograd.Function):
    """(content, style) sums whose gradients come with their values; backward weighs them.

    style, style_grad: the style sum and its gradient in the features (times style_grad_scale),
    computed already (or None).
    """

    @staticmethod
    def forward(ctx, features: torch.Tensor, content_features: torch.Tensor | None,  # type: ignore[override]
                style: torch.Tensor | None, style_grad: torch.Tensor | None, style_grad_scale: float = 1.0
                ) -> tuple[torch.Tensor, torch.Tensor]:
        zero = features.new_zeros(())
        content, diff = zero, None
        if content_features is not None:
            diff = features.detach() - content_features
            flat = diff.reshape(-1)
            content = torch.dot(flat, flat)
        ctx.save_for_backward(diff, style_grad)
        ctx.features_dtype = features.dtype
        ctx.style_grad_scale = style_grad_scale
        return content, zero if style is None else style.clone()

    @staticmethod
    def backward(ctx, up_content: torch.Tensor, up_style: torch.Tensor  # type: ignore[override]
                 ) -> tuple[torch.Tensor, None, None, None, None]:
        diff, style_grad = ctx.saved_tensors
        grad = None if diff is None else diff * (2.0 * up_content.to(diff.dtype))
        if style_grad is not None:
            weight = float(up_style) * ctx.style_grad_scale
            grad = style_grad * weight if grad is None else grad.add_(style_grad, alpha=weight)
        return grad.to(ctx.features_dtype), None, None, None, None


def loss_terms(features: torch.Tensor, content_features: torch.Tensor, target: StyleTarget
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum (F - F_content)^2, sum (G - G_style)^2): 0-d tensors, differentiable in `features`.

    features, content_features: (filters, frames). One fused pass; see the module docstring. (bf16 runs
    evaluate the style term through an anchor instead: `engine/fast/anchors.py`.)
    """
    wants_grad = torch.is_grad_enabled() and features.requires_grad
    style, style_grad = style_value_and_grad(features, target, wants_grad)
    if wants_grad:
        return with_gradients(features, content_features, style, style_grad)
    return content_distance_sq(features, content_features), style


def with_gradients(features: torch.Tensor, content_features: torch.Tensor | None, style: torch.Tensor | None,
                   style_grad: torch.Tensor | None, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(content sum, style sum) as autograd outputs of `features` whose backward is one weighted sum of the
    content difference and `style_grad` (the style sum's gradient in the features over `scale`)."""
    return _FusedLosses.apply(features, content_features, style, style_grad, scale)


def style_distance_sq(features: torch.Tensor, target: StyleTarget) -> torch.Tensor:
    """Unweighted style loss sum (G - G_style)^2 (a 0-d tensor, differentiable in `features`).

    features: (filters, frames). In 'frames' mode the value is float64 (see the module docstring).
    """
    wants_grad = torch.is_grad_enabled() and features.requires_grad
    style, style_grad = style_value_and_grad(features, target, wants_grad)
    return with_gradients(features, None, style, style_grad)[1] if wants_grad else style


def content_distance_sq(features: torch.Tensor, content_features: torch.Tensor) -> torch.Tensor:
    """Unweighted content loss sum (F - F_content)^2 (a 0-d tensor)."""
    return (features - content_features).square().sum()
