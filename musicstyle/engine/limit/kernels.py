"""The infinite-filter limit of the style and content losses (`--filters inf`).

A feature is act(w . p) for a patch p (bins * width values: `width` consecutive frames) and a
Gaussian filter w ~ N(0, sigma^2 I). As the filter count N grows, the features' inner products over
the filters, divided by N, converge to the kernel

    k(p, q) = E_w[act(w . p) act(w . q)],

a function of a = sigma^2 |p|^2, b = sigma^2 |q|^2 and c = sigma^2 p . q only (the pair (w . p, w . q)
is bivariate normal with that covariance). So with F (N, T) the features and F^T F -> N K:

    style_N / N^2   -> (1 / n^2) [sum K(x, x)^2 - 2 sum K(x, s)^2 + sum K(s, s)^2]
    content_N / N   -> sum_t [k(x_t, x_t) - 2 k(x_t, c_t) + k(c_t, c_t)]

(n: the input frame count, as engine/losses.py). Convention: filters keep the Glorot-normal variance of a
network of LIMIT_REFERENCE_FILTERS (4096) filters, and the reported losses are the limits times
that reference count (content * 4096, style * 4096^2): the loss a 4096-filter network has, without
its seed noise (and without its O(1/N) bias). alpha and beta then mean what they mean at 4096 filters.

Kernels: ReLU the arc-cosine kernel of degree 1 (Cho & Saul 2009), LeakyReLU a sum of two of them,
linear c. Elsewhere (ELU, SELU, GELU, tanh, softplus) Mehler's series in rho = c / sqrt(ab), its gradient
written out and its loops compiled (engine/limit/series.py). `quadrature_kernel` (a 2-D quadrature: outer nodes on each
half-line, the inner E[act(v) | u] in closed form or by Gauss-Hermite) is kept as an independent reference
for the tests; it is tens of times slower and, at large variances, less accurate for tanh.

Patch inner products never form the patches: P_x P_y^T[t, t'] = sum_{j < width} (X^T Y)[t + j, t' + j],
one frames x frames product and `width` shifted sums. Max pooling has no such closed form (config.py
refuses filters inf with pooling > 1).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.checkpoint import checkpoint

from ...config import TransferConfig
from ..network import activate, glorot_std
from .series import TINY, half_line_nodes, series_kernel

LIMIT_REFERENCE_FILTERS = 4096  # the paper's filter count: its Glorot variance, and the losses' scale
OUTER_NODES = 6  # half-range Gauss-Hermite nodes per half-line of the outer variable
INNER_NODES = {"tanh": 24, "softplus": 12}  # Gauss-Hermite nodes of the inner expectation (tests pin accuracy)
BLOCK_FRAMES = 1024  # style rows per block: above this the (T, T) kernels are never held whole
SELU_SCALE, SELU_ALPHA = 1.0507009873554805, 1.6732632423543772
CLOSED_FORMS = ("relu", "leaky_relu", "linear")

LOSS_SCALE_NOTE = (f"filters inf: content = {LIMIT_REFERENCE_FILTERS} * lim content_N / N, style = "
                   f"{LIMIT_REFERENCE_FILTERS}^2 * lim style_N / N^2, filters with the Glorot variance of "
                   f"{LIMIT_REFERENCE_FILTERS} filters (comparable with a {LIMIT_REFERENCE_FILTERS}-filter run)")


def summary_notes(config: TransferConfig, float64_fallback: bool = False, device: str = "cpu") -> dict[str, str]:
    """The run summary's note on how its losses are scaled, and the precision its products really used."""
    from ..network import resolve_precision

    if float64_fallback or config.precision == "fp64":
        used = "fp64"
    elif math.isinf(config.filters):
        used = "fp32"  # the limit's kernels run in float32 whatever the setting
    else:
        used = resolve_precision(config.precision, device)[0]
    if not math.isinf(config.filters):
        return {"loss_scale": f"sums over {config.filters} filters (losses.py)", "precision_used": used}
    return {"loss_scale": LOSS_SCALE_NOTE, "precision_used": used}


def limit_variance(n_bins: int, kernel_width: int, gain: float) -> float:
    """sigma^2 of the limit's filters: the Glorot-normal variance at LIMIT_REFERENCE_FILTERS filters."""
    return glorot_std(n_bins, LIMIT_REFERENCE_FILTERS, kernel_width, gain) ** 2


def reference_gain(n_bins: int, filters: int, kernel_width: int, gain: float) -> float:
    """The init gain that gives `filters` filters the limit's variance (for finite-N comparisons)."""
    return gain * math.sqrt((n_bins + filters) / (n_bins + LIMIT_REFERENCE_FILTERS))


def patch_products(x: torch.Tensor, y: torch.Tensor, width: int) -> torch.Tensor:
    """P_x P_y^T: (bins, Tx), (bins, Ty) -> (Tx - width + 1, Ty - width + 1), via X^T Y and shifted sums."""
    gram = x.T @ y
    rows, cols = x.shape[1] - width + 1, y.shape[1] - width + 1
    out = gram[:rows, :cols].clone()
    for j in range(1, width):
        out = out + gram[j:j + rows, j:j + cols]
    return out


def patch_dots(x: torch.Tensor, y: torch.Tensor, width: int) -> torch.Tensor:
    """p_t . q_t for each output frame: (bins, T), (bins, T) -> (T - width + 1,)."""
    return (x * y).sum(0).unfold(0, width, 1).sum(1)


class _ArcCos(torch.autograd.Function):
    """E[relu(u) relu(v)], (u, v) ~ N(0, [[a, c], [c, b]]) = (sqrt(ab) sin(theta) + (pi - theta) c) / (2 pi),
    with derivatives written out: d/dc = (pi - theta) / (2 pi), d/da = sqrt(ab) sin(theta) / (4 pi a),
    finite where autograd through acos is not (theta = 0 on the diagonal)."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        a, b = a.clamp_min(TINY), b.clamp_min(TINY)
        r = torch.sqrt(a * b)
        rho = (c / r).clamp(-1.0, 1.0)
        theta = torch.acos(rho)
        sin = torch.sqrt((1.0 - rho * rho).clamp_min(0.0))
        ctx.save_for_backward(a, b, r, theta, sin)
        return (r * sin + (math.pi - theta) * c) / (2 * math.pi)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # type: ignore[override]
        a, b, r, theta, sin = ctx.saved_tensors
        common = grad * r * sin / (4 * math.pi)
        return common / a, common / b, grad * (math.pi - theta) / (2 * math.pi)


def arccos_kernel(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The ReLU kernel, elementwise over broadcast a, b, c."""
    return _ArcCos.apply(a, b, c)


def _ndtr(x: torch.Tensor) -> torch.Tensor:
    """Phi(x) through erfc (faster than torch.special.ndtr on a CPU)."""
    return 0.5 * torch.erfc(x * -math.sqrt(0.5))


def gaussian_mean(activation: str, m: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """E[act(m + s Z)], Z ~ N(0, 1), elementwise: closed forms for ReLU, ELU, SELU, GELU and linear, else
    Gauss-Hermite with INNER_NODES[activation] nodes (tanh and softplus, both smooth)."""
    if activation in ("relu", "elu", "selu"):
        ratio = m / s
        positive = m * _ndtr(ratio) + s * torch.exp(-0.5 * ratio * ratio) / math.sqrt(2 * math.pi)
        if activation == "relu":
            return positive
        # E[e^Y; Y < 0] = exp(m + s^2 / 2) Phi(-m / s - s), in logs so that neither factor overflows
        negative = torch.exp(m + 0.5 * s * s + torch.special.log_ndtr(-ratio - s)) - _ndtr(-ratio)
        if activation == "elu":
            return positive + negative
        return SELU_SCALE * (positive + SELU_ALPHA * negative)
    if activation == "linear":
        return m
    if activation == "gelu":  # E[Y Phi(Y)] = m Phi(r) + s^2 phi(r) / q, q = sqrt(1 + s^2), r = m / q
        q = torch.sqrt(1.0 + s * s)
        r = m / q
        return m * _ndtr(r) + s * s * torch.exp(-0.5 * r * r) / (q * math.sqrt(2 * math.pi))
    nodes, weights = hermite_nodes(INNER_NODES[activation], m.dtype, m.device)
    shape = (-1,) + (1,) * m.dim()
    values = activate(m.unsqueeze(0) + s.unsqueeze(0) * nodes.view(shape), activation)
    return (values * weights.view(shape)).sum(0)


@functools.cache
def _hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.hermite_e.hermegauss(n)  # weight exp(-x^2 / 2)
    return x, w / math.sqrt(2 * math.pi)


def hermite_nodes(n: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and weights with sum w f(x) ~ E[f(Z)], Z ~ N(0, 1)."""
    x, w = _hermite(n)
    return torch.as_tensor(x, dtype=dtype, device=device), torch.as_tensor(w, dtype=dtype, device=device)


def _node_term(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, t: torch.Tensor, activation: str
               ) -> torch.Tensor:
    """One outer node: act(sqrt(a) t) E[act(v) | u = sqrt(a) t], v | u ~ N(c t / sqrt(a), b - c^2 / a)."""
    root_a = torch.sqrt(a)
    s = torch.sqrt((b - c * c / a).clamp_min(1e-12 * b + TINY))
    return activate(root_a * t, activation) * gaussian_mean(activation, c * t / root_a, s)


def quadrature_kernel(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, activation: str,
                      nodes: int = OUTER_NODES) -> torch.Tensor:
    """E[act(u) act(v)], (u, v) ~ N(0, [[a, c], [c, b]]) by 2-D quadrature, elementwise; differentiable.

    Each node's term is checkpointed when a gradient is wanted: memory of one (T, T) term, not all.
    """
    a, b = a.clamp_min(TINY), b.clamp_min(TINY)
    total = torch.zeros_like(c)
    want = torch.is_grad_enabled() and any(v.requires_grad for v in (a, b, c))
    for t_value, weight in zip(*half_line_nodes(nodes)):
        for sign in (1.0, -1.0):
            t = torch.tensor(sign * t_value, dtype=c.dtype, device=c.device)
            term = (checkpoint(_node_term, a, b, c, t, activation, use_reentrant=False) if want
                    else _node_term(a, b, c, t, activation))
            total = total + weight * term
    return total


def kernel(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, activation: str, leaky_slope: float = 0.3
           ) -> torch.Tensor:
    """k = E[act(u) act(v)] for a = var u, b = var v, c = cov(u, v), elementwise (broadcast)."""
    if activation == "relu":
        return arccos_kernel(a, b, c)
    if activation == "leaky_relu":  # act = relu(z) - s relu(-z); E[relu(u) relu(-v)] is the kernel at -c
        s = leaky_slope
        return (1 + s * s) * arccos_kernel(a, b, c) - 2 * s * arccos_kernel(a, b, -c)
    if activation == "linear":
        return c
    return series_kernel(a, b, c, activation)


@dataclass
class LimitProblem:
    """What a loss evaluation in the limit needs of the content and the style, computed once.

    content, style: (bins, frames); content_norms (Tc,), style_norms (Ts,): sigma^2 |patch|^2 (float64);
    content_self: sum_t k(c_t, c_t); style_self: sum K(s, s)^2 (0-d float64).
    """

    config: TransferConfig
    content: torch.Tensor
    style: torch.Tensor
    variance: float
    content_norms: torch.Tensor
    style_norms: torch.Tensor
    content_self: torch.Tensor
    style_self: torch.Tensor
    norm_frames: int

    @property
    def device(self) -> torch.device:
        return self.content.device

    @property
    def dtype(self) -> torch.dtype:
        return self.content.dtype

    def accept(self, spec: torch.Tensor, iteration: int | None) -> bool:
        return False  # no anchors in the limit: nothing changes from point to point

    def for_run(self) -> LimitProblem:
        return self

    def kernel(self, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return kernel(a, b, c, self.config.activation, self.config.leaky_slope)

    def norms(self, spec: torch.Tensor) -> torch.Tensor:
        return patch_dots(spec, spec, self.config.kernel_width).double() * self.variance

    def cross(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return patch_products(x, y, self.config.kernel_width).double() * self.variance

    def style_sums(self, spec: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
        """sum K(x, x)^2 - 2 sum K(x, s)^2 (0-d float64), in blocks of BLOCK_FRAMES rows."""
        width, rows = self.config.kernel_width, norms.shape[0]
        blocks = [(start, min(start + BLOCK_FRAMES, rows)) for start in range(0, rows, BLOCK_FRAMES)]
        total = spec.new_zeros((), dtype=torch.float64)
        for start, stop in blocks:
            if len(blocks) > 1 and torch.is_grad_enabled() and spec.requires_grad:
                total = total + checkpoint(self._block, spec, norms, start, stop, width, use_reentrant=False)
            else:
                total = total + self._block(spec, norms, start, stop, width)
        return total

    def _block(self, spec: torch.Tensor, norms: torch.Tensor, start: int, stop: int, width: int) -> torch.Tensor:
        rows = spec[:, start:stop + width - 1]
        kxx_sq = self._self_sum(norms[start:stop], norms, self.cross(rows, spec))
        kxs = self.kernel(norms[start:stop, None], self.style_norms[None, :], self.cross(rows, self.style))
        return kxx_sq - 2.0 * kxs.square().sum()

    def _self_sum(self, row_norms: torch.Tensor, norms: torch.Tensor, cross: torch.Tensor) -> torch.Tensor:
        """sum K(x, x)^2 over a (rows, T) block."""
        return self.kernel(row_norms[:, None], norms[None, :], cross).square().sum()

    def loss_parts(self, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(weighted total, content, style), 0-d float64, of a (bins, frames) spectrogram, scaled as kernels.py says."""
        c = self.config
        n_ref = LIMIT_REFERENCE_FILTERS
        norms = self.norms(spec)
        dots = patch_dots(spec, self.content, c.kernel_width).double() * self.variance
        own = self.kernel(norms, norms, norms)
        content = n_ref * (own.sum() - 2.0 * self.kernel(norms, self.content_norms, dots).sum() + self.content_self)
        style_sum = (self.style_sums(spec, norms) + self.style_self) / self.norm_frames**2
        style = n_ref**2 * style_sum.clamp_min(0.0)
        # float64, as engine/losses.py's style sums: a float32 total rounds L-BFGS-B's small late decreases to 0
        return c.alpha * content + c.beta * style, content, style


def build_limit_problem(content_spec: torch.Tensor, style_spec: torch.Tensor, config: TransferConfig,
                        dtype: torch.dtype = torch.float32) -> LimitProblem:
    """The limit's precomputed content and style terms; content_spec, style_spec: (bins, frames)."""
    if config.pooling > 1:
        raise ValueError("filters inf has no closed form with max pooling (pooling > 1)")
    content, style = content_spec.to(dtype), style_spec.to(dtype)
    bins, width = content.shape[0], config.kernel_width
    variance = limit_variance(bins, width, config.init_gain)
    problem = LimitProblem(config, content, style, variance, content.new_zeros(0), content.new_zeros(0),
                           content.new_zeros((), dtype=torch.float64), content.new_zeros((), dtype=torch.float64),
                           norm_frames=content.shape[1])
    with torch.no_grad():
        problem.content_norms = problem.norms(content)
        problem.style_norms = problem.norms(style)
        problem.content_self = problem.kernel(problem.content_norms, problem.content_norms,
                                              problem.content_norms).sum()
        total = content.new_zeros((), dtype=torch.float64)
        for start in range(0, problem.style_norms.shape[0], BLOCK_FRAMES):
            stop = min(start + BLOCK_FRAMES, problem.style_norms.shape[0])
            rows = style[:, start:stop + width - 1]
            kss = problem.kernel(problem.style_norms[start:stop, None], problem.style_norms[None, :],
                                 problem.cross(rows, style))
            total = total + kss.square().sum()
        problem.style_self = total
    return problem
