"""Ground-truth measures: how far a transfer's audio is from its pair's target, without the random network.

A rendered pair (musicstyle.data.rendered) has a target: the content's piece played by the style's
instrument. Every audio is first scaled to unit RMS (loudness is not what a transfer is judged on), then
analysed at the run's STFT size and hop (Hann, centred), cropped to the frames both sides have (T):

    L(y) = log10(mel(y) + 1e-6)                  (64 mel bands, T)  log-mel power
    C(y) = MFCC 1..19 of L, pooled over time     (38,)  mean and std of each coefficient over frames
    K(y) = chroma(|STFT y|)                      (12, T)  pitch-class energy, each frame unit-normalised

    whole   d_W(y) = mean_{b,t} |L(y) - L(target)|                   frame by frame, all at once
    timbre  d_T(y) = || C(y) - C(target) ||_2                        time-pooled: timing does not matter
    content d_K(y) = 1 - mean_t <K(y)[:, t], K(target)[:, t]>        the notes, frame-aligned (the target
                                                                     plays the content's piece, same timing)

Each is normalised against references put through the *same* Griffin-Lim as the transfer (the run's
n_fft, hop, iterations and seed), so Griffin-Lim's own damage scores 0:

    oracle = GL(|STFT target|), content copy = GL(|STFT content|), style copy = GL(|STFT style|)
    whole, timbre:  m = (d(y) - d(oracle)) / (d(content copy) - d(oracle))   0 = oracle, 1 = content copy
    content:        m = (d(y) - d(oracle)) / (d(style copy) - d(oracle))     0 = oracle, 1 = style copy

The content measure's 1 is the style copy (the wrong notes): the content copy has the right notes, so
it scores well below 1 there (above 0 only through its instrument's harmonics) and would make a useless
unit. One number to minimise:

    truth_score = (timbre + content) / 2          0 = the target; copying either song scores about 0.5
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import TransferConfig
from ..engine.audio import load_clip
from ..engine.reconstruct import griffin_lim
from ..engine.spectrogram import crop_frames, log_magnitude
from ..errors import ConfigError
from ..measures import TRUTH_MEASURES

MEL_BANDS = 64
MFCC_COEFFICIENTS = 20  # c0 (overall level) is dropped: 19 are kept
MEASURES = ("whole", "timbre", "content")
TRUTH_COLUMNS = TRUTH_MEASURES  # truth_<measure> for each of MEASURES, then truth_score


@dataclass(frozen=True)
class TruthFeatures:
    """logmel: (MEL_BANDS, T) float64; timbre: (2 * (MFCC_COEFFICIENTS - 1),); chroma: (12, T), unit columns."""

    logmel: np.ndarray
    timbre: np.ndarray
    chroma: np.ndarray


def truth_features(audio: np.ndarray, sample_rate_hz: int, n_fft: int, hop: int) -> TruthFeatures:
    """Features of one audio (samples,) after scaling it to unit RMS."""
    import librosa

    y = np.asarray(audio, dtype=np.float64)
    y = y / max(float(np.sqrt(np.mean(y * y))), 1e-12)
    power = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop, window="hann", center=True)) ** 2
    mel = librosa.feature.melspectrogram(S=power, sr=sample_rate_hz, n_mels=MEL_BANDS)
    logmel = np.log10(mel + 1e-6)
    mfcc = librosa.feature.mfcc(S=10 * logmel, n_mfcc=MFCC_COEFFICIENTS)[1:]
    timbre = np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1)])
    chroma = librosa.feature.chroma_stft(S=power, sr=sample_rate_hz, n_fft=n_fft, norm=None)
    chroma = chroma / np.maximum(np.linalg.norm(chroma, axis=0, keepdims=True), 1e-12)
    return TruthFeatures(logmel, timbre, chroma)


def raw_distances(out: TruthFeatures, target: TruthFeatures) -> dict[str, float]:
    """Unnormalised d_W, d_T, d_K (module docstring) over the frames both have."""
    frames = min(out.logmel.shape[1], target.logmel.shape[1])
    whole = float(np.mean(np.abs(out.logmel[:, :frames] - target.logmel[:, :frames])))
    timbre = float(np.linalg.norm(out.timbre - target.timbre))
    content = float(1.0 - np.mean(np.sum(out.chroma[:, :frames] * target.chroma[:, :frames], axis=0)))
    return {"whole": whole, "timbre": timbre, "content": content}


def through_griffin_lim(audio: np.ndarray, frames: int, config: TransferConfig) -> np.ndarray:
    """An audio's STFT magnitude (first `frames` frames) back through the run's Griffin-Lim: (hop * (frames - 1),)."""
    magnitude = np.expm1(crop_frames(log_magnitude(audio, config.n_fft, config.hop), frames))
    return griffin_lim(magnitude, config.n_fft, config.hop, config.griffin_lim_iters, config.seed)


@dataclass
class TruthReference:
    """A pair's target features and the raw distances of its references (floor and units)."""

    target: TruthFeatures
    oracle: dict[str, float]
    content_copy: dict[str, float]
    style_copy: dict[str, float]
    sample_rate_hz: int
    n_fft: int
    hop: int

    def normalise(self, raw: dict[str, float]) -> dict[str, float]:
        units = {"whole": self.content_copy, "timbre": self.content_copy, "content": self.style_copy}
        out = {f"truth_{m}": (raw[m] - self.oracle[m]) / max(units[m][m] - self.oracle[m], 1e-12) for m in MEASURES}
        out["truth_score"] = (out["truth_timbre"] + out["truth_content"]) / 2
        return out

    def measures(self, audio: np.ndarray) -> dict[str, float]:
        """Normalised measures of an output audio (samples,): keys TRUTH_COLUMNS."""
        return self.normalise(raw_distances(truth_features(audio, self.sample_rate_hz, self.n_fft, self.hop),
                                            self.target))


def truth_reference(content_audio: np.ndarray, style_audio: np.ndarray, target_audio: np.ndarray, frames: int,
                    config: TransferConfig) -> TruthReference:
    """Build a pair's reference from its three clips (samples,) and the transfer's frame count."""
    def feats(y: np.ndarray) -> TruthFeatures:
        return truth_features(y, config.sample_rate_hz, config.n_fft, config.hop)

    target = feats(target_audio)
    raw = {name: raw_distances(feats(through_griffin_lim(y, frames, config)), target)
           for name, y in (("oracle", target_audio), ("content", content_audio), ("style", style_audio))}
    return TruthReference(target, raw["oracle"], raw["content"], raw["style"], config.sample_rate_hz,
                          config.n_fft, config.hop)


def _paths(pair: Any) -> tuple[Path, Path, Path, float | None, float | None]:
    """(content, style, target, offset, clip) from a SongPair or a (content, style, target) tuple."""
    if isinstance(pair, (tuple, list)):
        content, style, target = pair
        return Path(content), Path(style), Path(target), None, None
    if getattr(pair, "target", None) is None:
        raise ConfigError(f"pair '{getattr(pair, 'name', pair)}' has no target: the truth measures need a "
                          "rendered corpus (--corpus rendered)")
    return Path(pair.content), Path(pair.style), Path(pair.target), pair.offset_seconds, pair.clip_seconds


def reference_for(pair: Any, config: TransferConfig, cache: dict | None = None) -> TruthReference:
    """The pair's TruthReference for `config`, built once per (pair, audio and Griffin-Lim settings) in `cache`."""
    content, style, target, offset, clip = _paths(pair)
    offset = config.offset_seconds if offset is None else offset
    clip = config.clip_seconds if clip is None else clip
    key = (str(content), str(style), str(target), offset, clip, config.sample_rate_hz, config.frames,
           config.n_fft, config.hop, config.griffin_lim_iters, config.seed)
    if cache is not None and key in cache:
        return cache[key]
    clips = [load_clip(p, config.sample_rate_hz, offset, clip) for p in (content, style, target)]
    frames = min(1 + len(y) // config.hop for y in clips)
    if config.frames is not None:
        frames = min(frames, config.frames)
    reference = truth_reference(*clips, frames, config)
    if cache is not None:
        cache[key] = reference
    return reference


def truth_measures(output_audio: np.ndarray, pair: Any, config: TransferConfig,
                   cache: dict | None = None) -> dict[str, float]:
    """Normalised ground-truth measures of a transfer's audio (samples,) against its pair's target.

    `pair` is a SongPair with a target or a (content, style, target) tuple of paths; `cache` (a dict the
    caller keeps) holds each pair's reference so a sweep pays for its Griffin-Lim floors once.
    Returns truth_whole, truth_timbre, truth_content and truth_score (the one to minimise).
    """
    return reference_for(pair, config, cache).measures(output_audio)
