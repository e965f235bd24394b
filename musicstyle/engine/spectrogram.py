"""Spectrogram: log1p(|STFT|) as a (frequency bins, frames) image, and its inverse magnitude."""

from __future__ import annotations

import librosa
import numpy as np


def log_magnitude(audio: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """log1p(|STFT|) with a Hann window and centred frames.

    audio: (samples,) -> (n_fft // 2 + 1, 1 + samples // hop) float32.
    """
    stft = librosa.stft(np.asarray(audio, dtype=np.float32), n_fft=n_fft, hop_length=hop, window="hann", center=True)
    return np.log1p(np.abs(stft)).astype(np.float32)


def magnitude_from_log(log_mag: np.ndarray) -> np.ndarray:
    """exp(x) - 1, not clipped (as the base paper): negative values act as a phase flip in Griffin-Lim."""
    return np.expm1(np.asarray(log_mag, dtype=np.float64)).astype(np.float32)


def crop_frames(spec: np.ndarray, frames: int | None) -> np.ndarray:
    """First `frames` columns of a (bins, frames) image (all of them when `frames` is None)."""
    return spec if frames is None else spec[:, :frames]
