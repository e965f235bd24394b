"""`python -m musicstyle truth train-timbre`: train the timbre model (musicstyle.timbre) and report its accuracy.

Training audio: TRAIN_PIECES (Bach chorales from music21 that appear in no pair), each on every corpus
program, on pretty_midi's SoundFont and, where Debian's fluid-soundfont-gm is installed, FluidR3_GM too;
each piece transposed by a seeded -2..+2 semitones. Every rendering gives AUGMENTATIONS examples through
Griffin-Lim (30, 100 or 500 iterations), with white or pink noise (15-45 dB SNR) and/or an EQ tilt
(-4..+4 dB per octave), so that what the model learns is the instrument, not the reconstruction; and one
more example filtered to another program's long-term spectrum (the EQ-matching baseline's trick, labelled
with the instrument that actually plays), so that the model does not take an EQ for an instrument; and one
mixture with another program (the second rendering shifted in time, weight w in MIX_WEIGHTS), through
Griffin-Lim, labelled softly (program A with weight 1 - w, program B with weight w): a mix of two
instruments is neither, and the model learns to say so rather than name the louder one.

Accuracy is measured on pieces held out of training (every HOLDOUT_EVERY-th piece), then the model is
refitted on every piece and saved (numbers only, no pickle).
"""

from __future__ import annotations

import time
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from ..data.rendered import INSTRUMENTS, PIECES, TEMPO_BPM, piece_notes, render_notes
from ..engine.spectrogram import log_magnitude
from .timbre import MODEL_PATH, TimbreModel, timbre_features

SECONDS = 12.0
FRAMES = 430
TRAIN_PIECE_COUNT = 16
HOLDOUT_EVERY = 4
AUGMENTATIONS = 3
DEBIAN_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
MIX_WEIGHTS = (0.25, 0.75)  # the second instrument's share of a mixture example, uniform in this range
REGULARISATION = (0.01, 0.1, 1.0)  # logistic regression's C, chosen on the held-out pieces


def train_pieces(count: int = TRAIN_PIECE_COUNT) -> list[str]:
    """Chorales of music21's corpus that no pair uses: every 20th of the sorted list, `count` of them."""
    from music21 import corpus

    names = sorted(f"bach/{p.name.rsplit('.', 1)[0]}" for p in corpus.getComposer("bach") if p.suffix == ".mxl")
    return [n for n in names if n not in PIECES][::20][:count]


def soundfonts() -> dict[str, Path | None]:
    from ..data.rendered import soundfont_path

    fonts: dict[str, Path | None] = {"TimGM6mb": soundfont_path()}
    if DEBIAN_SOUNDFONT.is_file():
        fonts["FluidR3_GM"] = DEBIAN_SOUNDFONT
    return fonts


def _pink(n: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    k = np.arange(len(spectrum), dtype=np.float64)
    k[0] = 1.0
    return np.fft.irfft(spectrum / np.sqrt(k), n)


def _magnitude(audio: np.ndarray) -> np.ndarray:
    """(1025, FRAMES) STFT magnitude at 2048 / 512."""
    return np.expm1(log_magnitude(audio.astype(np.float32), 2048, 512)[:, :FRAMES].astype(np.float64))


def _griffin_lim(magnitude: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Back to audio through Griffin-Lim at 30, 100 or 500 iterations (drawn), float64."""
    from ..engine.reconstruct import griffin_lim

    return griffin_lim(magnitude, 2048, 512, int(rng.choice([30, 100, 500])), int(rng.integers(1000))).astype(
        np.float64)


def degrade(audio: np.ndarray, rng: np.random.Generator, sample_rate_hz: int = 22050) -> np.ndarray:
    """One augmented example (module docstring): EQ and/or noise around a Griffin-Lim reconstruction."""

    kind = int(rng.integers(3))  # 0: noise, 1: EQ, 2: both
    y = np.asarray(audio, dtype=np.float64)
    if kind >= 1:
        freqs = np.fft.rfftfreq(len(y), 1 / sample_rate_hz)
        gain = 10 ** (rng.uniform(-4, 4) * np.log2(np.maximum(freqs, 50.0) / 1000.0) / 20)
        y = np.fft.irfft(np.fft.rfft(y) * gain, len(y))
    magnitude = _magnitude(y)
    y = _griffin_lim(magnitude, rng)
    if kind != 1:
        noise = rng.standard_normal(len(y)) if rng.random() < 0.5 else _pink(len(y), rng)
        y = y + noise * np.sqrt(np.mean(y ** 2) / np.mean(noise ** 2)) * 10 ** (-rng.uniform(15, 45) / 20)
    return y


def eq_matched(audio: np.ndarray, other: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`audio` filtered to `other`'s long-term average spectrum (data.baselines.eq_gain), through Griffin-Lim."""
    from ..data.baselines import eq_gain

    magnitude, reference = _magnitude(audio), _magnitude(other)
    matched = magnitude * eq_gain(magnitude, reference)[:, None]
    return _griffin_lim(matched, rng)


def mixture(audio: np.ndarray, other: np.ndarray, weight: float, rng: np.random.Generator) -> np.ndarray:
    """(1 - weight) * audio + weight * other (both at unit RMS, `other` rolled by 2..8 s), through Griffin-Lim."""
    from .timbre import unit_rms

    shifted = np.roll(unit_rms(other), int(rng.uniform(2, 8) * 22050))
    mixed = ((1 - weight) * unit_rms(audio) + weight * shifted).astype(np.float32)
    magnitude = _magnitude(mixed)
    return _griffin_lim(magnitude, rng)


Example = tuple[str, str, int, str, np.ndarray, float]


def _examples(job: tuple[int, str, dict[str, Any], int]) -> list[Example]:
    """(piece, soundfont, program, kind, features, weight) for every program, soundfont and augmentation of one
    piece; a mixture gives two rows with the same features, one per instrument, weighted by its share."""
    import torch

    torch.set_num_threads(1)
    index, piece, fonts, augmentations = job
    rng = np.random.default_rng(index)
    notes = piece_notes(piece, SECONDS)
    out = []
    for font, path in fonts.items():
        shift = int(rng.integers(-2, 3))
        audios = {program: render_notes([(p + shift, s, e) for p, s, e in notes], program, SECONDS, soundfont=path)
                  for program in INSTRUMENTS}
        for program, audio in audios.items():
            for _ in range(augmentations):
                out.append((piece, font, program, "augmented", timbre_features(degrade(audio, rng)), 1.0))
            other = int(rng.choice([p for p in audios if p != program]))
            out.append((piece, font, program, "EQ-matched", timbre_features(eq_matched(audio, audios[other], rng)),
                        1.0))
            other = int(rng.choice([p for p in audios if p != program]))
            weight = float(rng.uniform(*MIX_WEIGHTS))
            features = timbre_features(mixture(audio, audios[other], weight, rng))
            out += [(piece, font, program, "mixture", features, 1 - weight),
                    (piece, font, other, "mixture", features, weight)]
    return out


def training_set(pieces: list[str], augmentations: int = AUGMENTATIONS, workers: int = 2) -> dict[str, np.ndarray]:
    fonts = soundfonts()
    jobs = [(i, piece, fonts, augmentations) for i, piece in enumerate(pieces)]
    with get_context("spawn").Pool(workers) as pool:
        rows = [row for rows in pool.map(_examples, jobs) for row in rows]
    return {"piece": np.array([r[0] for r in rows]), "font": np.array([r[1] for r in rows]),
            "program": np.array([r[2] for r in rows]), "kind": np.array([r[3] for r in rows]),
            "features": np.array([r[4] for r in rows]), "weight": np.array([r[5] for r in rows])}


def fit(features: np.ndarray, programs: np.ndarray, regularisation: float, weights: np.ndarray | None = None
        ) -> TimbreModel:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(features)
    model = LogisticRegression(C=regularisation, max_iter=5000).fit(scaler.transform(features), programs,
                                                                     sample_weight=weights)
    return TimbreModel(scaler.mean_, scaler.scale_, model.coef_, model.intercept_, model.classes_.astype(int))


def accuracy(model: TimbreModel, features: np.ndarray, programs: np.ndarray) -> float:
    predicted = model.programs[np.argmax(model.log_probabilities(features), axis=1)]
    return float(np.mean(predicted == programs))


def mixture_share_error(model: TimbreModel, data: dict[str, np.ndarray], rows: np.ndarray) -> float:
    """Mean |predicted share - true share| of the second instrument over the mixture examples among `rows`
    (a mixture is two consecutive rows with the same features; share = p(B) / (p(A) + p(B)))."""
    index = np.flatnonzero(rows & (data["kind"] == "mixture"))
    firsts = index[::2]
    errors = []
    for i in firsts:
        p = np.exp(model.log_probabilities(data["features"][i]))
        a, b = p[model.index(int(data["program"][i]))], p[model.index(int(data["program"][i + 1]))]
        errors.append(abs(b / (a + b) - data["weight"][i + 1]))
    return float(np.mean(errors)) if errors else float("nan")


def train_and_report(model_path: str | Path | None, report_path: str | Path, quick: bool = False,
                     command: str = "python -m musicstyle truth train-timbre") -> Path:
    """Build the training set, choose C on held-out pieces, refit on all, save the model and its report."""
    from ..util.io import write_text
    from ..util.machine import code_version, describe

    start = time.perf_counter()
    pieces = train_pieces(4 if quick else TRAIN_PIECE_COUNT)
    data = training_set(pieces, 1 if quick else AUGMENTATIONS)
    held = np.isin(data["piece"], pieces[::HOLDOUT_EVERY])
    x, y, w = data["features"], data["program"], data["weight"]
    single = data["kind"] != "mixture"  # accuracy is over one-instrument examples; mixtures by their share error
    scores = {c: accuracy(fit(x[~held], y[~held], c, w[~held]), x[held & single], y[held & single])
              for c in REGULARISATION}
    best = max(scores, key=lambda c: scores[c])
    model = fit(x, y, best, w)
    model.save(Path(model_path) if model_path else MODEL_PATH)
    chosen = fit(x[~held], y[~held], best, w[~held])
    per_font = {f: accuracy(chosen, x[held & single & (data["font"] == f)], y[held & single & (data["font"] == f)])
                for f in sorted(set(data["font"]))}
    per_kind = {k: accuracy(chosen, x[held & (data["kind"] == k)], y[held & (data["kind"] == k)])
                for k in sorted(set(data["kind"])) if k != "mixture"}
    share_error = mixture_share_error(chosen, data, held)
    lines = [
        "# The timbre model: accuracy on chorales held out of its training", "",
        f"Written by `{command}` at code version {code_version()}, {time.strftime('%Y-%m-%d')}. Machine: "
        f"{describe()}. Precision: float64 features (numpy / librosa), Griffin-Lim in float32. "
        f"Wall time {(time.perf_counter() - start) / 60:.1f} min.", "",
        f"Training audio: {len(pieces)} chorales in no pair ({', '.join(pieces)}), {len(INSTRUMENTS)} programs, "
        f"SoundFonts {', '.join(sorted(set(data['font'])))}, {1 if quick else AUGMENTATIONS} augmented examples per "
        f"rendering, one EQ-matched to another program and one mixture with another program ({len(y)} rows in all, a "
        f"mixture being two), at {TEMPO_BPM:g} BPM.", "",
        f"Held-out pieces (every {HOLDOUT_EVERY}th: {', '.join(pieces[::HOLDOUT_EVERY])}), "
        f"{int((held & single).sum())} one-instrument examples: accuracy over {len(INSTRUMENTS)} programs (chance "
        f"{1 / len(INSTRUMENTS):.2f}) by regularisation C:", "",
        "| C | held-out accuracy |", "|---|---|", *[f"| {c:g} | {a:.3f} |" for c, a in scores.items()], "",
        f"Chosen C = {best:g}; its held-out accuracy per SoundFont: "
        + ", ".join(f"{f} {a:.3f}" for f, a in per_font.items())
        + "; per kind of example: " + ", ".join(f"{k} {a:.3f}" for k, a in per_kind.items())
        + f". On the held-out mixtures the predicted share of the second instrument (p(B) / (p(A) + p(B))) is "
        f"off its true share ({MIX_WEIGHTS[0]:g}-{MIX_WEIGHTS[1]:g}) by {share_error:.3f} on average. "
        "The saved model is refitted on every piece with that C.", ""]
    write_text(Path(report_path), "\n".join(lines))
    return Path(report_path)
