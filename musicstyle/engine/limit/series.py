"""Mehler's series for the infinite-filter kernel of a smooth activation (ELU, SELU, GELU, tanh, softplus).

For (u, v) ~ N(0, [[a, c], [c, b]]) and rho = c / sqrt(ab),

    k(a, b, c) = E[act(u) act(v)] = sum_k A_k B_k rho^k,

A_k = E[act(sqrt(a) Z) He_k(Z)] / sqrt(k!) the normalised Hermite coefficients of act(sqrt(a) Z), computed
once per frame by the half-range Gauss-Hermite rule (a Gauss rule for exp(-z^2 / 2) on z > 0, so act's
kink at 0 costs no accuracy). Per element of a (rows, cols) kernel that is SERIES_TERMS multiply-adds.

The gradient is written out (`_Series`), with s = sqrt(a), A'_k = dA_k / ds = E[act'(s Z) Z He_k(Z)] / sqrt(k!):

    dk/dc = D / (s_a s_b),   D = sum_k k A_k B_k rho^(k-1)
    dk/ds_a = sum_k A'_k B_k rho^k - D rho / s_a     (and the same for b)

The forward and backward loops over the terms are plain torch functions that torch.compile fuses into one
pass over the elements each (inductor); where compiling is off (MUSICSTYLE_COMPILE=0) or fails (warned
once) they run op by op and give the same numbers. benchmark/bench_limit.py times both.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable

import numpy as np
import torch

from ..network import activate

SERIES_TERMS = 24  # Mehler terms (tests pin them against the quadrature)
SERIES_NODES = 40  # half-line nodes per side for the Hermite coefficients
TINY = 1e-30


@functools.cache
def half_line_nodes(n: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Nodes t_i > 0 and weights with sum w_i (f(t_i) + f(-t_i)) ~ E[f(Z)], Z ~ N(0, 1): the Gauss rule of
    the weight exp(-t^2 / 2) on [0, inf) (half-range Hermite), so a kink of f at 0 costs no accuracy.

    Its recurrence comes from the discretized Stieltjes procedure (300 Gauss-Legendre points on [0, 16]),
    its nodes and weights from the Jacobi matrix (Golub-Welsch).
    """
    x, w = np.polynomial.legendre.leggauss(300)
    t = (x + 1.0) * 8.0
    w = w * 8.0 * np.exp(-0.5 * t * t)
    alphas, betas = [], []
    prev, cur = np.zeros_like(t), np.ones_like(t) / math.sqrt(w.sum())
    for _ in range(n):
        alpha = float(np.sum(w * t * cur * cur))
        nxt = (t - alpha) * cur - (betas[-1] if betas else 0.0) * prev
        beta = math.sqrt(float(np.sum(w * nxt * nxt)))
        alphas.append(alpha)
        betas.append(beta)
        prev, cur = cur, nxt / beta
    nodes, vectors = np.linalg.eigh(np.diag(alphas) + np.diag(betas[:-1], 1) + np.diag(betas[:-1], -1))
    weights = w.sum() * vectors[0] ** 2 / math.sqrt(2 * math.pi)
    return tuple(nodes.tolist()), tuple(weights.tolist())


@functools.cache
def _series_nodes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Half-line nodes on both sides, their weights, and the normalised Hermite polynomials there:
    (2 * SERIES_NODES,), (2 * SERIES_NODES,), (2 * SERIES_NODES, SERIES_TERMS)."""
    t, w = (np.asarray(v) for v in half_line_nodes(SERIES_NODES))
    z, weights = np.concatenate([t, -t]), np.concatenate([w, w])
    h = np.zeros((z.size, SERIES_TERMS))
    h[:, 0] = 1.0
    if SERIES_TERMS > 1:
        h[:, 1] = z
    for k in range(1, SERIES_TERMS - 1):  # h_{k+1} = (z h_k - sqrt(k) h_{k-1}) / sqrt(k + 1): He_k / sqrt(k!)
        h[:, k + 1] = (z * h[:, k] - math.sqrt(k) * h[:, k - 1]) / math.sqrt(k + 1)
    return z, weights, h


def series_coefficients(scale: torch.Tensor, activation: str, derivative: bool = False) -> torch.Tensor:
    """act(s Z)'s normalised Hermite coefficients E[act(s Z) He_k(Z)] / sqrt(k!), k < SERIES_TERMS, or with
    `derivative` their derivatives in s, E[act'(s Z) Z He_k(Z)] / sqrt(k!): (*scale.shape, SERIES_TERMS)."""
    z, weights, h = (torch.as_tensor(v, dtype=scale.dtype, device=scale.device) for v in _series_nodes())
    points = scale.detach().unsqueeze(-1) * z  # (*scale.shape, nodes)
    if derivative:
        with torch.enable_grad():
            points.requires_grad_(True)
            (slope,) = torch.autograd.grad(activate(points, activation).sum(), points)
        values = slope * z
    else:
        values = activate(points, activation)
    return (values * weights) @ h


def series_value(coef_a: torch.Tensor, coef_b: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """sum_k A_k B_k rho^k by Horner; coef_a, coef_b (SERIES_TERMS, ...), each [k] broadcasting with rho.
    (Terms first, so that each term's coefficients are contiguous: the compiled loop vectorises.)"""
    total = coef_a[-1] * coef_b[-1] + rho * 0.0
    for k in range(coef_a.shape[0] - 2, -1, -1):
        total = total * rho + coef_a[k] * coef_b[k]
    return total


def series_grads(grad: torch.Tensor, coef_a: torch.Tensor, coef_b: torch.Tensor, slope_a: torch.Tensor,
                 slope_b: torch.Tensor, rho: torch.Tensor, root_a: torch.Tensor, root_b: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """grad times (dk/dc, dk/ds_a, dk/ds_b), elementwise at rho's shape (one Horner loop for all three);
    coefficients and their s-derivatives (slopes) terms first, as `series_value`."""
    terms = coef_a.shape[0]
    clamped = rho.clamp(-1.0, 1.0)
    d_rho = (terms - 1) * coef_a[-1] * coef_b[-1] + rho * 0.0
    d_a = slope_a[-1] * coef_b[-1] + rho * 0.0
    d_b = coef_a[-1] * slope_b[-1] + rho * 0.0
    for k in range(terms - 2, -1, -1):
        if k > 0:
            d_rho = d_rho * clamped + k * coef_a[k] * coef_b[k]
        d_a = d_a * clamped + slope_a[k] * coef_b[k]
        d_b = d_b * clamped + coef_a[k] * slope_b[k]
    g_rho = grad * d_rho
    return g_rho / (root_a * root_b), grad * d_a - g_rho * rho / root_a, grad * d_b - g_rho * rho / root_b


# compiled once each (dynamic shapes: no recompiling per clip length or block)
_compiled = {"value": torch.compile(series_value, fullgraph=True, dynamic=True),
             "grads": torch.compile(series_grads, fullgraph=True, dynamic=True)}
_compiles: list[bool] = []  # [whether compiling worked here], once tried


def _pass(name: str) -> Callable:
    """The compiled pass, or the same function op by op where compiling is off or has failed here."""
    from ..fast import fused  # MUSICSTYLE_COMPILE lives there

    plain = {"value": series_value, "grads": series_grads}[name]
    if not fused.COMPILE or _compiles == [False]:
        return plain
    if _compiles:
        return _compiled[name]

    def first(*args: torch.Tensor):
        try:
            out = _compiled[name](*args)
        except Exception as error:  # noqa: BLE001 - whatever stops the compiler; a real error recurs op by op
            _compiles.append(False)
            warnings.warn(f"torch.compile failed here ({type(error).__name__}); the limit's series kernels run "
                          "op by op (same numbers, slower)", stacklevel=3)
            return plain(*args)
        _compiles.append(True)
        return out

    return first


def _terms_first(coef: torch.Tensor) -> torch.Tensor:
    return coef.movedim(-1, 0).contiguous()


class _Series(torch.autograd.Function):
    """k(a, b, c) by Mehler's series, with the gradient written out (module docstring)."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, activation: str  # type: ignore[override]
                ) -> torch.Tensor:
        root_a, root_b = torch.sqrt(a), torch.sqrt(b)
        coef_a, coef_b = (_terms_first(series_coefficients(root, activation)) for root in (root_a, root_b))
        rho = c / (root_a * root_b)
        ctx.save_for_backward(a, b, c, root_a, root_b, rho, coef_a, coef_b)
        ctx.activation = activation
        return _pass("value")(coef_a, coef_b, rho.clamp(-1.0, 1.0))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, None]:  # type: ignore[override]
        a, b, c, root_a, root_b, rho, coef_a, coef_b = ctx.saved_tensors
        slope_a, slope_b = (_terms_first(series_coefficients(root, ctx.activation, derivative=True))
                            for root in (root_a, root_b))
        g_c, g_sa, g_sb = _pass("grads")(grad, coef_a, coef_b, slope_a, slope_b, rho, root_a, root_b)
        g_a = g_sa.sum_to_size(root_a.shape) / (2.0 * root_a)
        g_b = g_sb.sum_to_size(root_b.shape) / (2.0 * root_b)
        return g_a.sum_to_size(a.shape), g_b.sum_to_size(b.shape), g_c.sum_to_size(c.shape), None


def series_kernel(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, activation: str) -> torch.Tensor:
    """E[act(u) act(v)], (u, v) ~ N(0, [[a, c], [c, b]]), by Mehler's formula (module docstring).

    Elementwise over broadcast a, b, c; the coefficients cost a's and b's own sizes, so give them as
    (rows, 1) and (1, cols) for a (rows, cols) c. Differentiable; rho is clamped to [-1, 1] in value only
    (its gradient passes), as it reaches 1 +- round-off on a diagonal.
    """
    return _Series.apply(a.clamp_min(TINY), b.clamp_min(TINY), c, activation)
