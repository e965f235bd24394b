"""The fast paths give the numbers of the straightforward ones: convolution by products, fused losses,
the frames identity, bfloat16, the problem cache, the float64 fallback and Griffin-Lim. No timings."""

from __future__ import annotations

import platform
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import BINS, project_step, small_config, spectrograms
from musicstyle.engine import optimize
from musicstyle.engine import problem as problem_module
from musicstyle.engine.fast import fused
from musicstyle.engine.fast.anchors import STYLE_REFRESH_ITERATIONS, Anchor, anchored_style, style_anchor
from musicstyle.engine.losses import loss_terms, style_distance_sq, style_target, style_value_and_grad
from musicstyle.engine.metrics import spectral_convergence
from musicstyle.engine.network import (
    conv_matrices,
    convolve,
    convolve_from,
    fold_padded,
    product_columns,
    random_filters,
    unfold_frames,
)
from musicstyle.engine.optimize import Problem, build_problem, cached_problem, clear_problem_cache, optimize_spectrogram
from musicstyle.engine.reconstruct import griffin_lim, griffin_lim_librosa
from musicstyle.engine.reference import StraightStep
from musicstyle.engine.spectrogram import log_magnitude, magnitude_from_log


def straightforward_step(content, style, spec, config):
    """The reference (musicstyle.engine.reference): F.conv1d, activation, G = F F^T / n over the filters, autograd."""
    return StraightStep(content, style, config)(spec)


# --- convolution as two products ------------------------------------------------------------------

@pytest.mark.parametrize("width", [1, 5, 11])
def test_product_convolution_equals_conv1d_with_its_gradient(width):
    gen = torch.Generator().manual_seed(width)
    spec = torch.rand(17, 30, generator=gen, dtype=torch.float64, requires_grad=True)
    filters = torch.randn(9, 17, width, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(convolve(spec, filters), F.conv1d(spec.unsqueeze(0), filters)[0])
    assert torch.autograd.gradcheck(lambda x: convolve(x, filters), (spec,))


def test_fold_is_the_adjoint_of_unfold():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(7, 25, generator=gen, dtype=torch.float64)
    columns = torch.randn(7 * 4, 22, generator=gen, dtype=torch.float64)
    padded = torch.cat([columns, torch.zeros(7 * 4, 4, dtype=torch.float64)], dim=1)
    lhs = (unfold_frames(x, 4) * columns).sum()
    rhs = (x * fold_padded(padded, 4, 25)).sum()
    assert float(lhs) == pytest.approx(float(rhs), rel=1e-12)


# --- the project's step against the straightforward one ---------------------------------------

@pytest.mark.parametrize("gram_mode", ["frames", "filters"])
@pytest.mark.parametrize("activation, pooling", [("relu", 1), ("leaky_relu", 2), ("elu", 1)])
def test_step_gives_the_straightforward_loss_and_gradient(gram_mode, activation, pooling):
    config = small_config(gram_mode=gram_mode, activation=activation, pooling=pooling, alpha=0.3, beta=2.0)
    content, style, spec = spectrograms()
    problem = build_problem(content, style, config, dtype=torch.float64)
    assert problem.style.mode == gram_mode
    loss, grad = project_step(problem, spec)
    ref_loss, ref_grad = straightforward_step(content, style, spec, config)
    assert loss == pytest.approx(ref_loss, rel=1e-10)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-9, atol=1e-12)


def test_float32_step_is_close_to_float64():
    config = small_config()
    content, style, spec = spectrograms()
    ref_loss, ref_grad = straightforward_step(content, style, spec, config)
    problem = build_problem(content.float(), style.float(), config)
    loss, grad = project_step(problem, spec.float())
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    assert float((grad.double() - ref_grad).norm() / ref_grad.norm()) < 1e-4


def test_fused_losses_match_separate_terms_and_only_the_input_gets_a_gradient():
    gen = torch.Generator().manual_seed(3)
    features, content, style = (torch.rand(32, 20, generator=gen, dtype=torch.float64) for _ in range(3))
    target = style_target(style, 25, "frames")
    x = features.clone().requires_grad_(True)
    c, s = loss_terms(x, content, target)
    (0.5 * c + 3.0 * s).backward()
    y = features.clone().requires_grad_(True)
    (0.5 * (y - content).square().sum() + 3.0 * (y @ y.T / 25 - style @ style.T / 25).square().sum()).backward()
    torch.testing.assert_close(x.grad, y.grad, rtol=1e-10, atol=1e-12)
    with torch.no_grad():
        assert float(loss_terms(features, content, target)[1]) == pytest.approx(float(s), rel=1e-12)
    assert not content.requires_grad and not style.requires_grad


def test_frames_identity_keeps_its_precision_near_the_optimum_in_float32():
    """Near the style the three squared norms nearly cancel; float64 sums keep the value right."""
    gen = torch.Generator().manual_seed(5)
    style = torch.rand(1024, 200, generator=gen, dtype=torch.float64)
    features = style + 0.01 * torch.randn(1024, 200, generator=gen, dtype=torch.float64)
    exact = float(style_distance_sq(features, style_target(style, 210, "filters")))
    fast = float(style_distance_sq(features.float(), style_target(style.float(), 210, "frames")))
    assert fast == pytest.approx(exact, rel=2e-3)  # float32 sums: 1.3 % off here


# --- bfloat16 ----------------------------------------------------------------------------------------

@pytest.mark.usefixtures("bf16_forced")
def test_bf16_step_is_close_to_float32():
    config = small_config(filters=256, frames=120)
    content, style, spec = spectrograms(120, torch.float32)
    problem32 = build_problem(content, style, config)
    problem16 = build_problem(content, style, config.replace(precision="bf16"))
    assert problem16.matrices.weight.dtype == torch.bfloat16
    loss32, grad32 = project_step(problem32, spec)
    loss16, grad16 = project_step(problem16, spec)
    assert grad16.dtype == torch.float32
    assert loss16 == pytest.approx(loss32, rel=1e-2)
    assert float(torch.nn.functional.cosine_similarity(grad16.flatten(), grad32.flatten(), dim=0)) > 0.995


def test_product_columns_round_up_to_whole_kernel_blocks():
    assert product_columns(420, torch.bfloat16) == 448 and product_columns(431, torch.bfloat16) == 448
    assert product_columns(420, torch.float32) == 432 and product_columns(432, torch.float32) == 432


def test_anchored_convolution_equals_the_direct_one_with_its_gradient():
    gen = torch.Generator().manual_seed(4)
    matrices = conv_matrices(torch.randn(9, 17, 5, generator=gen, dtype=torch.float64), torch.float64)
    start = torch.rand(17, 30, generator=gen, dtype=torch.float64) * 3
    anchor = Anchor(start, convolve(start, matrices))
    spec = (start + 0.1 * torch.randn(17, 30, generator=gen, dtype=torch.float64)).requires_grad_(True)
    torch.testing.assert_close(convolve_from(spec, matrices, anchor), convolve(spec, matrices), rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda x: convolve_from(x, matrices, anchor), (spec,))


def test_anchored_style_term_follows_the_exact_one_through_a_step():
    """Through a StyleAnchor the style term's change over a step comes from bfloat16 products of the
    step only: its value and gradient stay close to float64, where plain bfloat16 products are not."""
    gen = torch.Generator().manual_seed(6)
    style = torch.rand(256, 60, generator=gen)
    start = style[:, torch.randperm(60, generator=gen)] + 0.05 * torch.rand(256, 60, generator=gen)
    step = 1e-3 * torch.randn(256, 60, generator=gen)
    target = style_target(style, 64, "frames")
    exact_target = style_target(style.double(), 64, "frames")
    anchor = style_anchor(start, target)

    value, grad, scale, point = anchored_style(start + step, target, anchor)
    value0, grad0, _, _ = anchored_style(start, target, anchor)
    exact_value, exact_grad = style_value_and_grad((start + step).double(), exact_target, True)
    exact_value0 = style_value_and_grad(start.double(), exact_target, False)[0]
    # the change over the step (the anchor's own value has float32 round-off; measured: 1e-6 off)
    assert float(value - value0) == pytest.approx(float(exact_value - exact_value0), rel=1e-4)
    grad_error = float((grad.double() * scale - exact_grad).norm() / exact_grad.norm())
    assert grad_error < 1e-4  # measured 8e-6 (float32 products: 2e-6)
    torch.testing.assert_close(point.ftf.double(), (start + step).double().T @ (start + step).double(), rtol=1e-3,
                               atol=1e-3)
    # the same gradient from plain bfloat16 products is far off: the terms nearly cancel
    f, s = (start + step).bfloat16(), style.bfloat16()
    plain = (f @ (f.T @ f) - s @ (s.T @ f)).double() * (4.0 / 64**2)
    assert float((plain - exact_grad).norm() / exact_grad.norm()) > 10 * grad_error

    # at the anchor itself, its own numbers come back
    assert float(value0) == float((anchor.value / 64**2 + target.self_term).clamp_min(0.0))
    torch.testing.assert_close(grad0, anchor.grad, rtol=0, atol=0)


@pytest.mark.usefixtures("bf16_forced")
def test_bf16_anchor_sees_steps_below_bfloat16_resolution():
    """Rounding the spectrogram to bfloat16 hides a step of 1e-4 (values about 3 are 2^-6 apart):
    the unanchored loss does not see it; convolved through the difference to an anchor it moves as
    in float32."""
    config = small_config(filters=256, frames=120)
    content, style, spec = spectrograms(120, torch.float32)
    problem32 = build_problem(content, style, config)
    problem16 = build_problem(content, style, config.replace(precision="bf16"))
    step = 1e-4 * torch.randn(spec.shape, generator=torch.Generator().manual_seed(9))

    def change(problem: Problem) -> float:
        with torch.no_grad():
            return float(problem.loss_parts(spec + step)[0]) - float(problem.loss_parts(spec)[0])

    expected = change(problem32)
    unanchored = change(problem16)
    problem16.features(spec)
    problem16.anchor = problem16.last_convolved
    anchored = change(problem16)
    assert anchored == pytest.approx(expected, rel=0.05)
    assert abs(unanchored - expected) > 0.5 * abs(expected)


@pytest.mark.usefixtures("bf16_forced")
@pytest.mark.parametrize("fused_passes", [True, False], ids=["fused", "autograd"])
def test_bf16_lbfgs_is_anchored_and_reports_the_loss_of_its_result(monkeypatch, fused_passes):
    """Every evaluation goes through an anchor, and the final loss is the loss of the returned
    spectrogram with float32 products and the run's bfloat16-rounded weights."""
    anchored = []
    real = Problem.loss_parts

    def spy(self, spec):
        anchored.append(self.anchor is not None)
        return real(self, spec)

    monkeypatch.setattr(Problem, "loss_parts", spy)
    monkeypatch.setattr(fused, "COMPILE", fused_passes)
    exact_style = []
    monkeypatch.setattr(problem_module, "style_anchor", lambda *args: exact_style.append(1) or style_anchor(*args))
    clear_problem_cache()
    content, style, _ = (s.numpy().astype(np.float32) for s in spectrograms(dtype=torch.float32))
    config = small_config(precision="bf16", iterations=40, gram_mode="frames")
    result = optimize_spectrogram(content, style, config)
    assert not result.float64_fallback and result.iterations > 10
    assert len(anchored) == result.evaluations + 1 and all(anchored)  # + 1: the final loss
    # exact style anchors: the start, every STYLE_REFRESH_ITERATIONS, the final loss
    assert len(exact_style) == 2 + result.iterations // STYLE_REFRESH_ITERATIONS
    bf16 = cached_problem(content, style, config)
    weights = random_filters(BINS, config.filters, config.kernel_width, config.init_gain, config.seed)
    weights = weights.bfloat16().float()
    exact = Problem(weights, bf16.content_features, bf16.style, config, conv_matrices(weights, torch.float32))
    with torch.no_grad():
        loss = float(exact.loss_parts(torch.from_numpy(result.spectrogram))[0])
    assert result.final_loss == pytest.approx(loss, rel=1e-6)
    clear_problem_cache()


@pytest.mark.usefixtures("bf16_forced")
@pytest.mark.parametrize("fused_passes", [True, False], ids=["fused", "autograd"])
@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_every_anchor_holds_the_convolution_of_its_own_spectrogram(monkeypatch, optimizer, fused_passes):
    """An anchor's result must be the convolution of its spectrogram (to bfloat16 round-off of the
    steps), also where the optimiser moves the spectrogram in place (Adam, large steps); its style
    term must be that of the activations of that convolution."""
    errors, style_errors = [], []
    real = Problem.loss_parts

    def spy(self, spec):
        anchor, matrices = self.anchor, self.matrices
        if anchor is not None:
            exact = convolve(anchor.spec, conv_matrices(matrices.weight.float().view(-1, BINS, config.kernel_width),
                                                        torch.float32))
            errors.append(float((anchor.pre - exact).norm() / exact.norm()))
            features = torch.relu(anchor.pre)
            torch.testing.assert_close(anchor.style.features, features, rtol=0, atol=0)
            style_errors.append(float((anchor.style.ftf - features.T @ features).norm() / anchor.style.ftf.norm()))
        return real(self, spec)

    config = small_config(precision="bf16", iterations=20, optimizer=optimizer, lr=0.5, gram_mode="frames")
    monkeypatch.setattr(Problem, "loss_parts", spy)
    monkeypatch.setattr(fused, "COMPILE", fused_passes)
    clear_problem_cache()
    content, style, _ = (s.numpy().astype(np.float32) for s in spectrograms(dtype=torch.float32))
    optimize_spectrogram(content, style, config)
    clear_problem_cache()
    assert len(errors) > 20 and max(errors) < 1e-2, max(errors)  # bfloat16 steps: about 2e-3
    assert max(style_errors) < 1e-2, max(style_errors)


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="keep_freed_memory sets glibc's malloc only")
def test_every_optimisation_keeps_freed_memory_for_reuse(monkeypatch):
    """glibc accepts the two malloc settings, and optimize_spectrogram asks for them. What they are
    worth depends on the machine (page faults per bf16 step 5100 -> 90 on an idle machine; no change
    where glibc's own thresholds had adapted already): benchmark/bench_step.py --system-malloc."""
    assert optimize.keep_freed_memory() is True
    calls = []
    monkeypatch.setattr(optimize, "keep_freed_memory", lambda: calls.append(1) or True)
    content, style, _ = (s.numpy().astype(np.float32) for s in spectrograms(dtype=torch.float32))
    optimize_spectrogram(content, style, small_config(iterations=2))
    assert calls == [1]


def test_bf16_falls_back_to_float32_where_it_is_not_fast(monkeypatch):
    monkeypatch.setattr(problem_module, "bf16_supported", lambda device: False)
    problem_module._warn_once.cache_clear()  # the warning is given once per process
    content, style, _ = spectrograms(dtype=torch.float32)
    with pytest.warns(UserWarning, match="bf16"):
        problem = build_problem(content, style, small_config(precision="bf16"))
    assert problem.matrices.weight.dtype == torch.float32


# --- problem cache -----------------------------------------------------------------------------------

def test_problem_cache_hit_gives_identical_results():
    clear_problem_cache()
    content, style, _ = (s.numpy().astype(np.float32) for s in spectrograms(dtype=torch.float32))
    config = small_config()
    first = optimize_spectrogram(content, style, config)
    hit = cached_problem(content, style, config)
    assert hit.filters is cached_problem(content, style, config.replace(alpha=5.0, iterations=3)).filters
    second = optimize_spectrogram(content, style, config)
    assert second.final_loss == first.final_loss
    np.testing.assert_array_equal(second.spectrogram, first.spectrogram)
    clear_problem_cache()
    cold = optimize_spectrogram(content, style, config)
    assert cold.final_loss == first.final_loss
    # a weight change reuses the network but not the loss; a network change or another pair misses
    assert cached_problem(content, style, config.replace(alpha=5.0)).config.alpha == 5.0
    assert cached_problem(content, style, config.replace(seed=1)).filters is not hit.filters
    assert cached_problem(content + 1, style, config).content_features is not hit.content_features
    clear_problem_cache()


# --- float64 fallback -------------------------------------------------------------------------------

def test_early_line_search_failure_reruns_in_float64(monkeypatch):
    calls = []
    real = optimize._run_lbfgs

    def run(problem, x0, progress):
        calls.append(problem.filters.dtype)
        outcome = real(problem, x0, progress)
        if len(calls) == 1:
            outcome = outcome | {"iterations": 1, "stop_reason": "ABNORMAL_TERMINATION_IN_LNSRCH"}
        return outcome

    monkeypatch.setattr(optimize, "_run_lbfgs", run)
    content, style, _ = (s.numpy().astype(np.float32) for s in spectrograms(dtype=torch.float32))
    result = optimize_spectrogram(content, style, small_config(precision="bf16"))
    assert calls == [torch.float32, torch.float64]
    assert result.float64_fallback and result.iterations > 1


# --- Griffin-Lim -------------------------------------------------------------------------------------

def test_torch_and_librosa_griffin_lim_reach_the_same_quality():
    t = np.arange(8000) / 8000
    audio = (np.sin(2 * np.pi * 440 * t) * np.sin(2 * np.pi * 2 * t) + 0.3 * np.sin(2 * np.pi * 1250 * t))
    magnitude = magnitude_from_log(log_magnitude(audio.astype(np.float32), 256, 64))
    start = spectral_convergence(griffin_lim(magnitude, 256, 64, iters=0, seed=0), magnitude, 256, 64)
    ours = spectral_convergence(griffin_lim(magnitude, 256, 64, iters=40, seed=0), magnitude, 256, 64)
    theirs = spectral_convergence(griffin_lim_librosa(magnitude, 256, 64, iters=40, seed=0), magnitude, 256, 64)
    assert ours < 0.5 * start
    assert ours == pytest.approx(theirs, rel=0.02)
