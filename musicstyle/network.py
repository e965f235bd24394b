"""Network: one random, fixed 1-D convolution over time, frequency bins as input channels.

The spectrogram (bins, frames) is a 1 x frames image with `bins` channels; the layer's filters
(filters, bins, kernel_width) are drawn once from a seeded Glorot-normal and never trained.
"""

from __future__ import annotations

import math

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


def feature_maps(
    spec: torch.Tensor,
    filters: torch.Tensor,
    activation: str,
    leaky_slope: float = 0.3,
    pooling: int = 1,
    bf16: bool = False,
) -> torch.Tensor:
    """Features of a spectrogram: (bins, frames) -> (filters, output_frames).

    With `bf16`, the convolution runs in bfloat16 under autocast (its gradient too) and the
    result comes back as float32; the losses stay in float32.
    """
    device_type = spec.device.type
    with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=bf16):
        pre = F.conv1d(spec.unsqueeze(0), filters)[0]
    pre = pre.float()
    features = activate(pre, activation, leaky_slope)
    if pooling > 1:
        features = F.max_pool1d(features.unsqueeze(0), pooling)[0]
    return features
