"""The infinite-filter limit (`--filters inf`): kernels, convergence of finite N to it, config and CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import musicstyle.engine.limit.kernels as limit
from conftest import tone_mix
from musicstyle.cli import main
from musicstyle.config import ACTIVATIONS, make_config
from musicstyle.engine.limit.check import cosine, finite_point, limit_point
from musicstyle.engine.network import activate
from musicstyle.engine.spectrogram import log_magnitude
from musicstyle.errors import ConfigError
from musicstyle.sweep.config import parse_settings


def covariances(n: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Variances a, b, correlations rho (two at +-1) and covariances c, float64."""
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, dtype=torch.float64, generator=g) * 2 + 0.05
    b = torch.rand(n, dtype=torch.float64, generator=g) * 2 + 0.05
    rho = torch.rand(n, dtype=torch.float64, generator=g) * 1.8 - 0.9
    rho[0], rho[1], b[0], b[1] = 1.0, -1.0, a[0], a[1]
    return a, b, rho, rho * torch.sqrt(a * b)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_kernel_matches_monte_carlo(activation):
    a, b, rho, c = covariances()
    z = torch.randn(2, 1_000_000, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    u = a.sqrt()[:, None] * z[0]
    v = b.sqrt()[:, None] * (rho[:, None] * z[0] + (1 - rho**2).clamp_min(0).sqrt()[:, None] * z[1])
    products = activate(u, activation, 0.3) * activate(v, activation, 0.3)
    mc, se = products.mean(1), products.std(1) / 1000
    k = limit.kernel(a, b, c, activation, 0.3)
    assert torch.all((k - mc).abs() <= 5 * se + 1e-6), (k, mc, se)


def test_quadrature_matches_the_closed_forms():
    a, b, _, c = covariances(40, seed=2)
    assert torch.allclose(limit.quadrature_kernel(a, b, c, "relu"), limit.arccos_kernel(a, b, c), atol=1e-5, rtol=1e-5)
    assert torch.allclose(limit.quadrature_kernel(a, b, c, "linear"), c, atol=1e-10)


@pytest.mark.parametrize("activation", ["elu", "selu", "gelu", "tanh", "softplus"])
def test_quadrature_is_converged(activation, monkeypatch):
    """The default nodes against many more: within 1e-3 of the kernel's largest value."""
    a, b, _, c = covariances(200, seed=3)
    default = limit.quadrature_kernel(a, b, c, activation)
    if activation in limit.INNER_NODES:
        monkeypatch.setitem(limit.INNER_NODES, activation, 48)
    fine = limit.quadrature_kernel(a, b, c, activation, nodes=24)
    assert (default - fine).abs().max() <= 1e-3 * fine.abs().max()


@pytest.mark.parametrize("activation", ["elu", "selu", "gelu", "tanh", "softplus"])
def test_series_kernel_matches_the_quadrature(activation):
    """Mehler's series (what runs) against the 2-D quadrature with many nodes, rho = +-1 included."""
    a, b, _, c = covariances(300, seed=3)
    reference = limit.quadrature_kernel(a, b, c, activation, nodes=24)
    assert (limit.series_kernel(a, b, c, activation) - reference).abs().max() <= 1e-3 * reference.abs().max()
    rows, cols = a[:7, None], b[None, :9]  # broadcast as the losses use it: coefficients per frame
    cross = torch.rand(7, 9, dtype=torch.float64) * torch.sqrt(rows * cols)
    assert torch.allclose(limit.series_kernel(rows, cols, cross, activation),
                          limit.quadrature_kernel(rows, cols, cross, activation, nodes=24), atol=1e-3, rtol=1e-3)


def test_series_kernel_matches_monte_carlo_at_large_variance():
    """tanh at variances 7 and 9.6, where the quadrature's inner rule is 8 % off: the series is not."""
    a, b, rho = (torch.tensor([v], dtype=torch.float64) for v in (7.1026, 9.6225, 0.1380))
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(2, 2_000_000, dtype=torch.float64, generator=g)
    u, v = a.sqrt() * z1, b.sqrt() * (rho * z1 + torch.sqrt(1 - rho * rho) * z2)
    products = torch.tanh(u) * torch.tanh(v)
    mc, se = products.mean(), products.std() / math.sqrt(products.numel())
    assert abs(float(limit.series_kernel(a, b, rho * torch.sqrt(a * b), "tanh")) - float(mc)) <= 5 * float(se)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "elu", "gelu", "tanh"])
def test_kernel_gradients(activation):
    a, b, _, c = covariances(5, seed=4)
    inputs = tuple(t[2:].clone().requires_grad_(True) for t in (a, b, c))
    assert torch.autograd.gradcheck(lambda x, y, z: limit.kernel(x, y, z, activation), inputs)


def test_relu_kernel_gradient_is_finite_on_the_diagonal():
    a = torch.tensor([1.3], dtype=torch.float64, requires_grad=True)
    limit.arccos_kernel(a, a, a).sum().backward()
    assert torch.isfinite(a.grad).all() and torch.allclose(a.grad, torch.tensor([0.5], dtype=torch.float64))


def test_patch_products_are_the_patches_inner_products():
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(7, 20, generator=g), torch.randn(7, 16, generator=g)
    px, py = x.unfold(1, 4, 1).permute(1, 0, 2).reshape(17, -1), y.unfold(1, 4, 1).permute(1, 0, 2).reshape(13, -1)
    assert torch.allclose(limit.patch_products(x, y, 4), px @ py.T, atol=1e-4)
    assert torch.allclose(limit.patch_dots(x, x, 4), (px * px).sum(1), atol=1e-4)


def small_pair(frames: int = 60) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(content, style, a point between them), (129 bins, frames) log-magnitudes of generated audio."""
    content, style = (torch.tensor(log_magnitude(tone_mix(1.2, 8000, freqs, seed), 256, 64))[:, :frames]
                      for freqs, seed in (((220.0, 330.0, 440.0), 1), ((150.0, 600.0, 1200.0), 2)))
    noise = torch.randn(content.shape, generator=torch.Generator().manual_seed(5))
    return content, style, 0.6 * content + 0.4 * style + 0.05 * noise


@pytest.mark.parametrize("activation", ["relu", "elu"])
def test_finite_networks_converge_to_the_limit(activation):
    """Ratios finite / limit tend to 1, spread falling ~1/sqrt(N); gradients line up."""
    content, style, spec = small_pair()
    config = make_config({"n_fft": 256, "hop": 64, "activation": activation})
    exact = limit_point(content, style, spec, config)
    spread, error, cosines = {}, {}, {}
    for filters in (64, 4096):
        points = [finite_point(content, style, spec, config, filters, seed) for seed in range(3)]
        ratios = np.array([[p.content / exact.content, p.style / exact.style] for p in points])
        spread[filters] = ratios.std(0).mean()
        error[filters] = np.abs(ratios - 1).mean()
        cosines[filters] = np.mean([cosine(p.style_grad, exact.style_grad) + cosine(p.content_grad, exact.content_grad)
                                    for p in points]) / 2
    assert error[4096] < 0.06 and error[4096] < error[64] / 2, error
    assert spread[4096] < spread[64] / 3, spread  # 1/sqrt(N) predicts 8x
    assert cosines[4096] > 0.95 and cosines[4096] > cosines[64] + 0.2, cosines


def test_blocked_style_sums_match_the_whole(monkeypatch):
    content, style, spec = small_pair(80)
    config = make_config({"n_fft": 256, "hop": 64, "filters": "inf", "activation": "leaky_relu"})
    whole = limit_point(content, style, spec, config)
    monkeypatch.setattr(limit, "BLOCK_FRAMES", 16)
    blocked = limit_point(content, style, spec, config)
    assert blocked.style == pytest.approx(whole.style, rel=1e-5)
    assert cosine(blocked.style_grad, whole.style_grad) > 1 - 1e-6


def test_the_limit_at_the_content_has_no_content_loss():
    content, style, _ = small_pair()
    config = make_config({"n_fft": 256, "hop": 64, "filters": "inf"})
    point = limit_point(content, style, content, config)
    assert abs(point.content) < 1e-3 * limit_point(content, style, style, config).content


@pytest.mark.parametrize("value", ["inf", "Inf", ".inf", math.inf])
def test_filters_accepts_inf(value):
    assert make_config({"filters": value}).filters == math.inf


@pytest.mark.parametrize("values, words", [({"filters": "inf", "pooling": 2}, "pooling"),
                                           ({"filters": "-inf"}, "filters"), ({"filters": "many"}, "filters")])
def test_bad_filters_are_one_clear_error(values, words):
    with pytest.raises(ConfigError, match=words):
        make_config(values)


def test_sweep_can_search_inf_filters():
    settings = parse_settings({"search": {"filters": {"choices": [1024, 4096, "inf"]}}, "fixed": {"iterations": 5}},
                              "sweep.yaml")
    assert settings.search["filters"].choices == (1024, 4096, math.inf)
    assert settings.config_for({"filters": math.inf}).filters == math.inf
    fixed = parse_settings({"fixed": {"filters": "inf"}}, "sweep.yaml")
    assert fixed.base_config().filters == math.inf


def test_transfer_cli_runs_the_limit(song_pair, tmp_path):
    content, style = song_pair
    out, summary = tmp_path / "out.wav", tmp_path / "summary.json"
    flags = ["--sample-rate", "8000", "--n-fft", "256", "--hop", "64", "--filters", "inf", "--kernel-width", "5",
             "--frames", "60", "--iterations", "8", "--griffin-lim-iters", "3", "--device", "cpu"]
    with pytest.warns(UserWarning, match="float32"):
        assert main(["transfer", str(content), str(style), "--out", str(out), "--json", str(summary),
                     *flags, "--precision", "bf16"]) == 0
    data = json.loads(summary.read_text())
    assert data["precision_used"] == "fp32" and "4096" in data["loss_scale"]
    assert math.isinf(data["config"]["filters"]) and data["final_loss"] < data["initial_loss"]
    assert out.stat().st_size > 0


def test_reproduce_plans_every_cell_in_the_limit():
    from musicstyle.paper.runs import ACTIVATIONS as CELL_ACTIVATIONS
    from musicstyle.paper.runs import WEIGHTS, plan_runs

    runs = [r for r in plan_runs(seeds=2, limit_seeds=1) if r.group == "limit"]
    cells = {(r.settings["activation"], r.settings["alpha"], r.settings["beta"]) for r in runs}
    assert cells == {(a, w[0], w[1]) for a in CELL_ACTIVATIONS for w in WEIGHTS.values()}
    assert all(math.isinf(make_config(r.settings).filters) for r in runs)


@pytest.mark.parametrize("compiled", [True, False])
def test_series_kernel_gradient_on_blocks(monkeypatch, compiled):
    """The written-out gradient (engine/limit/series.py) on (rows, 1) x (1, cols) blocks as the style term uses them,
    compiled and op by op (MUSICSTYLE_COMPILE=0); both give the same values."""
    from musicstyle.engine.fast import fused
    from musicstyle.engine.limit import series

    monkeypatch.setattr(fused, "COMPILE", compiled)
    a, b, _, _ = covariances(9, seed=5)
    rows, cols = a[:4, None].clone(), b[None, :5].clone()
    cross = (torch.rand(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 1.6 - 0.8
             ) * torch.sqrt(rows * cols)
    inputs = tuple(t.requires_grad_(True) for t in (rows, cols, cross))
    assert torch.autograd.gradcheck(lambda x, y, z: series.series_kernel(x, y, z, "selu"), inputs)
    monkeypatch.setattr(fused, "COMPILE", not compiled)
    other = series.series_kernel(rows, cols, cross, "selu")
    monkeypatch.setattr(fused, "COMPILE", compiled)
    assert torch.allclose(series.series_kernel(rows, cols, cross, "selu"), other, rtol=1e-12, atol=0)
