"""bf16 runs: the convolution and the style term through anchors, so only a small difference is rounded.

Near the optimum F (F^T F) - S (S^T F) is a difference of nearly equal matrices: in bfloat16 its
round-off stalls L-BFGS well above float32's final loss (results/ files of benchmark/bench_step.py).
So bf16 runs evaluate the style term through a `StyleAnchor`: its value, F^T F and gradient at
features F0, kept in float32, and bfloat16 products of the difference D = F - F0 only, whose
round-off is relative to D (`anchored_style`): fewer and thinner products. The convolution goes
through an `Anchor` the same way (`network.convolve_from`). `problem.next_anchor` says when an
anchor is recomputed exactly, so rounding cannot pile up along a run:

Rounding the whole spectrogram and the result to bfloat16 at each product turns the loss into a
staircase in x (steps of 2^-9 of |x| and of |W x|) and ends L-BFGS well above float32 at the
blog's style-heavy settings. Each line search starts from an anchor at
the accepted point, so only the step is rounded. The anchor after an iteration comes from that
evaluation; every ANCHOR_REFRESH_ITERATIONS, at the start and for the reported final loss it is
recomputed with float32 products (`problem.exact_anchor`), so rounding cannot pile up along the path.

In 'frames' mode the anchor carries the style term too (`StyleAnchor`): the four float32
products of F^T F, F^T S and the gradient become two bfloat16 products of the difference. Its
round-off piles up faster (the gradient is a small difference of large terms), so the style
anchor is recomputed exactly every STYLE_REFRESH_ITERATIONS, chosen as the longest interval that
kept the four paper rows' bf16 final loss within 1 % of float32 (tests/test_bf16_paper.py checks
two of them; the figures are in the README's Speed section and its results files).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..losses import (
    StyleTarget,
    frames_terms,
    sq_norm64,
    style_grad_scale,
    style_sum,
    style_value_and_grad,
    with_gradients,
)
from ..network import product_columns

ANCHOR_REFRESH_ITERATIONS = 50  # recompute the anchor with float32 products this often
STYLE_REFRESH_ITERATIONS = 10  # and its style term (StyleAnchor) this often


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


def style_anchor(features: torch.Tensor, target: StyleTarget) -> StyleAnchor:
    """The exact `StyleAnchor` at features (K, T): products in the features' dtype ('frames' mode only)."""
    if target.mode != "frames":
        raise ValueError("style anchors need the frames x frames identity (gram_mode 'frames')")
    f = features.detach()
    ftf, value, grad = frames_terms(f, target, want_grad=True)
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
    second = 2.0 * torch.dot(anchor_ftf.reshape(-1), dd.reshape(-1)).double() + sq_norm64(da) - 2.0 * sq_norm64(db)
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


def anchored_loss_terms(features: torch.Tensor, content_features: torch.Tensor, target: StyleTarget,
                        anchor: StyleAnchor | None) -> tuple[torch.Tensor, torch.Tensor, StyleAnchor | None]:
    """`losses.loss_terms` with the style term through `anchor` where there is one ('frames' mode), and the
    `StyleAnchor` at these features for the next evaluation (None without an anchor)."""
    wants_grad = torch.is_grad_enabled() and features.requires_grad
    point, scale = None, 1.0
    if anchor is not None and target.mode == "frames":
        style, style_grad, scale, point = anchored_style(features, target, anchor)
    else:
        style, style_grad = style_value_and_grad(features, target, wants_grad)
    if wants_grad:
        return (*with_gradients(features, content_features, style, style_grad, scale), point)
    return (features - content_features).square().sum(), style, point
