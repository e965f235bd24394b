"""Network: one random, fixed 1-D convolution over time, frequency bins as input channels.

The spectrogram (bins, frames) is a 1 x frames image with `bins` channels; the layer's filters
(filters, bins, kernel_width) are drawn once from a seeded Glorot-normal and never trained.

The convolution runs as one matrix product of the filters, flattened to (filters, bins * width),
with the unfolded input (bins * width, output frames), and its input gradient as the transposed
product folded back: the two products a step cannot avoid, and no weight gradient at all. In
bfloat16 mode both products take bfloat16 operands (AMX / tensor cores); everything else is float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def glorot_std(n_bins: int, filters: int, kernel_width: int, gain: float) -> float:
    """gain * sqrt(2 / ((fan_in + fan_out) * width)); the base paper's gain is sqrt(2)."""
    return gain * math.sqrt(2.0 / ((n_bins + filters) * kernel_width))


def random_filters(
    n_bins: int,
    filters: int,
    kernel_width: int,
    gain: float,
    seed: int,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Seeded Glorot-normal filters, shape (filters, n_bins, kernel_width), no gradient.

    Drawn on the CPU from their own generator, so a seed gives the same filters on every device.
    """
    generator = torch.Generator().manual_seed(int(seed))
    std = glorot_std(n_bins, filters, kernel_width, gain)
    weights = torch.randn(filters, n_bins, kernel_width, generator=generator, dtype=torch.float32) * std
    return weights.to(device=device, dtype=dtype).requires_grad_(False)


def activate(pre: torch.Tensor, activation: str, leaky_slope: float = 0.3) -> torch.Tensor:
    """Apply the named non-linearity (see `config.ACTIVATIONS`)."""
    if activation == "relu":
        return F.relu(pre)
    if activation == "leaky_relu":
        return F.leaky_relu(pre, negative_slope=leaky_slope)
    if activation == "elu":
        return F.elu(pre)
    if activation == "selu":
        return F.selu(pre)
    if activation == "gelu":
        return F.gelu(pre)
    if activation == "tanh":
        return torch.tanh(pre)
    if activation == "softplus":
        return F.softplus(pre)
    if activation == "linear":
        return pre
    raise ValueError(f"unknown activation {activation!r}")


def output_frames(frames: int, kernel_width: int, pooling: int = 1) -> int:
    """Frames of the feature maps: 'valid' convolution, then non-overlapping max pooling."""
    return (frames - kernel_width + 1) // pooling


def bf16_supported(device: torch.device | str) -> bool:
    """Whether bfloat16 matrix products are fast on `device` (CUDA, or a CPU with AVX-512 BF16 / AMX)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def unfold_frames(spec: torch.Tensor, kernel_width: int) -> torch.Tensor:
    """Im2col along time: (bins, frames) -> (bins * width, frames - width + 1), rows ordered (bin, tap)."""
    bins, frames = spec.shape
    out = frames - kernel_width + 1
    return spec.unfold(1, kernel_width, 1).permute(0, 2, 1).reshape(bins * kernel_width, out)


def fold_padded(columns: torch.Tensor, kernel_width: int) -> torch.Tensor:
    """Adjoint of `unfold_frames` (summed in float32 at least), from columns padded to one frame more than the input.

    columns: (bins * width, frames + 1) whose last `width` columns are zero -> (bins, frames).
    Row k of a bin's (width, frames + 1) block, read flat with row length `frames`, is shifted by k:
    the overlap-add is then one strided sum over the taps.
    """
    rows, padded = columns.shape
    bins, frames = rows // kernel_width, padded - 1
    flat = columns.reshape(bins, kernel_width * padded)[:, : kernel_width * frames]
    return flat.view(bins, kernel_width, frames).sum(1, dtype=torch.promote_types(columns.dtype, torch.float32))


@dataclass
class ConvMatrices:
    """The fixed filters as the matrices of the two products, in the product dtype.

    weight: (filters, bins * width); weight_t: its transpose, contiguous where that is faster
    (bfloat16 on a CPU), else a view.
    """

    weight: torch.Tensor
    weight_t: torch.Tensor
    kernel_width: int


def conv_matrices(filters: torch.Tensor, dtype: torch.dtype) -> ConvMatrices:
    """The product matrices of (filters, bins, width) filters in `dtype`; build once and reuse (bf16 copies)."""
    weight = filters.detach().reshape(filters.shape[0], -1).to(dtype)
    contiguous_t = dtype == torch.bfloat16 and filters.device.type == "cpu"
    return ConvMatrices(weight, weight.T.contiguous() if contiguous_t else weight.T, filters.shape[2])


class _ValidConv1d(torch.autograd.Function):
    """pre = W @ unfold(x); d x = fold(W^T @ d pre). No gradient for W, ever."""

    @staticmethod
    def forward(ctx, spec: torch.Tensor, matrices: ConvMatrices) -> torch.Tensor:  # type: ignore[override]
        ctx.matrices = matrices
        ctx.spec_dtype = spec.dtype
        columns = unfold_frames(spec.to(matrices.weight.dtype), matrices.kernel_width)
        return (matrices.weight @ columns).to(spec.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        m = ctx.matrices
        filters, out = grad.shape
        padded = grad.new_empty(filters, out + m.kernel_width, dtype=m.weight.dtype)  # frames + 1 columns
        padded[:, :out] = grad
        padded[:, out:] = 0
        return fold_padded(m.weight_t @ padded, m.kernel_width).to(ctx.spec_dtype), None


def convolve(spec: torch.Tensor, filters: torch.Tensor | ConvMatrices, bf16: bool = False) -> torch.Tensor:
    """Valid 1-D convolution, no bias: (bins, frames) -> (filters, frames - width + 1), in spec's dtype.

    `filters`: (filters, bins, width), or their `conv_matrices` (then their dtype decides the products'
    precision). With `bf16` both products take bfloat16 operands; the result comes back in spec's dtype.
    """
    if not isinstance(filters, ConvMatrices):
        filters = conv_matrices(filters, torch.bfloat16 if bf16 else spec.dtype)
    return _ValidConv1d.apply(spec, filters)


def feature_maps(
    spec: torch.Tensor,
    filters: torch.Tensor | ConvMatrices,
    activation: str,
    leaky_slope: float = 0.3,
    pooling: int = 1,
    bf16: bool = False,
) -> torch.Tensor:
    """Features of a spectrogram: (bins, frames) -> (filters, output_frames).

    With `bf16`, the convolution's two products run in bfloat16 and the result comes back in the
    spectrogram's dtype; the activation and the losses stay in that dtype.
    """
    pre = convolve(spec, filters, bf16=bf16)
    features = activate(pre, activation, leaky_slope)
    if pooling > 1:
        features = F.max_pool1d(features.unsqueeze(0), pooling)[0]
    return features
