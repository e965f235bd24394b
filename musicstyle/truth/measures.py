"""Ground-truth measures: how far a transfer's audio is from its pair's right answer, on two axes that
pass their own sanity suite (musicstyle.sanity, results/truth/sanity.md), and a score no trivial output
can win.

A rendered pair (musicstyle.rendered) has a target: the content's piece played by the style's
instrument, and the score it was played from. Every audio is measured in one fixed analysis space
(musicstyle.timbre: 22050 Hz, STFT 2048 / 512), whatever the run's settings:

    truth_timbre   sigmoid(-log_odds): 0 the target's instrument, 1 the content's (musicstyle.timbre)
    truth_notes    (d_N(y) - d_N(oracle)) / (d_N(style copy) - d_N(oracle)): 0 the target's notes, 1 as far
                   from them as the style song (musicstyle.notes; d_N: 1 - F1 of the pitch classes a transcription hears
                   against the score's)
    truth_artefacts_db, truth_lsd_db   reported, never folded into the score (musicstyle.notes)

The oracle is the target through the run's own Griffin-Lim, so reconstruction damage alone scores 0.
The pair's trivial frontier is the set of (timbre, notes) points of the outputs that transfer nothing,
all through the same Griffin-Lim: the content and style copies, the waveform and magnitude mixes and
EQ matching (musicstyle.baselines). An output's margin over it is

    truth_margin = min over trivial b of max(timbre_b - timbre_y, notes_b - notes_y) - MARGIN_TOLERANCE

positive only when the output beats every trivial output by more than MARGIN_TOLERANCE on at least
one axis; every trivial output has margin <= -MARGIN_TOLERANCE (against itself the max is 0). The
tolerance is the measures' own noise seen by the sanity suite: a second Griffin-Lim of the same copy
moves a point by a few hundredths. The min also runs over two MIDPOINTS, (0.5 + tolerance, -inf) and
(-inf, 0.5 + tolerance), which an output beats only with timbre < 0.5 and notes < 0.5: one nearer the wrong
instrument than the right one, or nearer a wrong piece than the right notes, transfers nothing, however
the pair's own trivial outputs fall (a third piece in the target's key can sit at notes 0.7, nearer the
target than the style song is). 0.5 is the line the sanity suite's see / ignore checks draw. The number a
sweep minimises is truth_score = -truth_margin: below 0 the output beats every trivial output, else not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import TransferConfig
from ..data.baselines import trivial_audios
from ..engine.audio import load_clip
from ..engine.reconstruct import griffin_lim
from ..engine.spectrogram import crop_frames, log_magnitude
from ..errors import ConfigError
from ..measures import TRUTH_MEASURES
from .notes import artefact_db, heard_pitch_classes, lsd_db, notes_distance, score_pitch_classes
from .timbre import TimbreModel, load_timbre_model, resample, timbre_badness, timbre_features
from .transcribe import frame_count

TRUTH_COLUMNS = TRUTH_MEASURES
MARGIN_TOLERANCE = 0.1  # on the unit axes: the sanity suite's noise (module docstring)
MIDPOINTS = ((0.5 + MARGIN_TOLERANCE, -math.inf), (-math.inf, 0.5 + MARGIN_TOLERANCE))  # (module docstring)


def through_griffin_lim(audio: np.ndarray, frames: int, config: TransferConfig) -> np.ndarray:
    """An audio's STFT magnitude (first `frames` frames) back through the run's Griffin-Lim: (hop * (frames - 1),)."""
    magnitude = np.expm1(crop_frames(log_magnitude(audio, config.n_fft, config.hop), frames))
    return griffin_lim(magnitude, config.n_fft, config.hop, config.griffin_lim_iters, config.seed)


def frontier_margin(point: tuple[float, float], frontier: list[tuple[float, float]], midpoints: bool = True) -> float:
    """min over the frontier's points and the two MIDPOINTS b of max(b_timbre - timbre, b_notes - notes),
    less MARGIN_TOLERANCE; `midpoints=False`: over the trivial outputs alone (a sensitivity check)."""
    timbre, notes = point
    points = [*frontier, *MIDPOINTS] if midpoints else list(frontier)
    return float(min(max(bt - timbre, bn - notes) for bt, bn in points)) - MARGIN_TOLERANCE


@dataclass
class TruthReference:
    """One pair's right answer in the analysis space, and its trivial frontier.

    target_audio: (samples,) at the analysis rate; reference: (12, T) 0/1 pitch classes (the score's or the
    ones heard in the target); target_class / content_class: the timbre model's row for each instrument; frontier:
    trivial output name -> (timbre, notes)."""

    model: TimbreModel
    sample_rate_hz: int
    target_audio: np.ndarray
    reference: np.ndarray
    target_class: int
    content_class: int
    notes_floor: float  # d_N(oracle)
    notes_unit: float  # d_N(style copy) - d_N(oracle)
    frontier: dict[str, tuple[float, float]]
    trivial: dict[str, np.ndarray]  # name -> audio of each trivial output and the oracle, as scored

    def axes(self, audio: np.ndarray) -> dict[str, float]:
        """timbre, notes, log-odds, artefacts and LSD of an output (samples,) at the run's rate."""
        y = resample(audio, self.sample_rate_hz)
        logp = self.model.log_probabilities(timbre_features(y))
        log_odds = float(logp[self.target_class] - logp[self.content_class])
        notes = (notes_distance(heard_pitch_classes(y), self.reference) - self.notes_floor) / self.notes_unit
        return {"truth_timbre": timbre_badness(log_odds), "truth_notes": float(notes), "truth_log_odds": log_odds,
                "truth_artefacts_db": artefact_db(y), "truth_lsd_db": lsd_db(y, self.target_audio)}

    def measures(self, audio: np.ndarray) -> dict[str, float]:
        """Every TRUTH_COLUMNS measure of an output audio (samples,)."""
        out = self.axes(audio)
        margin = frontier_margin((out["truth_timbre"], out["truth_notes"]), list(self.frontier.values()))
        return out | {"truth_margin": margin, "truth_score": -margin}


def _distinct_classes(model: TimbreModel, target: np.ndarray, content: np.ndarray) -> tuple[int, int]:
    """The model's most likely instrument of the target clip and of the content clip, kept distinct (the
    content's second choice when both agree)."""
    t = model.log_probabilities(timbre_features(target))
    c = model.log_probabilities(timbre_features(content))
    target_class = int(np.argmax(t))
    ranked = [int(i) for i in np.argsort(-c)]
    return target_class, next(i for i in ranked if i != target_class)


def truth_reference(content_audio: np.ndarray, style_audio: np.ndarray, target_audio: np.ndarray, frames: int,
                    config: TransferConfig, score_notes: list[tuple[int, float, float]] | None = None,
                    offset_seconds: float = 0.0, model: TimbreModel | None = None) -> TruthReference:
    """A pair's reference from its three clips (samples,) at the run's rate, the transfer's frame count and,
    when known, the content piece's notes (MIDI pitch, start s, end s) from its start."""
    model = model or load_timbre_model()
    rate = config.sample_rate_hz
    target = resample(target_audio, rate)
    target_class, content_class = _distinct_classes(model, target, resample(content_audio, rate))
    if score_notes is not None:
        shifted = [(p, s - offset_seconds, e - offset_seconds) for p, s, e in score_notes]
        reference = score_pitch_classes(shifted, frame_count(len(target)))  # the grid the outputs are heard on
    else:
        reference = heard_pitch_classes(target)
    trivial = trivial_audios(content_audio, style_audio, frames, config, target_audio)
    oracle = notes_distance(heard_pitch_classes(resample(trivial["oracle"], rate)), reference)
    style = notes_distance(heard_pitch_classes(resample(trivial["style copy"], rate)), reference)
    if style - oracle <= 1e-6:
        raise ConfigError("the style song's notes are as close to the target's as the target's own: the notes "
                          "measure has no unit on this pair")
    partial = TruthReference(model, rate, target, reference, target_class, content_class, oracle, style - oracle,
                             {}, trivial)
    for name, audio in trivial.items():
        if name == "oracle":
            continue
        axes = partial.axes(audio)
        partial.frontier[name] = (axes["truth_timbre"], axes["truth_notes"])
    return partial


def _paths(pair: Any) -> tuple[Path, Path, Path, Path | None, float | None, float | None]:
    """(content, style, target, score, offset, clip) from a SongPair or a (content, style, target[, score]) tuple."""
    if isinstance(pair, (tuple, list)):
        content, style, target, *score = pair
        return Path(content), Path(style), Path(target), (Path(score[0]) if score else None), None, None
    if getattr(pair, "target", None) is None:
        raise ConfigError(f"pair '{getattr(pair, 'name', pair)}' has no target: the truth measures need a "
                          "rendered corpus (--corpus rendered)")
    score = getattr(pair, "score", None)
    return (Path(pair.content), Path(pair.style), Path(pair.target), Path(score) if score else None,
            pair.offset_seconds, pair.clip_seconds)


def reference_for(pair: Any, config: TransferConfig, cache: dict | None = None,
                  clips: tuple[np.ndarray, np.ndarray] | None = None) -> TruthReference:
    """The pair's TruthReference for `config`, built once per (pair, audio and Griffin-Lim settings) in `cache`.

    `clips`: the content and style clips (samples,) as the caller already loaded them with these settings
    (a sweep's PairSpectrograms), so that only the target is read from disk."""
    from ..data.rendered import read_score

    content, style, target, score, offset, clip = _paths(pair)
    offset = config.offset_seconds if offset is None else offset
    clip = config.clip_seconds if clip is None else clip
    key = (str(content), str(style), str(target), str(score), offset, clip, config.sample_rate_hz, config.frames,
           config.n_fft, config.hop, config.griffin_lim_iters, config.seed)
    if cache is not None and key in cache:
        return cache[key]
    loaded = list(clips) if clips is not None else [load_clip(p, config.sample_rate_hz, offset, clip)
                                                      for p in (content, style)]
    audio = [*loaded, load_clip(target, config.sample_rate_hz, offset, clip)]
    frames = min(1 + len(y) // config.hop for y in audio)
    if config.frames is not None:
        frames = min(frames, config.frames)
    notes = read_score(score) if score is not None else None
    reference = truth_reference(*audio, frames, config, notes, offset or 0.0)
    if cache is not None:
        cache[key] = reference
    return reference


def truth_measures(output_audio: np.ndarray, pair: Any, config: TransferConfig, cache: dict | None = None,
                   clips: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, float]:
    """Ground-truth measures of a transfer's audio (samples,) against its pair's target (TRUTH_COLUMNS).

    `pair` is a SongPair with a target or a (content, style, target[, score]) tuple of paths; `cache` (a dict
    the caller keeps) holds each pair's reference so a sweep pays for its frontier once; `clips` as in
    reference_for.
    """
    return reference_for(pair, config, cache, clips).measures(output_audio)
