"""Reconstruction: Griffin-Lim from a magnitude spectrogram back to audio.

The base paper's loop: uniform random start phase, then `iters` rounds of inverse STFT and STFT
keeping the phase, no momentum. `griffin_lim` runs it in torch on the run's device; librosa's
`griffinlim` (same algorithm with momentum=0) is kept as `griffin_lim_librosa` for comparison.
"""

from __future__ import annotations

import librosa
import numpy as np
import torch


def _phase_start(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Uniform random phase in [-pi, pi), seeded."""
    return np.random.default_rng((seed, 3)).uniform(-np.pi, np.pi, size=shape)


def griffin_lim(
    magnitude: np.ndarray, n_fft: int, hop: int, iters: int, seed: int, device: torch.device | str = "cpu"
) -> np.ndarray:
    """Audio whose STFT magnitude approximates `magnitude`.

    magnitude: (n_fft // 2 + 1, frames) -> audio (hop * (frames - 1),) float32.
    """
    mag = torch.as_tensor(np.asarray(magnitude), dtype=torch.float32, device=device)
    window = torch.hann_window(n_fft, device=device)
    length = hop * (mag.shape[1] - 1)
    phase = torch.as_tensor(_phase_start(mag.shape, seed), dtype=torch.float32, device=device)
    angles = torch.polar(torch.ones_like(mag), phase)

    def istft(spec: torch.Tensor) -> torch.Tensor:
        return torch.istft(spec, n_fft, hop, window=window, center=True, length=length)

    def stft(audio: torch.Tensor) -> torch.Tensor:
        return torch.stft(audio, n_fft, hop, window=window, center=True, pad_mode="constant", return_complex=True)

    for _ in range(iters):
        rebuilt = stft(istft(mag * angles))
        angles = rebuilt / rebuilt.abs().clamp_min(1e-16)
    return istft(mag * angles).cpu().numpy().astype(np.float32)


def griffin_lim_librosa(magnitude: np.ndarray, n_fft: int, hop: int, iters: int, seed: int) -> np.ndarray:
    """librosa's Griffin-Lim with the same start phase and no momentum, for comparison."""
    magnitude = np.asarray(magnitude, dtype=np.float32)
    phase = _phase_start(magnitude.shape, seed)
    # librosa's init="random" draws its own phase; start it from ours instead through one manual step.
    audio = librosa.istft(magnitude * np.exp(1j * phase), hop_length=hop, n_fft=n_fft,
                          length=hop * (magnitude.shape[1] - 1))
    if iters == 0:
        return audio.astype(np.float32)
    rebuilt = librosa.stft(audio, n_fft=n_fft, hop_length=hop)
    angles = rebuilt / np.maximum(np.abs(rebuilt), 1e-16)
    for _ in range(iters - 1):
        audio = librosa.istft(magnitude * angles, hop_length=hop, n_fft=n_fft, length=hop * (magnitude.shape[1] - 1))
        rebuilt = librosa.stft(audio, n_fft=n_fft, hop_length=hop)
        angles = rebuilt / np.maximum(np.abs(rebuilt), 1e-16)
    audio = librosa.istft(magnitude * angles, hop_length=hop, n_fft=n_fft, length=hop * (magnitude.shape[1] - 1))
    return audio.astype(np.float32)
