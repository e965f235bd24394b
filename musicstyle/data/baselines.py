"""Trivial outputs a transfer has to beat, each put through the run's own Griffin-Lim.

With c, s, t the content, style and target clips (samples,) and |X| an STFT magnitude (bins, frames):

    content copy    GL(|c|)                 style copy     GL(|s|)
    waveform mix w  GL(|(1 - w) c + w s|)   for w = 0.25, 0.5, 0.75 (w is the style's share)
    magnitude mix   GL((|c| + |s|) / 2)
    EQ matching     GL(|c| * g), g(f) = sqrt(LTAS_s(f) / LTAS_c(f)): the content filtered to the style's long-term
                    average spectrum (each smoothed over EQ_SMOOTH_BINS bins, g within +-EQ_LIMIT_DB), the
                    cheapest "timbre transfer" there is
    oracle          GL(|t|)                 only where a target exists: the best any transfer can do

Going through the same Griffin-Lim (n_fft, hop, iterations, seed) as a transfer means every output
carries the same reconstruction damage, so only what was optimised differs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..config import TransferConfig
from ..engine.metrics import EvaluationSpace, evaluation_space, fair_measures
from ..engine.reconstruct import griffin_lim
from ..engine.spectrogram import crop_frames, log_magnitude
from ..engine.transfer import PairSpectrograms

MIX_WEIGHTS = (0.25, 0.5, 0.75)
EQ_SMOOTH_BINS = 9
EQ_LIMIT_DB = 40.0


def _magnitude(audio: np.ndarray, frames: int, config: TransferConfig) -> np.ndarray:
    return np.expm1(crop_frames(log_magnitude(audio, config.n_fft, config.hop), frames).astype(np.float64))


def eq_gain(content_mag: np.ndarray, style_mag: np.ndarray) -> np.ndarray:
    """Per-bin gain (bins,) taking the content's long-term average spectrum to the style's (module docstring)."""
    from scipy.ndimage import uniform_filter1d

    ltas_c = uniform_filter1d(np.mean(content_mag ** 2, axis=1), EQ_SMOOTH_BINS)
    ltas_s = uniform_filter1d(np.mean(style_mag ** 2, axis=1), EQ_SMOOTH_BINS)
    limit = 10 ** (EQ_LIMIT_DB / 20)
    return np.clip(np.sqrt(ltas_s / np.maximum(ltas_c, 1e-20)), 1 / limit, limit)


def trivial_audios(content_audio: np.ndarray, style_audio: np.ndarray, frames: int, config: TransferConfig,
                   target_audio: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Name -> audio (hop * (frames - 1),) of every baseline (module docstring) from the two clips (samples,)."""
    def gl(magnitude: np.ndarray) -> np.ndarray:
        return griffin_lim(magnitude, config.n_fft, config.hop, config.griffin_lim_iters, config.seed)

    content_mag = _magnitude(content_audio, frames, config)
    style_mag = _magnitude(style_audio, frames, config)
    out = {"content copy": gl(content_mag), "style copy": gl(style_mag)}
    length = min(len(content_audio), len(style_audio))
    for w in MIX_WEIGHTS:
        mix = (1 - w) * content_audio[:length] + w * style_audio[:length]
        out[f"waveform mix w={w:g}"] = gl(_magnitude(mix, frames, config))
    out["magnitude mix"] = gl((content_mag + style_mag) / 2)
    out["EQ matching"] = gl(content_mag * eq_gain(content_mag, style_mag)[:, None])
    if target_audio is not None:
        out["oracle"] = gl(_magnitude(target_audio, frames, config))
    return out


def baseline_audios(pair: PairSpectrograms, config: TransferConfig,
                    target_audio: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Name -> audio (hop * (frames - 1),) of every baseline for one loaded pair (module docstring)."""
    return trivial_audios(pair.content_audio, pair.style_audio, pair.content.shape[1], config, target_audio)


def score_baselines(pair: PairSpectrograms, config: TransferConfig, reference: Any = None,
                    target_audio: np.ndarray | None = None, space: EvaluationSpace | None = None
                    ) -> list[dict[str, Any]]:
    """One row per baseline: its fair measures and, given a TruthReference, its truth measures."""
    if space is None:
        space = evaluation_space(pair.content, pair.style, config.n_fft, config.hop)
    rows = []
    for name, audio in baseline_audios(pair, config, target_audio).items():
        row: dict[str, Any] = {"baseline": name, **fair_measures(audio, space).to_dict()}
        if reference is not None:
            row |= reference.measures(audio)
        rows.append(row)
    return rows
