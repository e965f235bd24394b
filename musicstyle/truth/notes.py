"""The notes, artefacts and log-spectral distance of an output, in the timbre measure's analysis space.

notes      d_N(y) = 1 - mean_t cos(chroma(y)[:, t], R[:, t])       over frames where R has a note
           chroma: constant-Q chroma (12, T) at ANALYSIS_HOP; R: the reference pitch classes (12, T), either
           the score's piano roll folded to pitch classes (a MIDI file: the notes that were played) or,
           without a score, the target's own chroma.
artefacts  the median over active frames of each frame's 10th-percentile STFT cell, in dB below that
           frame's loudest cell: the noise floor a reconstruction leaves (-100 dB clean, about -SNR with
           white noise). It does not depend on the target, so it never mixes instrument into artefacts.
lsd        log-spectral distance in dB to the target, as Cifka et al. (ICASSP 2021) report it: the mean
           over frames of the root mean square over bins of the power difference in dB, each clip
           floored LSD_FLOOR_DB below its own loudest cell. Reported beside the others, not optimised.
"""

from __future__ import annotations

import numpy as np

from .timbre import ANALYSIS_HOP, ANALYSIS_N_FFT, ANALYSIS_RATE_HZ, unit_rms

LSD_FLOOR_DB = 80.0
ARTEFACT_FLOOR_DB = 100.0
ARTEFACT_PERCENTILE = 10
ACTIVE_DB = 40.0


def pitch_class_roll(notes: list[tuple[int, float, float]], frames: int) -> np.ndarray:
    """Notes (MIDI pitch, start s, end s) -> (12, frames) 0/1: which pitch classes sound at each frame's centre."""
    roll = np.zeros((12, frames))
    centre = np.arange(frames) * ANALYSIS_HOP / ANALYSIS_RATE_HZ
    for pitch, start, end in notes:
        roll[pitch % 12, (centre >= start) & (centre < end)] = 1.0
    return roll


def chroma(audio: np.ndarray) -> np.ndarray:
    """(samples,) at ANALYSIS_RATE_HZ -> (12, frames) constant-Q chroma."""
    import librosa

    return librosa.feature.chroma_cqt(y=unit_rms(audio).astype(np.float32), sr=ANALYSIS_RATE_HZ,
                                      hop_length=ANALYSIS_HOP)


def notes_distance(audio_chroma: np.ndarray, reference: np.ndarray) -> float:
    """1 - mean frame cosine between chroma (12, T) and a reference (12, T') over the frames both have where
    the reference is not empty."""
    frames = min(audio_chroma.shape[1], reference.shape[1])
    c, r = audio_chroma[:, :frames], reference[:, :frames]
    keep = r.sum(axis=0) > 0
    c, r = c[:, keep], r[:, keep]
    if not keep.any():
        return 1.0
    cos = (c * r).sum(0) / np.maximum(np.linalg.norm(c, axis=0) * np.linalg.norm(r, axis=0), 1e-12)
    return float(1.0 - cos.mean())


def _power_db(audio: np.ndarray, floor_db: float) -> np.ndarray:
    """(bins, frames) STFT power in dB relative to the clip's loudest cell, floored at -floor_db."""
    import librosa

    power = np.abs(librosa.stft(unit_rms(audio), n_fft=ANALYSIS_N_FFT, hop_length=ANALYSIS_HOP)) ** 2
    peak = max(float(power.max()), 1e-30)
    return 10 * np.log10(np.maximum(power, peak * 10 ** (-floor_db / 10)) / peak)


def artefact_db(audio: np.ndarray) -> float:
    """The output's noise floor in dB below its frames' peaks (module docstring); higher is noisier."""
    db = _power_db(audio, ARTEFACT_FLOOR_DB)
    level = db.max(axis=0)
    active = level >= level.max() - ACTIVE_DB
    low = np.percentile(db[:, active], ARTEFACT_PERCENTILE, axis=0) - level[active]
    return float(np.median(low))


def lsd_db(audio: np.ndarray, target: np.ndarray) -> float:
    """Log-spectral distance (dB) of an output to the target over the frames both have (module docstring)."""
    a, b = _power_db(audio, LSD_FLOOR_DB), _power_db(target, LSD_FLOOR_DB)
    frames = min(a.shape[1], b.shape[1])
    diff = a[:, :frames] - b[:, :frames]
    return float(np.mean(np.sqrt(np.mean(diff * diff, axis=0))))
