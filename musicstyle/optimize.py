"""Optimisation: only the output spectrogram changes; the random filters never get gradients.

L-BFGS is scipy's L-BFGS-B (memory 10), as in the base paper; Adam is torch's. The loss and its
gradient are computed by torch on the configured device; scipy sees float64 vectors.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.optimize
import torch

from .config import INIT_NOISE_STD, TransferConfig
from .errors import DivergenceError
from .losses import StyleTarget, content_distance_sq, style_distance_sq, style_target
from .network import feature_maps, random_filters

Progress = Callable[[int, int, float], None]  # (iteration, of iterations, current total loss)

LBFGS_MEMORY = 10  # scipy's default, the base paper's
EARLY_STALL_ITERATIONS = 10  # an L-BFGS line-search failure before this many iterations is retried in float64


@dataclass
class Problem:
    """Everything one loss evaluation needs, on one device and dtype."""

    filters: torch.Tensor  # (filters, bins, width)
    content_features: torch.Tensor  # (filters, output_frames)
    style: StyleTarget
    config: TransferConfig

    def features(self, spec: torch.Tensor) -> torch.Tensor:
        c = self.config
        bf16 = c.precision == "bf16" and self.filters.dtype == torch.float32
        return feature_maps(spec, self.filters, c.activation, c.leaky_slope, c.pooling, bf16=bf16)

    def loss_parts(self, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(weighted total, unweighted content sum, unweighted style sum) for a (bins, frames) spectrogram."""
        features = self.features(spec)
        content = content_distance_sq(features, self.content_features)
        style = style_distance_sq(features, self.style)
        total = self.config.alpha * content + self.config.beta * style
        return total, content, style


def build_problem(
    content_spec: torch.Tensor, style_spec: torch.Tensor, config: TransferConfig, dtype: torch.dtype = torch.float32
) -> Problem:
    """Draw the filters and compute the content features and the style target once.

    content_spec, style_spec: (bins, frames) on the target device.
    """
    device = content_spec.device
    filters = random_filters(content_spec.shape[0], config.filters, config.kernel_width, config.init_gain,
                             config.seed, device=device, dtype=dtype)
    problem = Problem(filters, content_features=None, style=None, config=config)  # type: ignore[arg-type]
    with torch.no_grad():
        problem.content_features = problem.features(content_spec.to(dtype))
        style_features = problem.features(style_spec.to(dtype))
    problem.style = style_target(style_features, norm_frames=content_spec.shape[1], mode=config.gram_mode)
    return problem


def initial_spectrogram(content_spec: np.ndarray, init: str, seed: int) -> np.ndarray:
    """The optimisation's start, (bins, frames) float64: small noise (base paper), the content, or zeros."""
    if init == "noise":
        return np.random.default_rng((seed, 2)).standard_normal(content_spec.shape) * INIT_NOISE_STD
    if init == "content":
        return np.array(content_spec, dtype=np.float64)
    return np.zeros(content_spec.shape)


@dataclass
class OptimizationResult:
    """The optimised log-magnitude spectrogram (bins, frames) and how the optimisation went."""

    spectrogram: np.ndarray
    final_loss: float
    content_loss: float  # alpha * unweighted
    style_loss: float  # beta * unweighted
    content_loss_unweighted: float
    style_loss_unweighted: float
    initial_loss: float
    iterations: int
    evaluations: int
    optimize_seconds: float
    stop_reason: str
    float64_fallback: bool = False
    loss_history: list[float] = field(default_factory=list)

    @property
    def seconds_per_evaluation(self) -> float:
        return self.optimize_seconds / max(self.evaluations, 1)


def _check_finite(value: float, evaluation: int, config: TransferConfig) -> None:
    if not np.isfinite(value):
        hint = f" (learning rate {config.lr:g} too large?)" if config.optimizer == "adam" else ""
        raise DivergenceError(f"loss became {value} at evaluation {evaluation}{hint}")


def _run_lbfgs(problem: Problem, x0: np.ndarray, progress: Progress | None) -> dict:
    config = problem.config
    device, dtype = problem.filters.device, problem.filters.dtype
    shape = x0.shape
    state = {"evaluations": 0, "history": [], "last": None}

    def loss_and_grad(flat: np.ndarray) -> tuple[float, np.ndarray]:
        spec = torch.from_numpy(flat.reshape(shape)).to(device=device, dtype=dtype).requires_grad_(True)
        total, content, style = problem.loss_parts(spec)
        total.backward()
        state["evaluations"] += 1
        value = float(total.detach())
        _check_finite(value, state["evaluations"], config)
        state["last"] = (flat.copy(), value, float(content), float(style))
        if state["evaluations"] == 1:
            state["initial"] = value
        return value, spec.grad.detach().to(torch.float64).cpu().numpy().ravel()

    def on_iteration(intermediate_result: scipy.optimize.OptimizeResult) -> None:
        state["history"].append(float(intermediate_result.fun))
        if progress:
            progress(len(state["history"]), config.iterations, float(intermediate_result.fun))

    result = scipy.optimize.minimize(
        loss_and_grad, x0.ravel(), jac=True, method="L-BFGS-B", callback=on_iteration,
        options={"maxiter": config.iterations, "maxcor": LBFGS_MEMORY},
    )
    last_x, value, content, style = state["last"]
    if not np.array_equal(last_x, result.x):  # the last evaluation was a rejected trial point
        with torch.no_grad():
            spec = torch.from_numpy(result.x.reshape(shape)).to(device=device, dtype=dtype)
            total, c, s = problem.loss_parts(spec)
            value, content, style = float(total), float(c), float(s)
    message = result.message if isinstance(result.message, str) else result.message.decode()
    return {
        "x": result.x.reshape(shape), "final": value, "content": content, "style": style,
        "initial": state["initial"], "iterations": int(result.nit), "evaluations": state["evaluations"],
        "history": state["history"], "stop_reason": message,
    }


def _run_adam(problem: Problem, x0: np.ndarray, progress: Progress | None) -> dict:
    config = problem.config
    device, dtype = problem.filters.device, problem.filters.dtype
    spec = torch.tensor(x0, device=device, dtype=dtype, requires_grad=True)
    optimizer = torch.optim.Adam([spec], lr=config.lr)
    history: list[float] = []
    initial = None
    for step in range(1, config.iterations + 1):
        optimizer.zero_grad(set_to_none=True)
        total, _, _ = problem.loss_parts(spec)
        total.backward()
        value = float(total.detach())
        _check_finite(value, step, config)
        initial = value if initial is None else initial
        optimizer.step()
        history.append(value)
        if progress:
            progress(step, config.iterations, value)
    with torch.no_grad():
        total, content, style = problem.loss_parts(spec)
    _check_finite(float(total), config.iterations + 1, config)
    return {
        "x": spec.detach().to(torch.float64).cpu().numpy(), "final": float(total), "content": float(content),
        "style": float(style), "initial": initial, "iterations": config.iterations,
        "evaluations": config.iterations + 1, "history": history + [float(total)], "stop_reason": "iterations done",
    }


def optimize_spectrogram(
    content_spec: np.ndarray,
    style_spec: np.ndarray,
    config: TransferConfig,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    problem: Problem | None = None,
) -> OptimizationResult:
    """Optimise a spectrogram whose features match the content's and whose Grams match the style's.

    content_spec, style_spec: (bins, frames) log-magnitudes with the same frame count.
    `problem` may be passed in to reuse filters and targets built for the same config and pair.
    L-BFGS-B runs in float32; if its line search fails in the first iterations (float32 round-off
    at a huge initial loss), the run is repeated in float64 and `float64_fallback` is set.
    """
    start = time.perf_counter()
    content_t = torch.as_tensor(content_spec, dtype=torch.float32, device=device)
    style_t = torch.as_tensor(style_spec, dtype=torch.float32, device=device)
    if problem is None:
        problem = build_problem(content_t, style_t, config)
    x0 = initial_spectrogram(content_spec, config.init, config.seed)
    run = _run_lbfgs if config.optimizer == "lbfgs" else _run_adam
    outcome = run(problem, x0, progress)
    fallback = False
    if (config.optimizer == "lbfgs" and outcome["iterations"] < min(EARLY_STALL_ITERATIONS, config.iterations)
            and "ABNORMAL" in outcome["stop_reason"].upper()):
        problem64 = build_problem(content_t.double(), style_t.double(), config, dtype=torch.float64)
        outcome = run(problem64, x0, progress)
        fallback = True
    seconds = time.perf_counter() - start
    return OptimizationResult(
        spectrogram=outcome["x"].astype(np.float32),
        final_loss=outcome["final"],
        content_loss=config.alpha * outcome["content"],
        style_loss=config.beta * outcome["style"],
        content_loss_unweighted=outcome["content"],
        style_loss_unweighted=outcome["style"],
        initial_loss=outcome["initial"],
        iterations=outcome["iterations"],
        evaluations=outcome["evaluations"],
        optimize_seconds=seconds,
        stop_reason=outcome["stop_reason"],
        float64_fallback=fallback,
        loss_history=outcome["history"],
    )
