"""The straightforward port of the paper's step, the yardstick the fast paths are checked and timed
against (tests/test_speed_paths.py, benchmark/bench_step.py): F.conv1d, the activation, max
pooling, the Gram G = F F^T / n over the filters, both losses, autograd. Nothing here is fast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import TransferConfig
from .network import random_filters

FUNCTIONS = {"relu": F.relu, "elu": F.elu, "selu": F.selu}  # the rest, by name (leaky_relu has a slope)


class StraightStep:
    """`step(spec) -> (total loss, d total / d spec)` for (bins, frames) spectrograms in content's dtype."""

    def __init__(self, content: torch.Tensor, style: torch.Tensor, config: TransferConfig) -> None:
        self.config = config
        self.filters = random_filters(content.shape[0], config.filters, config.kernel_width, config.init_gain,
                                      config.seed, device=content.device, dtype=content.dtype)
        self.n = content.shape[1]
        with torch.no_grad():
            self.content_features = self.features(content)
            style_features = self.features(style)
            self.style_gram = style_features @ style_features.T / self.n

    def features(self, spec: torch.Tensor) -> torch.Tensor:
        """(bins, frames) -> (filters, (frames - width + 1) // pooling)."""
        pre = F.conv1d(spec.unsqueeze(0), self.filters)
        c = self.config
        out = F.leaky_relu(pre, c.leaky_slope) if c.activation == "leaky_relu" else FUNCTIONS[c.activation](pre)
        return (F.max_pool1d(out, c.pooling) if c.pooling > 1 else out)[0]

    def loss(self, spec: torch.Tensor) -> torch.Tensor:
        features = self.features(spec)
        content = (features - self.content_features).square().sum()
        style = (features @ features.T / self.n - self.style_gram).square().sum()
        return self.config.alpha * content + self.config.beta * style

    def __call__(self, spec: torch.Tensor) -> tuple[float, torch.Tensor]:
        x = spec.detach().clone().requires_grad_(True)
        total = self.loss(x)
        total.backward()
        return float(total.detach()), x.grad
