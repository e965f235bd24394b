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

Near the optimum F (F^T F) - S (S^T F) is a difference of nearly equal matrices: in bfloat16 its
round-off stalls L-BFGS well above float32's final loss (results/ files of benchmark/bench_step.py).
So bf16 runs evaluate the style term through a `StyleAnchor`: its value, F^T F and gradient at
features F0, kept in float32, and bfloat16 products of the difference D = F - F0 only, whose
round-off is relative to D (`anchored_style`): fewer and thinner products, and engine/optimize.py
refreshes the anchor exactly every few iterations so rounding cannot pile up.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .network import product_columns


@dataclass
class StyleTarget:
    """What the style term needs of the style song, computed once.

    features: S, (filters, frames_s); gram: S S^T / n, (filters, filters), only in 'filters' mode;
    self_term: ||S^T S||^2 / n^2, a float64 scalar, only in 'frames' mode. operand: the bfloat16
    [F0 | S | D] of `anchored_style`, made once and shared by the anchors; operand_features: the F0 in it.
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
    self_term = _sq_norm64(s.T @ s) / norm_frames**2
    return StyleTarget(s, norm_frames, mode, self_term=self_term)


def _sq_norm64(matrix: torch.Tensor) -> torch.Tensor:
    """sum of squares accumulated in float64 (a 0-d float64 tensor)."""
    flat = matrix.reshape(-1).double()
    return torch.dot(flat, flat)


def gram_difference_sq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """||a a^T - b b^T||^2 (unnormalised Grams) through the frames x frames identity, a 0-d float64.

    a: (filters, frames_a), b: (filters, frames_b); cheaper than the Grams while frames < filters.
    """
    return _sq_norm64(a.T @ a) - 2.0 * _sq_norm64(a.T @ b) + _sq_norm64(b.T @ b)


@dataclass
class StyleAnchor:
    """The style term at features F0, unscaled, for evaluating it at F = F0 + D through D (bf16 runs).

    features: F0, (filters K, frames T); ftf: F0^T F0, (T, T); grad: F0 F0^T F0 - S S^T F0, (K, T);
    value: ||F0^T F0||^2 - 2 ||S^T F0||^2, a 0-d float64 (the style sum is (value / n^2) + self_term).
    """

    features: torch.Tensor
    ftf: torch.Tensor
    grad: torch.Tensor
    value: torch.Tensor


@dataclass
class Anchor:
    """A spectrogram and its convolution, for convolving others through their difference to it.

    The convolution is linear: pre(x) = pre(anchor) + W (x - anchor). With bfloat16 products the
    input and the result are rounded to 8 bits relative to their size; through the difference only
    the (small) difference is, so the loss stops being a staircase in x at 2^-9 of |x| (see engine/optimize.py).
    spec: (bins, frames); pre: (filters, frames - width + 1), in spec's dtype. style: the style
    term at this point's features (`losses.StyleAnchor`), where the run anchors that too.
    """

    spec: torch.Tensor
    pre: torch.Tensor
    style: StyleAnchor | None = None


def _frames_terms(f: torch.Tensor, target: StyleTarget, want_grad: bool
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """'frames' mode, unscaled: (F^T F, ||F^T F||^2 - 2 ||F^T S||^2 in float64, (F F^T - S S^T) F or None)."""
    s = target.features
    ftf = f.T @ f  # (frames, frames)
    fts = f.T @ s  # (frames, frames_s)
    value = _sq_norm64(ftf) - 2.0 * _sq_norm64(fts)
    return ftf, value, torch.addmm(f @ ftf, s, fts.T, alpha=-1.0) if want_grad else None


def style_sum(value: torch.Tensor, target: StyleTarget) -> torch.Tensor:
    """The style sum from the unscaled 'frames' value: value / n^2 + ||S^T S||^2 / n^2 (never below 0)."""
    return (value / target.norm_frames**2 + target.self_term).clamp_min(0.0)


def style_anchor(features: torch.Tensor, target: StyleTarget) -> StyleAnchor:
    """The exact `StyleAnchor` at features (K, T): products in the features' dtype ('frames' mode only)."""
    if target.mode != "frames":
        raise ValueError("style anchors need the frames x frames identity (gram_mode 'frames')")
    f = features.detach()
    ftf, value, grad = _frames_terms(f, target, want_grad=True)
    return StyleAnchor(f, ftf, grad, value)


def anchor_operand(anchor: StyleAnchor, target: StyleTarget) -> tuple[torch.Tensor, torch.Tensor]:
    """bfloat16 [F0 | S | D] (K, T + Ts + padded T), kept in `target` and loaded with this anchor's F0,
    and its D slot (K, T), a view the caller fills with F - F0 before `style_through_difference`.

    The D slot is padded with zeros to `product_columns`: both products run faster on 448 columns than on 420.
    """
    f0, s = anchor.features, target.features
    frames, style_frames = f0.shape[1], s.shape[1]
    width = frames + style_frames + product_columns(frames, torch.bfloat16)
    left = target.operand
    if left is None or left.shape != (f0.shape[0], width) or left.device != f0.device:
        left = target.operand = f0.new_zeros(f0.shape[0], width, dtype=torch.bfloat16)
        left[:, frames:frames + style_frames] = s
        target.operand_features = None
    if target.operand_features is not f0:
        left[:, :frames] = f0
        target.operand_features = f0
    fixed = frames + style_frames
    return left, left[:, fixed:fixed + frames]


def difference_terms(products: torch.Tensor, anchor_ftf: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What the first product of `style_through_difference` gives, (T + Ts + padded, padded) rows
    F0^T D, S^T D, D^T D, turned into: F^T F = A0 + dA (T, T); the second-order value terms
    2 <A0, D^T D> + ||dA||^2 - 2 ||dB||^2 (0-d float64); and the second product's right operand
    [dA; -dB; A; 0] (the products' shape and dtype)."""
    frames, fixed = anchor_ftf.shape[0], products.shape[0] - products.shape[1]
    p = products[:fixed + frames, :frames].float()  # the padding's rows and columns are zeros
    f0d, db, dd = p[:frames], p[frames:fixed], p[fixed:]
    da = f0d + f0d.T
    da += dd
    ftf = anchor_ftf + da
    second = 2.0 * torch.dot(anchor_ftf.reshape(-1), dd.reshape(-1)).double() + _sq_norm64(da) - 2.0 * _sq_norm64(db)
    right = torch.zeros_like(products)
    right[:frames, :frames] = da
    right[frames:fixed, :frames] = db
    right[frames:fixed, :frames].neg_()
    right[fixed:fixed + frames, :frames] = ftf
    return ftf, second, right


def style_through_difference(left: torch.Tensor, target: StyleTarget, anchor: StyleAnchor,
                             first_order: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The style term at F = F0 + D from `anchor_operand`'s [F0 | S | D] with D loaded, and
    first_order = <G0, D> (0-d): (value, unscaled, 0-d float64; F^T F, (T, T); G - G0, (K, T), a
    bfloat16 view). Two bfloat16 products; see `anchored_style`."""
    frames, fixed = anchor.features.shape[1], anchor.features.shape[1] + target.features.shape[1]
    products = left.T @ left[:, fixed:]  # (T + Ts + padded, padded): F0^T D, S^T D, D^T D
    ftf, second, right = difference_terms(products, anchor.ftf)
    value = anchor.value + 4.0 * first_order.double() + second
    return value, ftf, (left @ right)[:, :frames]


def anchored_style(features: torch.Tensor, target: StyleTarget, anchor: StyleAnchor
                   ) -> tuple[torch.Tensor, torch.Tensor, float, StyleAnchor]:
    """Style sum (0-d float64), its gradient in F (K, T) as G * scale, and the `StyleAnchor` at F,
    through D = F - F0.

    With A = F^T F = A0 + dA, dA = F0^T D + D^T F0 + D^T D and dB = S^T D (one bfloat16 product):

        value(F) = value(F0) + 4 <G0, D> + 2 <A0, D^T D> + ||dA||^2 - 2 ||dB||^2
        G(F)     = G0 + [F0 | S | D] @ [dA; -dB; A]            (a second bfloat16 product)

    The terms in D are rounded relative to their own size, not to that of A0 or G0; the first-order
    term <G0, D> is float32.
    """
    f = features.detach()
    left, slot = anchor_operand(anchor, target)
    delta = f - anchor.features
    slot.copy_(delta)
    first_order = torch.dot(anchor.grad.reshape(-1), delta.reshape(-1))
    value, ftf, change = style_through_difference(left, target, anchor, first_order)
    grad = torch.add(anchor.grad, change)
    return style_sum(value, target), grad, style_grad_scale(target), StyleAnchor(f, ftf, grad, value)


def style_grad_scale(target: StyleTarget) -> float:
    """The factor from the unscaled 'frames' gradient (F F^T - S S^T) F to d style sum / d F: 4 / n^2."""
    return 4.0 / target.norm_frames**2


def _style_value_and_grad(features: torch.Tensor, target: StyleTarget, want_grad: bool
                          ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """sum (G - G_style)^2 (0-d, float64 in 'frames' mode) and its gradient in F (filters, frames)."""
    n = target.norm_frames
    f = features.detach()
    if target.mode == "filters":
        diff = gram(f, n) - target.gram  # (filters, filters)
        value = diff.square().sum()
        return value, (diff @ f).mul_(4.0 / n) if want_grad else None
    _, value, grad = _frames_terms(f, target, want_grad)
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


def loss_terms(features: torch.Tensor, content_features: torch.Tensor, target: StyleTarget,
               anchor: StyleAnchor | None = None) -> tuple[torch.Tensor, torch.Tensor, StyleAnchor | None]:
    """(sum (F - F_content)^2, sum (G - G_style)^2, the StyleAnchor at F or None).

    features, content_features: (filters, frames); the two sums are 0-d tensors, differentiable in
    `features`. With an `anchor` ('frames' mode) the style term goes through it (`anchored_style`)
    and the anchor at these features comes back for the next evaluation; otherwise the third item
    is None. One fused pass; see the module docstring.
    """
    wants_grad = torch.is_grad_enabled() and features.requires_grad
    point, scale = None, 1.0
    if anchor is not None and target.mode == "frames":
        style, style_grad, scale, point = anchored_style(features, target, anchor)
    else:
        style, style_grad = _style_value_and_grad(features, target, wants_grad)
    if wants_grad:
        return (*_FusedLosses.apply(features, content_features, style, style_grad, scale), point)
    return content_distance_sq(features, content_features), style, point


def style_distance_sq(features: torch.Tensor, target: StyleTarget) -> torch.Tensor:
    """Unweighted style loss sum (G - G_style)^2 (a 0-d tensor, differentiable in `features`).

    features: (filters, frames). In 'frames' mode the value is float64 (see the module docstring).
    """
    wants_grad = torch.is_grad_enabled() and features.requires_grad
    style, style_grad = _style_value_and_grad(features, target, wants_grad)
    return _FusedLosses.apply(features, None, style, style_grad)[1] if wants_grad else style


def content_distance_sq(features: torch.Tensor, content_features: torch.Tensor) -> torch.Tensor:
    """Unweighted content loss sum (F - F_content)^2 (a 0-d tensor)."""
    return (features - content_features).square().sum()
