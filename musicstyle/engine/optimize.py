"""Optimisation: only the output spectrogram changes; the random filters never get gradients.

L-BFGS is scipy's L-BFGS-B (memory 10), as in the base paper; Adam is torch's. The loss and its
gradient are computed by torch on the configured device; scipy sees float64 vectors. With bfloat16
products the runs convolve through anchors (`engine/fast/anchors.py`); the optimiser sees only a
`LossProblem`: its loss, and `accept` at each point it accepts.

The problem (filters, content features, style target; `problem.py`) is built once per (pair, network).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.optimize
import torch

from ..config import INIT_NOISE_STD, TransferConfig
from ..errors import DivergenceError
from ..util.machine import keep_freed_memory, one_blas_thread
from .network import bf16_supported, resolve_precision  # noqa: F401 (callers reach them here)
from .problem import (  # noqa: F401 (the problem's builders, where callers reach them)
    NETWORK_FIELDS,
    LossProblem,
    Problem,
    build_problem,
    cached_problem,
    clear_problem_cache,
    exact_anchor,
    product_dtype,
)

Progress = Callable[[int, int, float], None]  # (iteration, of iterations, current total loss)

LBFGS_MEMORY = 10  # scipy's default, the base paper's
EARLY_STALL_ITERATIONS = 10  # an L-BFGS line-search failure before this many iterations is retried in float64


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


def _run_lbfgs(problem: LossProblem, x0: np.ndarray, progress: Progress | None) -> dict:
    config = problem.config
    device, dtype = problem.device, problem.dtype
    shape = x0.shape
    state = {"evaluations": 0, "history": [], "last": None}

    def as_spec(flat: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(flat.reshape(shape)).to(device=device, dtype=dtype)

    def loss_and_grad(flat: np.ndarray) -> tuple[float, np.ndarray]:
        spec = as_spec(flat).requires_grad_(True)
        total, content, style = problem.loss_parts(spec)
        total.backward()
        state["evaluations"] += 1
        value = float(total.detach())
        _check_finite(value, state["evaluations"], config)
        state["last"] = (flat.copy(), value, float(content.detach()), float(style.detach()))
        if state["evaluations"] == 1:
            state["initial"] = value
        return value, spec.grad.detach().to(torch.float64).cpu().numpy().ravel()

    def on_iteration(intermediate_result: scipy.optimize.OptimizeResult) -> None:
        problem.accept(as_spec(intermediate_result.x), len(state["history"]) + 1)  # the next line search's start
        state["history"].append(float(intermediate_result.fun))
        if progress:
            progress(len(state["history"]), config.iterations, float(intermediate_result.fun))

    # L-BFGS-B's own vector work is tiny per call; multi-threaded BLAS there spends more on thread
    # start-up than it saves, so scipy gets one BLAS thread (torch keeps its own threads).
    with one_blas_thread():
        result = scipy.optimize.minimize(
            loss_and_grad, x0.ravel(), jac=True, method="L-BFGS-B", callback=on_iteration,
            options={"maxiter": config.iterations, "maxcor": LBFGS_MEMORY},
        )
    last_x, value, content, style = state["last"]
    spec = as_spec(result.x)
    if problem.accept(spec, None) or not np.array_equal(last_x, result.x):  # or the last one was a rejected trial
        with torch.no_grad():
            total, c, s = problem.loss_parts(spec)
            value, content, style = float(total), float(c), float(s)
    message = result.message if isinstance(result.message, str) else result.message.decode()
    return {
        "x": result.x.reshape(shape), "final": value, "content": content, "style": style,
        "initial": state["initial"], "iterations": int(result.nit), "evaluations": state["evaluations"],
        "history": state["history"], "stop_reason": message,
    }


def _run_adam(problem: LossProblem, x0: np.ndarray, progress: Progress | None) -> dict:
    config = problem.config
    device, dtype = problem.device, problem.dtype
    spec = torch.tensor(x0, device=device, dtype=dtype, requires_grad=True)
    optimizer = torch.optim.Adam([spec], lr=config.lr)
    schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.iterations)
                if config.lr_schedule == "cosine" else None)
    history: list[float] = []
    initial = None
    for step in range(1, config.iterations + 1):
        optimizer.zero_grad(set_to_none=True)
        total, _, _ = problem.loss_parts(spec)
        total.backward()
        value = float(total.detach())
        _check_finite(value, step, config)
        initial = value if initial is None else initial
        # Adam has no line search: every step starts from the point just evaluated (copied: the step moves it)
        problem.accept(spec.detach().clone(), step)
        optimizer.step()
        if schedule is not None:
            schedule.step()
        history.append(value)
        if progress:
            progress(step, config.iterations, value)
    with torch.no_grad():
        problem.accept(spec.detach(), None)
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
    problem: LossProblem | None = None,
) -> OptimizationResult:
    """Optimise a spectrogram whose features match the content's and whose Grams match the style's.

    content_spec, style_spec: (bins, frames) log-magnitudes with the same frame count.
    `problem` may be passed in to reuse filters and targets built for the same config and pair;
    without it they come from `cached_problem`. L-BFGS-B runs in float32; if it stops within the
    first iterations (float32 round-off at a huge initial loss), the run is repeated in float64 and
    `float64_fallback` is set.
    """
    start = time.perf_counter()
    keep_freed_memory()
    if problem is None and config.precision == "fp64":  # the whole problem in float64 (no cache: rare and large)
        problem = build_problem(*(torch.as_tensor(spec, dtype=torch.float64, device=device)
                                  for spec in (content_spec, style_spec)), config, dtype=torch.float64)
    if problem is None:
        problem = cached_problem(content_spec, style_spec, config, device)
    x0 = initial_spectrogram(content_spec, config.init, config.seed)
    problem = problem.for_run()
    problem.accept(torch.as_tensor(x0, dtype=problem.dtype, device=device), 0)
    run = _run_lbfgs if config.optimizer == "lbfgs" else _run_adam
    outcome = run(problem, x0, progress)
    fallback = False
    # float32 round-off at a huge initial loss ends L-BFGS-B within a few iterations, as a line-search
    # failure (ABNORMAL) or as a false "relative reduction <= factr*epsmch" convergence: retry in float64.
    if (config.optimizer == "lbfgs" and outcome["iterations"] < min(EARLY_STALL_ITERATIONS, config.iterations)
            and problem.dtype != torch.float64):
        content_t, style_t = (torch.as_tensor(spec, dtype=torch.float64, device=device)
                              for spec in (content_spec, style_spec))
        problem64 = build_problem(content_t, style_t, config, dtype=torch.float64)
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
