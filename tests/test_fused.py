"""The bf16 step written out with compiled passes (engine/fast/fused.py) gives the numbers of the autograd step,
and falls back to it where compiling fails. No timings (benchmark/bench_step.py has those)."""

from __future__ import annotations

import pytest
import torch

from helpers import project_step, small_config, spectrograms
from musicstyle.engine.fast import fused
from musicstyle.engine.optimize import build_problem, exact_anchor

pytestmark = pytest.mark.usefixtures("bf16_forced")  # the bf16 path's numerics, also where bf16 is slow


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def anchored_problem(activation: str = "relu", **changes):
    """A bf16 problem at small shapes, anchored near the spectrogram it is evaluated at."""
    config = small_config(precision="bf16", filters=256, frames=120, gram_mode="frames", activation=activation,
                          alpha=0.3, beta=2.0, **changes)
    content, style, spec = spectrograms(120, torch.float32)
    problem = build_problem(content, style, config)
    problem.anchor = exact_anchor(problem, spec * 0.98)
    return problem, spec


def autograd_step(problem, spec, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(fused, "COMPILE", False)
        assert not fused.applies(problem, spec.clone().requires_grad_(True))
        return project_step(problem, spec)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "elu", "selu"])
def test_fused_step_gives_the_autograd_steps_loss_gradient_and_next_anchor(monkeypatch, activation):
    problem, spec = anchored_problem(activation, leaky_slope=0.2)
    assert fused.applies(problem, spec.clone().requires_grad_(True))
    loss, grad = project_step(problem, spec)
    point = problem.last_convolved
    reference_loss, reference_grad = autograd_step(problem, spec, monkeypatch)
    reference = problem.last_convolved
    # measured: loss 3e-8 to 1.2e-7 apart, gradients 0 to 4e-5 (a few bfloat16 roundings flip)
    assert loss == pytest.approx(reference_loss, rel=1e-6)
    assert relative(grad, reference_grad) < 1e-3
    torch.testing.assert_close(point.spec, reference.spec, rtol=0, atol=0)
    assert relative(point.pre, reference.pre) < 1e-6
    assert relative(point.style.features, reference.style.features) < 1e-6
    assert relative(point.style.ftf, reference.style.ftf) < 1e-5
    assert relative(point.style.grad, reference.style.grad) < 1e-4
    assert float(point.style.value) == pytest.approx(float(reference.style.value), rel=1e-7)


def test_fused_step_scales_its_gradient_by_what_comes_back():
    problem, spec = anchored_problem()
    x = spec.clone().requires_grad_(True)
    total, content, style = problem.loss_parts(x)
    assert not content.requires_grad and not style.requires_grad
    (3.0 * total).backward()
    _, grad = project_step(problem, spec)
    torch.testing.assert_close(x.grad, 3.0 * grad)


def test_written_out_step_only_on_a_cpu():
    problem, spec = anchored_problem("relu")
    assert fused.applies(problem, spec.clone().requires_grad_(True))
    # on a GPU autograd's step measured faster (fused.applies); a device other than the CPU, without one here
    assert not fused.applies(problem, spec.to("meta").requires_grad_(True))


def test_a_runs_anchors_do_not_make_the_passes_compile_again():
    """An exact anchor's pre is contiguous, like the pre a step leaves: a strided view there made
    torch.compile compile the features pass again at a run's first new anchor (about 1 s on a GPU)."""
    from torch._dynamo.utils import counters

    problem, spec = anchored_problem("relu")
    assert problem.anchor.pre.is_contiguous() and problem.anchor.pre._base is None
    project_step(problem, spec)
    graphs = counters["stats"]["unique_graphs"]
    for scale in (1.01, 1.02):  # each evaluation from the anchor the one before left, as a run goes
        problem.anchor = problem.last_convolved
        project_step(problem, spec * scale)
    assert counters["stats"]["unique_graphs"] == graphs


def test_compiled_passes_equal_the_same_ops_one_by_one():
    gen = torch.Generator().manual_seed(3)
    filters, frames = 64, 37
    product = torch.randn(filters, frames + 11, generator=gen).bfloat16()[:, :frames]
    anchor_pre, anchor_features, content, anchor_grad = (torch.randn(filters, frames, generator=gen)
                                                        for _ in range(4))
    slots = torch.zeros(2, filters, frames + 5, dtype=torch.bfloat16)
    outputs = [fn(product, anchor_pre, anchor_features, content, anchor_grad, slot[:, :frames], "elu", 0.3)
               for fn, slot in ((fused.features_pass, slots[0]), (fused._features_pass, slots[1]))]
    for eager, compiled in zip(*outputs):
        torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(slots[1].float(), slots[0].float(), rtol=1e-2, atol=1e-2)  # a bfloat16 ulp
    assert not slots[:, :, frames:].any()  # only the slot is written

    pre, features = outputs[0][:2]
    weights = torch.tensor(0.6), torch.tensor(0.01)
    grads = torch.zeros(2, filters, frames + 5, dtype=torch.bfloat16)
    style_grads = [fn(product, anchor_grad, features, content, pre, *weights, slot[:, :frames], "leaky_relu", 0.2)
                   for fn, slot in ((fused.gradient_pass, grads[0]), (fused._gradient_pass, grads[1]))]
    torch.testing.assert_close(style_grads[1], style_grads[0])
    torch.testing.assert_close(grads[1].float(), grads[0].float(), rtol=1e-2, atol=1e-2)
    assert not grads[:, :, frames:].any()
    expected = torch.where(pre > 0, 1.0, 0.2) * ((features - content) * 0.6 + style_grads[0] * 0.01)
    torch.testing.assert_close(grads[0, :, :frames].float(), expected, rtol=1e-2, atol=1e-2)


def test_a_failed_compile_warns_once_and_leaves_the_step_to_autograd(monkeypatch):
    problem, spec = anchored_problem()
    reference_loss, reference_grad = autograd_step(problem, spec, monkeypatch)

    def no_compiler(*args):
        raise RuntimeError("InductorError: CppCompileError: C++ compile error\nmore lines")

    monkeypatch.setattr(fused, "_features_pass", no_compiler)
    monkeypatch.setattr(fused, "_compiles", [])
    with pytest.warns(UserWarning, match="torch.compile failed here .*C\\+\\+ compile error"):
        loss, grad = project_step(problem, spec)
    assert loss == reference_loss
    torch.testing.assert_close(grad, reference_grad, rtol=0, atol=0)
    assert not fused.applies(problem, spec.clone().requires_grad_(True))  # not tried again


def test_step_parts_benchmark_cuts_the_fused_step_without_changing_it():
    """benchmark/step_parts.py times fused.anchored_step part by part; before timing it checks (bit for bit)
    that its parts give that step's loss and gradient, and stops with an error where they do not."""
    import os
    import subprocess
    import sys

    from conftest import REPO
    from musicstyle.engine.network import bf16_supported

    # benchmarks import the installed package (pip install -e .); here, the checkout under test
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))}
    done = subprocess.run([sys.executable, "benchmark/step_parts.py", "--frames", "40", "--steps", "1"], cwd=REPO,
                          capture_output=True, text=True, timeout=600, env=env)
    if not bf16_supported("cpu"):  # the benchmark times the fast path only, and says so
        assert done.returncode != 0 and "no fast bfloat16" in done.stderr
        return
    assert done.returncode == 0, done.stderr
    assert "whole step" in done.stdout
