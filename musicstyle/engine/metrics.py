"""Fair measures: scores that do not depend on a trial's alpha, beta, activation or network.

They are computed on the audio a trial produced (its Griffin-Lim output, analysed again), in one
fixed evaluation space: the base paper's network shape (4096 filters, width 11, ReLU, gain
sqrt(2)) with its own seed, never the trial's. With F(.) the features and G(.) their Gram:

    style_distance   = ||G(out) - G(style)|| / ||G(content) - G(style)||   (1: as far as the content, 0: the style)
    content_distance = ||F(out) - F(content)|| / ||F(style) - F(content)|| (0: the content, 1: as far as the style)
    spectral_convergence = || |STFT(audio)| - |M| || / ||M||   (Griffin-Lim's fidelity to the optimised magnitude M)
    quality_score    = (style_distance + content_distance) / 2   (lower is better; content or style alone score 0.5)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .losses import gram, gram_difference_sq
from .network import feature_maps, random_filters
from .spectrogram import log_magnitude

EVAL_FILTERS = 4096
EVAL_KERNEL_WIDTH = 11
EVAL_GAIN = math.sqrt(2.0)
EVAL_SEED = 20161  # fixed, and distinct from any trial's default seed


@dataclass
class EvaluationSpace:
    """The fixed network and the references the fair measures are taken against.

    content_features, style_features: (EVAL_FILTERS, frames - 10) float64.
    """

    filters: torch.Tensor
    content_features: torch.Tensor
    style_features: torch.Tensor
    frames: int
    n_fft: int
    hop: int

    def features(self, log_mag: np.ndarray) -> torch.Tensor:
        spec = torch.as_tensor(log_mag[:, : self.frames], dtype=torch.float32, device=self.filters.device)
        with torch.no_grad():
            return feature_maps(spec, self.filters, "relu").double()

    @property
    def content_style_gram_distance(self) -> float:
        return _gram_distance(self.content_features, self.style_features, self.frames)

    @property
    def content_style_feature_distance(self) -> float:
        return float((self.content_features - self.style_features).norm())


def _gram_distance(a: torch.Tensor, b: torch.Tensor, norm_frames: int) -> float:
    """||G(a) - G(b)||_F in float64, through frames x frames products when cheaper."""
    if a.shape[1] < a.shape[0]:
        return float(gram_difference_sq(a, b).clamp_min(0).sqrt()) / norm_frames
    return float((gram(a, norm_frames) - gram(b, norm_frames)).norm())


def evaluation_space(
    content_log: np.ndarray, style_log: np.ndarray, n_fft: int, hop: int, device: torch.device | str = "cpu"
) -> EvaluationSpace:
    """Build the fixed evaluation network for a pair's (bins, frames) log-magnitudes (same frames)."""
    frames = min(content_log.shape[1], style_log.shape[1])
    filters = random_filters(content_log.shape[0], EVAL_FILTERS, EVAL_KERNEL_WIDTH, EVAL_GAIN, EVAL_SEED, device=device)
    space = EvaluationSpace(filters, None, None, frames, n_fft, hop)  # type: ignore[arg-type]
    space.content_features = space.features(content_log)
    space.style_features = space.features(style_log)
    return space


@dataclass
class FairMeasures:
    style_distance: float
    content_distance: float
    spectral_convergence: float | None

    @property
    def quality_score(self) -> float:
        return (self.style_distance + self.content_distance) / 2

    def to_dict(self) -> dict[str, float | None]:
        return {"style_distance": self.style_distance, "content_distance": self.content_distance,
                "spectral_convergence": self.spectral_convergence, "quality_score": self.quality_score}


def spectral_convergence(audio: np.ndarray, magnitude: np.ndarray, n_fft: int, hop: int) -> float:
    """|| |STFT(audio)| - |M| ||_F / ||M||_F over the frames both have."""
    rebuilt = np.expm1(log_magnitude(audio, n_fft, hop))
    frames = min(rebuilt.shape[1], magnitude.shape[1])
    target = np.abs(magnitude[:, :frames]).astype(np.float64)
    return float(np.linalg.norm(rebuilt[:, :frames] - target) / max(np.linalg.norm(target), 1e-12))


def fair_measures(audio: np.ndarray, space: EvaluationSpace, magnitude: np.ndarray | None = None) -> FairMeasures:
    """Fair measures of an output `audio` (samples,) against a pair's evaluation space."""
    log_mag = log_magnitude(audio, space.n_fft, space.hop)
    if log_mag.shape[1] < space.frames:  # Griffin-Lim output is a frame short of a centred analysis
        log_mag = np.pad(log_mag, ((0, 0), (0, space.frames - log_mag.shape[1])))
    out = space.features(log_mag)
    style = _gram_distance(out, space.style_features, space.frames) / max(space.content_style_gram_distance, 1e-30)
    content = float((out - space.content_features).norm()) / max(space.content_style_feature_distance, 1e-30)
    convergence = None if magnitude is None else spectral_convergence(audio, magnitude, space.n_fft, space.hop)
    return FairMeasures(style, content, convergence)
