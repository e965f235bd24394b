"""The fair measures' corner cases: the content scores (style 1, content 0), the style (0, 1)."""

from __future__ import annotations

import numpy as np
import pytest

from musicstyle.engine.metrics import evaluation_space, fair_measures, spectral_convergence
from musicstyle.engine.spectrogram import log_magnitude

RATE, N_FFT, HOP = 8000, 256, 128


def clip(freqs: tuple[float, ...], seed: int, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    rng = np.random.default_rng(seed)
    tones = sum(np.sin(2 * np.pi * f * t) for f in freqs)
    return (0.3 * tones + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def space_and_clips():
    content = clip((220.0, 440.0), seed=1)
    style = clip((150.0, 1200.0, 2500.0), seed=2)
    content_log, style_log = log_magnitude(content, N_FFT, HOP), log_magnitude(style, N_FFT, HOP)
    frames = min(content_log.shape[1], style_log.shape[1])
    space = evaluation_space(content_log[:, :frames], style_log[:, :frames], N_FFT, HOP)
    return space, content, style


def test_content_itself_scores_style_one_content_zero(space_and_clips):
    space, content, _ = space_and_clips
    m = fair_measures(content, space)
    assert m.style_distance == pytest.approx(1.0, abs=0.02)
    assert m.content_distance == pytest.approx(0.0, abs=0.02)
    assert m.quality_score == pytest.approx(0.5, abs=0.02)
    assert m.spectral_convergence is None


def test_style_clip_scores_style_zero_content_one(space_and_clips):
    space, _, style = space_and_clips
    m = fair_measures(style, space)
    assert m.style_distance == pytest.approx(0.0, abs=0.02)
    assert m.content_distance == pytest.approx(1.0, abs=0.02)


def test_a_mixture_lies_between_and_noise_is_far(space_and_clips):
    space, content, style = space_and_clips
    mix = fair_measures(0.5 * content + 0.5 * style, space)
    assert 0.05 < mix.style_distance < 1.0 and 0.05 < mix.content_distance < 1.0
    noise = np.random.default_rng(3).standard_normal(content.size).astype(np.float32)
    far = fair_measures(noise, space)
    assert far.quality_score > mix.quality_score


def test_the_evaluation_space_is_fixed_and_deterministic(space_and_clips):
    """The evaluation network has its own fixed seed: built again, the same audio scores the same."""
    space, content, style = space_and_clips
    again = evaluation_space(log_magnitude(content, N_FFT, HOP)[:, : space.frames],
                             log_magnitude(style, N_FFT, HOP)[:, : space.frames], N_FFT, HOP)
    audio = 0.7 * content + 0.3 * style
    assert fair_measures(audio, again).to_dict() == pytest.approx(fair_measures(audio, space).to_dict())


def test_spectral_convergence_is_zero_for_the_true_magnitude_and_grows_with_error():
    audio = clip((300.0, 900.0), seed=4)
    magnitude = np.expm1(log_magnitude(audio, N_FFT, HOP))
    assert spectral_convergence(audio, magnitude, N_FFT, HOP) == pytest.approx(0.0, abs=1e-4)
    assert spectral_convergence(audio, 2 * magnitude, N_FFT, HOP) == pytest.approx(0.5, abs=0.01)
