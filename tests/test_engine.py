"""The engine, module by module, on generated audio and small networks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from musicstyle.config import TransferConfig, make_config
from musicstyle.engine.audio import load_clip
from musicstyle.engine.losses import content_distance_sq, style_distance_sq, style_target
from musicstyle.engine.metrics import spectral_convergence
from musicstyle.engine.network import feature_maps, glorot_std, output_frames, random_filters
from musicstyle.engine.optimize import build_problem, optimize_spectrogram
from musicstyle.engine.reconstruct import griffin_lim
from musicstyle.engine.spectrogram import log_magnitude, magnitude_from_log
from musicstyle.engine.transfer import load_pair
from musicstyle.errors import AudioError, ConfigError, DivergenceError

SMALL = dict(sample_rate_hz=8000, n_fft=256, hop=64, filters=64, kernel_width=5, frames=100,
             iterations=25, griffin_lim_iters=10, device="cpu")


def small_config(**changes) -> TransferConfig:
    return make_config(SMALL | changes)


# --- config -------------------------------------------------------------------------------------

def test_defaults_are_the_base_papers_settings():
    c = TransferConfig()
    assert (c.sample_rate_hz, c.n_fft, c.hop, c.n_bins, c.frames) == (22050, 2048, 512, 1025, 430)
    assert (c.filters, c.kernel_width, c.activation, c.pooling) == (4096, 11, "relu", 1)
    assert c.init_gain == pytest.approx(math.sqrt(2))
    assert glorot_std(1025, 4096, 11, c.init_gain) == pytest.approx(8.4267e-3, rel=1e-4)
    assert (c.alpha, c.beta, c.optimizer, c.iterations, c.init) == (1e-2, 1.0, "lbfgs", 300, "noise")
    assert c.griffin_lim_iters == 500


@pytest.mark.parametrize("values, message", [
    ({"alpha": -1}, "alpha"),
    ({"filters": 0}, "filters"),
    ({"activation": "swish2"}, "activation"),
    ({"kernel_width": "wide"}, "kernel_width"),
    ({"lr": 0}, "lr"),
    ({"colour": "red"}, "unknown setting"),
    ({"alpha": 0, "beta": 0}, "both be 0"),
])
def test_bad_settings_raise_one_line(values, message):
    with pytest.raises(ConfigError, match=message) as err:
        make_config(values)
    assert "\n" not in str(err.value)


def test_strings_are_coerced_like_the_cli_gives_them():
    c = make_config({"alpha": "1e-3", "filters": "1024", "frames": "none"})
    assert (c.alpha, c.filters, c.frames) == (1e-3, 1024, None)


# --- audio --------------------------------------------------------------------------------------

def test_load_clip_folds_to_mono_resamples_and_clips(song_pair):
    content, style = song_pair
    audio = load_clip(content, 8000)
    assert audio.ndim == 1 and audio.dtype == np.float32
    assert audio.size == pytest.approx(1.5 * 8000, abs=2)
    part = load_clip(content, 8000, offset_seconds=0.5, clip_seconds=0.5)
    assert part.size == pytest.approx(4000, abs=2)
    assert load_clip(style, 8000).size == 12000


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "no such file"),
    (lambda p: p.write_bytes(b""), "empty file"),
    (lambda p: p.write_bytes(np.random.default_rng(0).bytes(5000)), "not a readable audio file"),
    (lambda p: sf.write(p, np.zeros(8000, dtype=np.float32), 8000, format="WAV"), "silent"),
])
def test_bad_audio_files_name_the_problem_and_the_file(tmp_path, make, message):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioError, match=message) as err:
        load_clip(path, 8000)
    assert str(path) in str(err.value)


def test_offset_past_the_end_is_an_error(song_pair):
    with pytest.raises(AudioError, match="past the end"):
        load_clip(song_pair[0], 8000, offset_seconds=60)


def test_clip_shorter_than_the_kernel_is_an_error(song_pair):
    with pytest.raises(AudioError, match="fewer than the kernel"):
        load_pair(*song_pair, small_config(clip_seconds=0.02))


# --- spectrogram and network ----------------------------------------------------------------------

def test_log_magnitude_shape_and_inverse():
    audio = np.random.default_rng(0).standard_normal(4000).astype(np.float32)
    spec = log_magnitude(audio, 256, 64)
    assert spec.shape == (129, 1 + 4000 // 64)
    assert spec.min() >= 0
    np.testing.assert_allclose(np.log1p(magnitude_from_log(spec)), spec, rtol=1e-5, atol=1e-6)


def test_pair_is_cropped_to_common_frames(song_pair):
    pair = load_pair(*song_pair, small_config(frames=150))
    assert pair.content.shape == pair.style.shape == (129, 150)
    pair = load_pair(*song_pair, small_config(frames=None))
    assert pair.content.shape == (129, 1 + 12000 // 64)


def test_filters_are_seeded_glorot_normal_without_gradient():
    a = random_filters(129, 256, 5, math.sqrt(2), seed=3)
    b = random_filters(129, 256, 5, math.sqrt(2), seed=3)
    c = random_filters(129, 256, 5, math.sqrt(2), seed=4)
    assert a.shape == (256, 129, 5) and not a.requires_grad
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.std()) == pytest.approx(glorot_std(129, 256, 5, math.sqrt(2)), rel=0.02)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "elu", "selu", "gelu", "tanh", "softplus", "linear"])
@pytest.mark.parametrize("pooling", [1, 2])
def test_feature_maps_shape(activation, pooling):
    spec = torch.rand(129, 60)
    filters = random_filters(129, 32, 5, 1.0, seed=0)
    features = feature_maps(spec, filters, activation, 0.3, pooling)
    assert features.shape == (32, output_frames(60, 5, pooling)) == (32, 56 // pooling)
    if activation == "relu":
        assert features.min() >= 0


# --- losses -------------------------------------------------------------------------------------

@pytest.mark.parametrize("filters, frames", [(64, 20), (16, 40)])
def test_gram_identity_gives_the_same_loss_and_gradient(filters, frames):
    torch.manual_seed(0)
    style = torch.rand(filters, frames, dtype=torch.float64)
    results = {}
    for mode in ("filters", "frames"):
        features = torch.rand(filters, frames, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        features.requires_grad_(True)
        loss = style_distance_sq(features, style_target(style, norm_frames=frames + 10, mode=mode))
        (grad,) = torch.autograd.grad(loss, features)
        results[mode] = (float(loss.detach()), grad)
    assert results["frames"][0] == pytest.approx(results["filters"][0], rel=1e-10)
    torch.testing.assert_close(results["frames"][1], results["filters"][1], rtol=1e-9, atol=1e-12)


def test_losses_vanish_at_their_targets():
    features = torch.rand(32, 50)
    assert float(content_distance_sq(features, features)) == 0
    for mode in ("filters", "frames"):
        assert float(style_distance_sq(features, style_target(features, 50, mode))) == pytest.approx(0, abs=1e-6)


# --- optimisation ----------------------------------------------------------------------------------

@pytest.fixture
def small_pair(song_pair):
    return load_pair(*song_pair, small_config())


@pytest.mark.parametrize("optimizer, lr", [("lbfgs", 1e-3), ("adam", 0.05)])
def test_loss_falls(small_pair, optimizer, lr):
    config = small_config(optimizer=optimizer, lr=lr, iterations=30)
    result = optimize_spectrogram(small_pair.content, small_pair.style, config)
    assert result.final_loss < 0.5 * result.initial_loss
    assert result.final_loss == pytest.approx(result.content_loss + result.style_loss, rel=1e-5)
    assert result.content_loss == pytest.approx(config.alpha * result.content_loss_unweighted)
    assert result.spectrogram.shape == small_pair.content.shape
    assert len(result.loss_history) >= 1


def test_fp64_runs_in_float64_and_agrees_with_fp32(small_pair):
    """precision fp64 builds the whole problem in float64 (no fallback needed) and lands near fp32."""
    from musicstyle.engine.limit.kernels import summary_notes

    runs = {p: optimize_spectrogram(small_pair.content, small_pair.style, small_config(precision=p, iterations=20))
            for p in ("fp32", "fp64")}
    assert not runs["fp64"].float64_fallback
    assert runs["fp64"].final_loss == pytest.approx(runs["fp32"].final_loss, rel=0.02)
    assert runs["fp64"].final_loss != runs["fp32"].final_loss  # other arithmetic, not fp32 relabelled
    assert summary_notes(small_config(precision="fp64"))["precision_used"] == "fp64"
    assert summary_notes(small_config(precision="fp32"), float64_fallback=True)["precision_used"] == "fp64"
    assert summary_notes(small_config(precision="fp32"))["precision_used"] == "fp32"


def test_same_seed_same_numbers_other_seed_other_numbers(small_pair):
    runs = [optimize_spectrogram(small_pair.content, small_pair.style, small_config(seed=s)) for s in (5, 5, 6)]
    assert runs[0].final_loss == runs[1].final_loss
    np.testing.assert_array_equal(runs[0].spectrogram, runs[1].spectrogram)
    assert runs[0].final_loss != runs[2].final_loss


def test_only_the_spectrogram_gets_gradients(small_pair):
    config = small_config()
    problem = build_problem(torch.as_tensor(small_pair.content), torch.as_tensor(small_pair.style), config)
    spec = torch.rand(small_pair.content.shape, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    problem.loss_parts(spec)[0].backward()
    assert spec.grad is not None and float(spec.grad.abs().sum()) > 0
    assert problem.filters.grad is None and not problem.filters.requires_grad


def test_diverging_loss_stops_with_a_clear_error(small_pair):
    config = small_config(optimizer="adam", lr=1e30, iterations=20, activation="elu")
    with pytest.raises(DivergenceError, match="loss became"):
        optimize_spectrogram(small_pair.content, small_pair.style, config)


# --- reconstruction ------------------------------------------------------------------------------

def test_griffin_lim_recovers_a_real_spectrogram_and_is_seeded():
    audio = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    magnitude = magnitude_from_log(log_magnitude(audio, 256, 64))
    rough = spectral_convergence(griffin_lim(magnitude, 256, 64, iters=0, seed=0), magnitude, 256, 64)
    rebuilt = griffin_lim(magnitude, 256, 64, iters=60, seed=0)
    assert rebuilt.shape == (64 * (magnitude.shape[1] - 1),)
    assert spectral_convergence(rebuilt, magnitude, 256, 64) < 0.6 * rough
    np.testing.assert_array_equal(rebuilt, griffin_lim(magnitude, 256, 64, iters=60, seed=0))
