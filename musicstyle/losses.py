"""Losses: content = alpha * sum (F - F_content)^2; style = beta * sum (G - G_style)^2, G = F F^T / n.

`n` is the spectrogram's input frame count (as the base paper's notebook). F has shape
(filters K, frames T). When T < K the style term is computed through frames x frames products,

    ||F F^T - S S^T||^2 = ||F^T F||^2 - 2 ||F^T S||^2 + ||S^T S||^2,

the same number for about T/K of the work (tests check loss and gradient agree).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class StyleTarget:
    """What the style term needs of the style song, computed once.

    features: S, (filters, frames_s); gram: S S^T / n, (filters, filters), only in 'filters' mode;
    self_term: ||S^T S||^2 / n^2, a scalar, only in 'frames' mode.
    """

    features: torch.Tensor
    norm_frames: int
    mode: str
    gram: torch.Tensor | None = None
    self_term: torch.Tensor | None = None


def choose_gram_mode(mode: str, filters: int, frames: int) -> str:
    """'auto' picks the frames x frames identity when it is cheaper (frames below filters)."""
    if mode != "auto":
        return mode
    return "frames" if frames < filters else "filters"


def gram(features: torch.Tensor, norm_frames: int) -> torch.Tensor:
    """G = F F^T / n: (filters, frames) -> (filters, filters)."""
    return features @ features.T / norm_frames


def style_target(style_features: torch.Tensor, norm_frames: int, mode: str) -> StyleTarget:
    """Precompute the style side of the style loss for `mode` ('auto', 'filters' or 'frames')."""
    filters, frames = style_features.shape
    mode = choose_gram_mode(mode, filters, frames)
    s = style_features.detach()
    if mode == "filters":
        return StyleTarget(s, norm_frames, mode, gram=gram(s, norm_frames))
    sts = s.T @ s
    self_term = (sts.double().square().sum() / norm_frames**2).to(s.dtype)
    return StyleTarget(s, norm_frames, mode, self_term=self_term)


def style_distance_sq(features: torch.Tensor, target: StyleTarget) -> torch.Tensor:
    """Unweighted style loss sum (G - G_style)^2 (a 0-d tensor, differentiable in `features`)."""
    n = target.norm_frames
    if target.mode == "filters":
        return (gram(features, n) - target.gram).square().sum()
    ftf = features.T @ features
    fts = features.T @ target.features
    total = (ftf.square().sum() - 2.0 * fts.square().sum()) / n**2 + target.self_term
    return total.clamp_min(0.0)


def content_distance_sq(features: torch.Tensor, content_features: torch.Tensor) -> torch.Tensor:
    """Unweighted content loss sum (F - F_content)^2 (a 0-d tensor)."""
    return (features - content_features).square().sum()
