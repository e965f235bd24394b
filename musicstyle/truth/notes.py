"""The notes, artefacts and log-spectral distance of an output, in the timbre measure's analysis space.

notes      d_N(y) = 1 - F1 of the pitch classes heard in y against the reference's, over all frames
           heard: Basic Pitch's note probabilities (musicstyle.truth.transcribe) at or above
           ACTIVE_PROBABILITY, folded to the 12 pitch classes, (12, T) 0/1 at 86 frames per second;
           reference: the score's notes folded the same way (a MIDI file: the notes that were played) or,
           without a score, the target's own heard pitch classes. A transcription reads one note alike on
           any instrument, so the axis does not carry timbre; folding octaves keeps an instrument's octave
           errors out of it. Frame-wise F1 is the multi-pitch measure of mir_eval and of Cifka et al.
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
from .transcribe import LOWEST_MIDI, RATE_HZ, note_activations, piano_roll

LSD_FLOOR_DB = 80.0
ARTEFACT_FLOOR_DB = 100.0
ARTEFACT_PERCENTILE = 10
ACTIVE_DB = 40.0
ACTIVE_PROBABILITY = 0.3  # Basic Pitch's own default frame threshold
assert RATE_HZ == ANALYSIS_RATE_HZ  # the transcription reads the analysis space's audio as it is


def fold_octaves(keys: np.ndarray) -> np.ndarray:
    """(88, T) per-key values -> (12, T) the largest per pitch class (0 = C)."""
    classes = (np.arange(keys.shape[0]) + LOWEST_MIDI) % 12
    return np.stack([keys[classes == k].max(axis=0) for k in range(12)])


def heard_pitch_classes(audio: np.ndarray) -> np.ndarray:
    """(samples,) at ANALYSIS_RATE_HZ -> (12, frames) 0/1: the pitch classes Basic Pitch hears in each frame."""
    return (fold_octaves(note_activations(unit_rms(audio))) >= ACTIVE_PROBABILITY).astype(np.float64)


def score_pitch_classes(notes: list[tuple[int, float, float]], frames: int) -> np.ndarray:
    """Notes (MIDI pitch, start s, end s) -> (12, frames) 0/1 on heard_pitch_classes' grid."""
    return fold_octaves(piano_roll(notes, frames))


def notes_distance(heard: np.ndarray, reference: np.ndarray) -> float:
    """1 - F1 of heard pitch classes (12, T) against a reference (12, T') over the frames both have:
    0 every pitch class right, 1 none (or nothing heard and nothing expected)."""
    frames = min(heard.shape[1], reference.shape[1])
    h, r = heard[:, :frames] > 0, reference[:, :frames] > 0
    hits = float((h & r).sum())
    total = float(h.sum() + r.sum())
    return 1.0 - 2.0 * hits / total if total > 0 else 1.0


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
