"""The notes axis on generated tones: Basic Pitch hears a pitch class whatever the waveform, a semitone
moves it, and the F1 distance runs from 0 (every pitch class right) to 1 (none)."""

from __future__ import annotations

import numpy as np

from musicstyle.truth.notes import heard_pitch_classes, notes_distance, score_pitch_classes
from musicstyle.truth.transcribe import FRAMES_PER_SECOND, KEYS, RATE_HZ, note_activations

SECONDS = 3.0


def tone(midi: float, harmonics: int, decay: float = 0.0) -> np.ndarray:
    """A harmonic tone at a MIDI pitch: `harmonics` partials falling as 1/k, optional exponential decay."""
    t = np.arange(int(SECONDS * RATE_HZ)) / RATE_HZ
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    wave = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, harmonics + 1) if k * f0 < RATE_HZ / 2)
    return (wave * np.exp(-decay * t) * np.minimum(1, t / 0.02)).astype(np.float64)


def test_activations_have_the_documented_shape() -> None:
    audio = tone(60, 4)
    activations = note_activations(audio)
    assert activations.shape == (KEYS, len(audio) * FRAMES_PER_SECOND // RATE_HZ)
    assert 0.0 <= activations.min() and activations.max() <= 1.0


def test_one_pitch_class_on_two_instruments_reads_alike_and_a_semitone_does_not() -> None:
    frames = int(SECONDS * FRAMES_PER_SECOND)
    score = score_pitch_classes([(57, 0.0, SECONDS)], frames)  # A3
    flute_like = heard_pitch_classes(tone(57, 2))
    buzzy = heard_pitch_classes(tone(57, 12, decay=0.5))
    assert notes_distance(flute_like, score) < 0.3 and notes_distance(buzzy, score) < 0.3
    assert notes_distance(heard_pitch_classes(tone(58, 2)), score) > 0.7


def test_distance_runs_from_zero_to_one() -> None:
    rng = np.random.default_rng(0)
    reference = (rng.random((12, 50)) < 0.3).astype(float)
    assert notes_distance(reference, reference) == 0.0
    assert notes_distance(1 - reference, reference) == 1.0
    assert notes_distance(np.zeros((12, 50)), np.zeros((12, 50))) == 1.0
