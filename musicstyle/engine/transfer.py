"""One style-transfer run, from two audio files to an output waveform and a summary."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import TransferConfig
from ..errors import AudioError, ConfigError
from .audio import load_clip
from .limit.kernels import summary_notes
from .metrics import EvaluationSpace, FairMeasures, evaluation_space, fair_measures
from .optimize import OptimizationResult, Problem, Progress, optimize_spectrogram
from .reconstruct import griffin_lim
from .spectrogram import crop_frames, log_magnitude, magnitude_from_log


def resolve_device(device: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cuda' without a GPU is a ConfigError."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' asked for, but torch sees no CUDA GPU")
    return torch.device(device)


@dataclass
class PairSpectrograms:
    """A content and a style clip as audio (samples,) and log-magnitudes (bins, frames), same frames."""

    content_audio: np.ndarray
    style_audio: np.ndarray
    content: np.ndarray
    style: np.ndarray


def load_pair(
    content_path: str | Path, style_path: str | Path, config: TransferConfig,
    content_offset_seconds: float | None = None, style_offset_seconds: float | None = None,
) -> PairSpectrograms:
    """Read both clips and crop their spectrograms to a common frame count (config.frames at most)."""
    clips = {}
    for role, path, offset in (("content", content_path, content_offset_seconds),
                               ("style", style_path, style_offset_seconds)):
        audio = load_clip(path, config.sample_rate_hz,
                          config.offset_seconds if offset is None else offset, config.clip_seconds)
        spec = log_magnitude(audio, config.n_fft, config.hop)
        if spec.shape[1] < config.kernel_width * config.pooling:
            raise AudioError(f"{role} clip has {spec.shape[1]} frames, fewer than the kernel's "
                             f"{config.kernel_width * config.pooling}: {path}")
        clips[role] = (audio, spec)
    frames = min(clips["content"][1].shape[1], clips["style"][1].shape[1])
    if config.frames is not None:
        frames = min(frames, config.frames)
    return PairSpectrograms(clips["content"][0], clips["style"][0],
                            crop_frames(clips["content"][1], frames), crop_frames(clips["style"][1], frames))


@dataclass
class TransferResult:
    audio: np.ndarray  # (samples,) at config.sample_rate_hz
    optimization: OptimizationResult
    measures: FairMeasures
    reconstruct_seconds: float
    config: TransferConfig
    device: str

    def summary(self) -> dict[str, Any]:
        """The run's figures and full config, as written by `--json`."""
        o = self.optimization
        return {
            "final_loss": o.final_loss, "content_loss": o.content_loss, "style_loss": o.style_loss,
            "content_loss_unweighted": o.content_loss_unweighted, "style_loss_unweighted": o.style_loss_unweighted,
            "initial_loss": o.initial_loss, "iterations": o.iterations, "evaluations": o.evaluations,
            "optimize_seconds": o.optimize_seconds, "seconds_per_evaluation": o.seconds_per_evaluation,
            "reconstruct_seconds": self.reconstruct_seconds, "stop_reason": o.stop_reason,
            "float64_fallback": o.float64_fallback, **self.measures.to_dict(),
            **summary_notes(self.config, o.float64_fallback, self.device),
            "device": self.device, "config": self.config.to_dict(),
        }


def run_transfer(
    pair: PairSpectrograms, config: TransferConfig, progress: Progress | None = None,
    problem: Problem | None = None, space: EvaluationSpace | None = None,
) -> TransferResult:
    """Optimise, reconstruct with Griffin-Lim and take the fair measures of one pair.

    `space` may be passed in to reuse the pair's evaluation space (the sweep builds it once per pair).
    """
    device = resolve_device(config.device)
    optimization = optimize_spectrogram(pair.content, pair.style, config, device=device,
                                        progress=progress, problem=problem)
    start = time.perf_counter()
    magnitude = magnitude_from_log(optimization.spectrogram)
    audio = griffin_lim(magnitude, config.n_fft, config.hop, config.griffin_lim_iters, config.seed, device=device)
    reconstruct_seconds = time.perf_counter() - start
    if space is None:
        space = evaluation_space(pair.content, pair.style, config.n_fft, config.hop, device=device)
    measures = fair_measures(audio, space, magnitude)
    return TransferResult(audio, optimization, measures, reconstruct_seconds, config, str(device))
