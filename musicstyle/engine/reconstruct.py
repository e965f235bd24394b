"""Reconstruction: Griffin-Lim from a magnitude spectrogram back to audio.

The base paper's loop: uniform random start phase, then `iters` rounds of inverse STFT and STFT
keeping the phase, no momentum. `griffin_lim` runs it in torch on the run's device (the faster, at
the same spectral convergence: benchmark/bench_step.py); the same loop through librosa is kept as
`griffin_lim_librosa` for comparison.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _phase_start(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Uniform random phase in [-pi, pi), seeded."""
    return np.random.default_rng((seed, 3)).uniform(-np.pi, np.pi, size=shape)


def _overlap_add(chunks: torch.Tensor, hop: int) -> torch.Tensor:
    """Sum frames (frames, n_fft) placed every `hop` samples: -> (n_fft + hop * (frames - 1),)."""
    frames, n_fft = chunks.shape
    blocks = -(-n_fft // hop)  # frame length in hops, rounded up
    padded = F.pad(chunks, (0, blocks * hop - n_fft)).view(frames, blocks, hop)
    out = chunks.new_zeros(frames + blocks - 1, hop)
    for k in range(blocks):
        out[k : k + frames] += padded[:, k]
    return out.reshape(-1)[: n_fft + hop * (frames - 1)]


def griffin_lim(
    magnitude: np.ndarray, n_fft: int, hop: int, iters: int, seed: int, device: torch.device | str = "cpu"
) -> np.ndarray:
    """Audio whose STFT magnitude approximates `magnitude`.

    magnitude: (n_fft // 2 + 1, frames) -> audio (hop * (frames - 1),) float32.
    The same loop as torch.istft / torch.stft (centred, Hann, zero padding), with the window envelope
    and the padding computed once, which librosa's loop recomputes (benchmark/bench_step.py times both).
    """
    mag = torch.as_tensor(np.asarray(magnitude), dtype=torch.float32, device=device).T.contiguous()  # (frames, bins)
    frames = mag.shape[0]
    length, start = hop * (frames - 1), n_fft // 2
    window = torch.hann_window(n_fft, device=device)
    envelope = _overlap_add(window.square().expand(frames, n_fft), hop)
    scale = torch.zeros_like(envelope)  # 1 / envelope on the kept samples, 0 on the centring padding
    scale[start : start + length] = 1.0 / envelope[start : start + length].clamp_min(1e-11)
    phase = torch.as_tensor(_phase_start(magnitude.shape, seed).T, dtype=torch.float32, device=device)
    spec = torch.polar(mag, phase)

    def audio(spectrum: torch.Tensor) -> torch.Tensor:  # (frames, bins) -> (n_fft + hop * (frames - 1),)
        return _overlap_add(torch.fft.irfft(spectrum, n=n_fft) * window, hop) * scale

    for _ in range(iters):
        rebuilt = torch.fft.rfft(audio(spec).unfold(0, n_fft, hop) * window)
        spec = rebuilt * (mag / rebuilt.abs().clamp_min(1e-16))
    return audio(spec)[start : start + length].cpu().numpy().astype(np.float32)


def griffin_lim_librosa(magnitude: np.ndarray, n_fft: int, hop: int, iters: int, seed: int) -> np.ndarray:
    """librosa's Griffin-Lim with the same start phase and no momentum, for comparison."""
    import librosa  # only here: the torch path runs where librosa is not installed

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
