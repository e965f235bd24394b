"""The truth measures' sanity suite: controlled outputs with known answers, on every rendered pair.

For each pair (content P on A, style Q on B, target P on B) the suite builds, through the evaluation's
Griffin-Lim (seed + 1, so no case is the reference itself):

    target GL30 / GL100 / GL500        the target reconstructed at three Griffin-Lim budgets
    target + white / pink NN dB        the GL500 target plus noise at 40, 30 and 20 dB SNR
    target tilt +-3 dB/oct             the target through an EQ tilting its spectrum about 1 kHz
    target +-1 semitone                P rendered on B one semitone up / down (right instrument, wrong notes)
    content copy                       P on A: right notes, wrong instrument
    EQ-matched content                 P on A filtered to B's long-term spectrum: still the wrong instrument
    other piece, style instrument      a third piece R on B: right instrument, wrong notes

and states, per measure, what it must see and what it must ignore (EXPECT). A measure on [0, 1] 'sees'
a case when it puts it nearer its wrong answer (> 0.5) and 'ignores' it when nearer the right one
(< 0.5); the score must put the good cases below 0 (beating every trivial output) and the bad ones at
or above it; artefacts must rise with the noise. A measure passes a pair when every required check
holds; cases marked 'report' are shown but not required.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..config import TransferConfig
from ..data.baselines import eq_gain
from ..engine.audio import load_clip
from ..engine.reconstruct import griffin_lim
from ..engine.spectrogram import crop_frames, log_magnitude

GL_BUDGETS = (30, 100, 500)
SNRS_DB = (40, 30, 20)
NOISES = ("white", "pink")
TILTS_DB_PER_OCTAVE = (3, -3)
SHIFTS = (1, -1)
BAD = ("content copy", "EQ-matched content", "other piece, style instrument", "target +1 semitone",
       "target -1 semitone")


def case_names() -> list[str]:
    names = [f"target GL{g}" for g in GL_BUDGETS]
    names += [f"target + {kind} {snr} dB" for kind in NOISES for snr in SNRS_DB]
    names += [f"target tilt {d:+d} dB/oct" for d in TILTS_DB_PER_OCTAVE]
    names += [f"target {s:+d} semitone" for s in SHIFTS]
    return [*names, "content copy", "EQ-matched content", "other piece, style instrument"]


def _expect() -> dict[str, dict[str, str]]:
    """measure -> case -> 'see' | 'ignore' | 'good' | 'bad' | 'report' (module docstring)."""
    cases = case_names()
    noisy20 = {f"target + {k} 20 dB" for k in NOISES}
    wrong_instrument = ("content copy", "EQ-matched content")
    timbre = {c: "ignore" for c in cases} | dict.fromkeys(wrong_instrument, "see") | dict.fromkeys(noisy20, "report")
    notes = {c: "ignore" for c in cases} | {c: "see" for c in BAD if c not in wrong_instrument} | dict.fromkeys(
        noisy20, "report")
    score = {c: "good" for c in cases} | {c: "bad" for c in BAD} | dict.fromkeys(noisy20, "report") | {
        "target GL30": "report"}
    return {"truth_timbre": timbre, "truth_notes": notes, "truth_score": score}


EXPECT = _expect()


def check(measure: str, expectation: str, value: float, clean_artefacts: float | None = None) -> bool | None:
    """Whether one case's value meets its expectation (None: reported only)."""
    if expectation == "see":
        return value > 0.5
    if expectation == "ignore":
        return value < 0.5
    if expectation == "good":
        return value < 0.0
    if expectation == "bad":
        return value >= 0.0
    return None


def _noise(audio: np.ndarray, snr_db: float, kind: str, rng: np.random.Generator) -> np.ndarray:
    noise = rng.standard_normal(len(audio))
    if kind == "pink":  # 1/f power: amplitude falls as 1/sqrt(f)
        spectrum = np.fft.rfft(noise)
        k = np.arange(len(spectrum), dtype=np.float64)
        k[0] = 1.0
        noise = np.fft.irfft(spectrum / np.sqrt(k), len(audio))
    scale = np.sqrt(np.mean(audio ** 2) / max(float(np.mean(noise ** 2)), 1e-30)) * 10 ** (-snr_db / 20)
    return audio + noise * scale


def _tilt(audio: np.ndarray, db_per_octave: float, sample_rate_hz: int) -> np.ndarray:
    freqs = np.fft.rfftfreq(len(audio), 1 / sample_rate_hz)
    gain = 10 ** (db_per_octave * np.log2(np.maximum(freqs, 50.0) / 1000.0) / 20)
    return np.fft.irfft(np.fft.rfft(audio) * gain, len(audio))


def shifted_render(corpus_dir: Path, piece: str, program: int, semitones: int) -> Path:
    """The piece on `program` transposed by `semitones`, rendered once into the corpus folder."""
    import soundfile as sf

    from ..data.rendered import SAMPLE_RATE_HZ, piece_notes, render_name, render_notes
    from ..util.io import atomic_path

    path = corpus_dir / render_name(piece, program).replace(".wav", f"__shift{semitones:+d}.wav")
    if not path.is_file():
        audio = render_notes([(p + semitones, s, e) for p, s, e in piece_notes(piece)], program)
        with atomic_path(path) as tmp:
            sf.write(str(tmp), audio, SAMPLE_RATE_HZ, format="WAV", subtype="PCM_16")
    return path


def sanity_cases(pair: dict[str, Any], corpus_dir: Path, frames: int, config: TransferConfig
                 ) -> dict[str, np.ndarray]:
    """Case name -> audio (hop * (frames - 1),) for one manifest pair (module docstring)."""
    def clip(path: Path) -> np.ndarray:
        return load_clip(path, config.sample_rate_hz, config.offset_seconds, config.clip_seconds).astype(np.float64)

    def magnitude(audio: np.ndarray) -> np.ndarray:
        return np.expm1(crop_frames(log_magnitude(audio, config.n_fft, config.hop), frames).astype(np.float64))

    def gl(audio: np.ndarray, iters: int = 500) -> np.ndarray:
        return griffin_lim(magnitude(audio), config.n_fft, config.hop, iters, config.seed + 1).astype(np.float64)

    rng = np.random.default_rng(config.seed)
    target = clip(corpus_dir / pair["target"])
    cases: dict[str, np.ndarray] = {f"target GL{g}": gl(target, g) for g in GL_BUDGETS}
    clean = cases[f"target GL{GL_BUDGETS[-1]}"]
    for kind in NOISES:
        for snr in SNRS_DB:
            cases[f"target + {kind} {snr} dB"] = _noise(clean, snr, kind, rng)
    for d in TILTS_DB_PER_OCTAVE:
        cases[f"target tilt {d:+d} dB/oct"] = gl(_tilt(target, d, config.sample_rate_hz))
    for s in SHIFTS:
        path = shifted_render(corpus_dir, pair["content_piece"], pair["style_program"], s)
        cases[f"target {s:+d} semitone"] = gl(clip(path))
    content = clip(corpus_dir / pair["content"])
    cases["content copy"] = gl(content)
    content_mag, style_mag = magnitude(content), magnitude(clip(corpus_dir / pair["style"]))
    cases["EQ-matched content"] = griffin_lim(content_mag * eq_gain(content_mag, style_mag)[:, None], config.n_fft,
                                              config.hop, 500, config.seed + 1).astype(np.float64)
    cases["other piece, style instrument"] = gl(clip(corpus_dir / pair["other"]))
    return cases


def score_cases(cases: dict[str, np.ndarray], measure: Callable[[np.ndarray], dict[str, float]]
                ) -> list[dict[str, Any]]:
    """One row per case with every measure and, per EXPECT measure, its check (True / False / None)."""
    rows = []
    for name, audio in cases.items():
        values = measure(audio)
        row: dict[str, Any] = {"case": name, **values}
        for m, expected in EXPECT.items():
            row[f"{m}_expect"] = expected[name]
            row[f"{m}_pass"] = check(m, expected[name], values[m])
        rows.append(row)
    return rows
