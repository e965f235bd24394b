"""Timbre as the instrument's identity: a small classifier over time-pooled spectral shape.

Every audio is measured in one fixed analysis space, whatever the run's settings: 22050 Hz, a 2048-point
Hann STFT with hop 512, 64 mel bands in dB with a floor FLOOR_DB below the clip's loudest cell (so a
quiet noise floor costs nothing), frames within 40 dB of the loudest kept. The features (FEATURES,)
are each band's mean and standard deviation relative to its frame's mean level (the spectral shape,
not the loudness) and MFCC 1..13's mean and standard deviation, which an EQ can fake; and two kinds that a
fixed filter leaves alone: the envelope's motion in BAND_GROUPS groups of mel bands (mean rise, mean fall
and spread of the level change from frame to frame, in dB per hop: a piano's attack and decay against an
organ's sustain) and the spectral contrast's mean and spread in CONTRAST_BANDS octave bands (peaks against
valleys: harmonic against noisy partials).

A multinomial logistic regression over those features (TimbreModel, trained by truth/timbre_train.py
on chorales that appear in no pair, two SoundFonts, through Griffin-Lim with noise and EQ, EQ-matched to
other instruments, and mixed with them under soft labels) gives each instrument's log-probability. The
timbre measure of an output is

    log_odds = log p(target's instrument) - log p(content's instrument)
    truth_timbre = sigmoid(-log_odds)        0: surely the target's instrument, 1: surely the content's

so the content copy scores about 1, the target (or any piece on the target's instrument) about 0, and an
even mix of the two instruments about 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError

ANALYSIS_RATE_HZ = 22050
ANALYSIS_N_FFT = 2048
ANALYSIS_HOP = 512
MEL_BANDS = 64
FLOOR_DB = 60.0  # below the clip's loudest mel cell
ACTIVE_DB = 40.0  # frames this far below the loudest frame are left out (silence, release tails)
MFCCS = 13
BAND_GROUPS = 8  # groups of MEL_BANDS / BAND_GROUPS adjacent mel bands for the envelope's motion
CONTRAST_BANDS = 6
FEATURES = 2 * MEL_BANDS + 2 * MFCCS + 3 * BAND_GROUPS + 2 * (CONTRAST_BANDS + 1)
MODEL_PATH = Path(__file__).with_name("timbre-model.npz")


def unit_rms(audio: np.ndarray) -> np.ndarray:
    y = np.asarray(audio, dtype=np.float64)
    return y / max(float(np.sqrt(np.mean(y * y))), 1e-12)


def resample(audio: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    """(samples,) at `sample_rate_hz` -> (samples',) at ANALYSIS_RATE_HZ."""
    if sample_rate_hz == ANALYSIS_RATE_HZ:
        return np.asarray(audio, dtype=np.float64)
    import librosa

    return librosa.resample(np.asarray(audio, dtype=np.float64), orig_sr=sample_rate_hz, target_sr=ANALYSIS_RATE_HZ)


def _db(power: np.ndarray) -> np.ndarray:
    """Power (bands, frames) in dB relative to its loudest cell, floored at -FLOOR_DB."""
    peak = max(float(power.max()), 1e-30)
    return 10 * np.log10(np.maximum(power, peak * 10 ** (-FLOOR_DB / 10)) / peak)


def mel_db(audio: np.ndarray) -> np.ndarray:
    """(MEL_BANDS, frames) mel power in dB relative to the loudest cell, floored at -FLOOR_DB."""
    import librosa

    power = np.abs(librosa.stft(unit_rms(audio), n_fft=ANALYSIS_N_FFT, hop_length=ANALYSIS_HOP)) ** 2
    return _db(librosa.feature.melspectrogram(S=power, sr=ANALYSIS_RATE_HZ, n_mels=MEL_BANDS))


def timbre_features(audio: np.ndarray) -> np.ndarray:
    """(samples,) at ANALYSIS_RATE_HZ -> (FEATURES,) float64 (module docstring)."""
    import librosa

    magnitude = np.abs(librosa.stft(unit_rms(audio), n_fft=ANALYSIS_N_FFT, hop_length=ANALYSIS_HOP))
    db = _db(librosa.feature.melspectrogram(S=magnitude ** 2, sr=ANALYSIS_RATE_HZ, n_mels=MEL_BANDS))
    level = db.max(axis=0)
    active = level >= level.max() - ACTIVE_DB
    kept = db[:, active]
    shape = kept - kept.mean(axis=0, keepdims=True)
    mfcc = librosa.feature.mfcc(S=kept, n_mfcc=MFCCS + 1)[1:]
    grouped = _db((10 ** (db / 10)).reshape(BAND_GROUPS, -1, db.shape[1]).mean(axis=1))  # (BAND_GROUPS, frames)
    change = np.diff(grouped, axis=1)[:, active[1:]]  # dB per hop
    motion = np.concatenate([np.maximum(change, 0).mean(1), np.minimum(change, 0).mean(1), change.std(1)])
    contrast = librosa.feature.spectral_contrast(S=magnitude, sr=ANALYSIS_RATE_HZ, n_bands=CONTRAST_BANDS)[:, active]
    return np.concatenate([shape.mean(1), shape.std(1), mfcc.mean(1), mfcc.std(1), motion, contrast.mean(1),
                           contrast.std(1)])


@dataclass(frozen=True)
class TimbreModel:
    """Standardise, then a linear map to one logit per program: mean, scale (FEATURES,), weights
    (programs, FEATURES), bias (programs,), programs (programs,) General MIDI numbers."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: np.ndarray
    programs: np.ndarray

    def log_probabilities(self, features: np.ndarray) -> np.ndarray:
        """(FEATURES,) or (n, FEATURES) -> (programs,) or (n, programs) natural-log probabilities."""
        logits = ((np.asarray(features) - self.mean) / self.scale) @ self.weights.T + self.bias
        return logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)

    def index(self, program: int) -> int:
        hits = np.flatnonzero(self.programs == program)
        if not len(hits):
            raise ConfigError(f"the timbre model knows programs {sorted(self.programs.tolist())}, not {program}")
        return int(hits[0])

    def log_odds(self, features: np.ndarray, target_program: int, content_program: int) -> float:
        """log p(target's program) - log p(content's program) for one audio's features."""
        logp = self.log_probabilities(features)
        return float(logp[self.index(target_program)] - logp[self.index(content_program)])

    def save(self, path: str | Path) -> None:
        from ..util.io import atomic_path

        with atomic_path(Path(path)) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, mean=self.mean, scale=self.scale, weights=self.weights, bias=self.bias,
                     programs=self.programs)


def load_timbre_model(path: str | Path = MODEL_PATH) -> TimbreModel:
    """The shipped model (or one written by `python -m musicstyle truth train-timbre`)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"timbre model not found: {path} (train it: python -m musicstyle truth train-timbre)")
    with np.load(path) as data:
        return TimbreModel(*(np.asarray(data[k]) for k in ("mean", "scale", "weights", "bias", "programs")))


def timbre_badness(log_odds: float) -> float:
    """sigmoid(-log_odds): 0 the target's instrument, 1 the content's."""
    return float(1.0 / (1.0 + np.exp(np.clip(log_odds, -50, 50))))
