"""Network: one random, fixed 1-D convolution over time, frequency bins as input channels.

The spectrogram (bins, frames) is a 1 x frames image with `bins` channels; the layer's filters
(filters, bins, kernel_width) are drawn once from a seeded Glorot-normal and never trained.

The convolution runs as one matrix product of the filters, flattened to (filters, bins * width),
with the unfolded input (bins * width, output frames), and its input gradient as the transposed
product folded back: the two products a step cannot avoid, and no weight gradient at all. Both
run on columns padded with zeros to whole blocks of the CPU's kernels (`product_columns`). In
bfloat16 mode both products take bfloat16 operands (AMX / tensor cores); everything else is float32,
and an optimisation convolves through the difference to an `Anchor` so only that difference is rounded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

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


def resolve_precision(requested: str, device: torch.device | str) -> tuple[str, str]:
    """('fp32', 'bf16' or 'fp64', why) for a run's `precision` setting on `device`.

    'auto' is bf16 only where bfloat16 products are fast: on CUDA as `bf16_supported` says, on a CPU
    with the avx512_bf16 or amx_bf16 flag (`machine.fast_bf16_cpu`, which also sees AVX2 emulation).
    An explicit 'bf16' where they are slow runs fp32, and says so; 'fp32' stays fp32.
    """
    from ..util.machine import fast_bf16_cpu

    device = torch.device(device)
    if requested in ("fp32", "fp64"):
        return requested, f"precision {requested} asked for"
    if device.type == "cuda":
        fast, why = bf16_supported(device), f"CUDA {'has' if bf16_supported(device) else 'lacks'} bf16 support"
    else:
        fast, why = fast_bf16_cpu()
        fast = fast and bf16_supported(device)
    if fast:
        return "bf16", f"{requested}: fast bfloat16 products ({why})"
    return "fp32", f"{requested}: no fast bfloat16 products ({why}), so float32"


def product_columns(columns: int, dtype: torch.dtype) -> int:
    """`columns` rounded up to whole blocks of the CPU's matrix kernels: 32 in bfloat16 (AMX), 16 otherwise.

    At the base shapes (420 output frames) the products with 448 columns (bf16) or 432 (fp32) are
    faster than with 420 or 431, zeros and all (benchmark/bench_step.py: the floor rows "on N columns").
    """
    multiple = 32 if dtype == torch.bfloat16 else 16
    return -(-columns // multiple) * multiple


def unfold_frames(spec: torch.Tensor, kernel_width: int, columns: int | None = None,
                  dtype: torch.dtype | None = None) -> torch.Tensor:
    """Im2col along time: (bins, frames) -> (bins * width, columns), rows ordered (bin, tap).

    The first frames - width + 1 columns hold the windows, the rest (up to `columns`) zeros; the
    copy converts to `dtype` (default: spec's) on the way.
    """
    bins, frames = spec.shape
    out = frames - kernel_width + 1
    columns = out if columns is None else columns
    unfolded = spec.new_empty(bins, kernel_width, columns, dtype=dtype or spec.dtype)
    unfolded[:, :, :out] = spec.unfold(1, kernel_width, 1).permute(0, 2, 1)
    unfolded[:, :, out:] = 0
    return unfolded.view(bins * kernel_width, columns)


def fold_padded(columns: torch.Tensor, kernel_width: int, frames: int) -> torch.Tensor:
    """Adjoint of `unfold_frames`: (bins * width, padded) -> (bins, frames), summed in float32 for
    bfloat16 columns (and returned so), in columns' dtype otherwise.

    `columns` holds frames - width + 1 columns of data, then zeros, frames + 1 columns at least.
    Row k of a bin's (width, padded) block, read flat with row length padded - 1, is
    shifted by k, so the overlap-add is one strided sum over the taps.
    """
    rows, padded = columns.shape
    bins = rows // kernel_width
    flat = columns.reshape(bins, kernel_width * padded)[:, : kernel_width * (padded - 1)]
    sum_dtype = torch.float32 if columns.dtype == torch.bfloat16 else columns.dtype
    return flat.view(bins, kernel_width, padded - 1).sum(1, dtype=sum_dtype)[:, :frames]


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


def conv_product(spec: torch.Tensor, matrices: ConvMatrices) -> torch.Tensor:
    """W @ unfold(spec) on `product_columns` columns, cut back: (bins, frames) -> (filters, frames -
    width + 1), in the products' dtype (no offset, no cast back: the caller does those in its next pass)."""
    dtype, width = matrices.weight.dtype, matrices.kernel_width
    out = spec.shape[1] - width + 1
    return (matrices.weight @ unfold_frames(spec, width, product_columns(out, dtype), dtype=dtype))[:, :out]


class _ValidConv1d(torch.autograd.Function):
    """pre = W @ unfold(x); d x = fold(W^T @ d pre). No gradient for W, ever.

    Both products run on `product_columns` columns (zeros past the data), then are cut back.
    """

    @staticmethod
    def forward(ctx, spec: torch.Tensor, matrices: ConvMatrices,  # type: ignore[override]
                offset: torch.Tensor | None) -> torch.Tensor:
        ctx.matrices = matrices
        ctx.spec_dtype = spec.dtype
        ctx.frames = spec.shape[1]
        pre = conv_product(spec, matrices)
        return pre.to(spec.dtype) if offset is None else torch.add(offset, pre)  # one pass either way

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # type: ignore[override]
        m = ctx.matrices
        padded = gradient_columns(m, ctx.frames, grad.device)
        padded[:, : grad.shape[1]] = grad
        return input_gradient(m, padded, ctx.frames).to(ctx.spec_dtype), None, None


def gradient_columns(matrices: ConvMatrices, frames: int, device: torch.device | str) -> torch.Tensor:
    """The operand of the input-gradient product: (filters, product_columns(frames + 1)) in the products'
    dtype, zeros past the first frames - width + 1 columns, which the caller fills with d loss / d pre."""
    out = frames - matrices.kernel_width + 1
    padded = torch.empty(matrices.weight.shape[0], product_columns(frames + 1, matrices.weight.dtype),
                         dtype=matrices.weight.dtype, device=device)
    padded[:, out:] = 0
    return padded


def input_gradient(matrices: ConvMatrices, padded: torch.Tensor, frames: int) -> torch.Tensor:
    """d loss / d spectrogram, (bins, frames): fold(W^T @ padded), `padded` being `gradient_columns`
    filled with d loss / d pre; float32 for bfloat16 products (`fold_padded`), else their dtype."""
    return fold_padded(matrices.weight_t @ padded, matrices.kernel_width, frames)


def convolve(spec: torch.Tensor, filters: torch.Tensor | ConvMatrices, bf16: bool = False,
             offset: torch.Tensor | None = None) -> torch.Tensor:
    """Valid 1-D convolution, no bias: (bins, frames) -> (filters, frames - width + 1), in spec's dtype.

    `filters`: (filters, bins, width), or their `conv_matrices` (then their dtype decides the products'
    precision). With `bf16` both products take bfloat16 operands; the result comes back in spec's dtype.
    `offset` (filters, frames - width + 1), in spec's dtype, is added to the result (a constant).
    """
    if not isinstance(filters, ConvMatrices):
        filters = conv_matrices(filters, torch.bfloat16 if bf16 else spec.dtype)
    return _ValidConv1d.apply(spec, filters, offset)


def pool_activations(pre: torch.Tensor, activation: str, leaky_slope: float = 0.3, pooling: int = 1) -> torch.Tensor:
    """Non-linearity, then non-overlapping max pooling over time: (filters, frames) -> (filters, frames // pooling)."""
    features = activate(pre, activation, leaky_slope)
    if pooling > 1:
        features = F.max_pool1d(features.unsqueeze(0), pooling)[0]
    return features


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
    return pool_activations(convolve(spec, filters, bf16=bf16), activation, leaky_slope, pooling)


class Convolved(Protocol):
    """A spectrogram and its convolution (`anchors.Anchor`): spec (bins, frames), pre (filters, frames - width + 1)."""

    spec: torch.Tensor
    pre: torch.Tensor


def convolve_from(spec: torch.Tensor, matrices: ConvMatrices, anchor: Convolved | None) -> torch.Tensor:
    """`convolve(spec, matrices)`, through the difference to `anchor` where one is given."""
    if anchor is None:
        return convolve(spec, matrices)
    return convolve(spec - anchor.spec, matrices, offset=anchor.pre)
