"""The base-paper run end to end, the straightforward way against the project's, and Griffin-Lim
(librosa's against the torch one): the whole-run and Griffin-Lim sections of bench_step.py."""

from __future__ import annotations

import time

import numpy as np
import scipy.optimize
import torch
from common import interleaved, paper_pair, synchronize, table

from musicstyle.config import INIT_NOISE_STD, TransferConfig, make_config
from musicstyle.data.paper_songs import PAPER_ROWS
from musicstyle.engine.optimize import clear_problem_cache, optimize_spectrogram
from musicstyle.engine.reconstruct import griffin_lim, griffin_lim_librosa
from musicstyle.engine.reference import StraightStep


def bench_griffin_lim(device: torch.device, log_mag: np.ndarray, iters: int, rounds: int,
                      config: TransferConfig) -> tuple[list[list[str]], dict[str, float]]:
    """librosa's Griffin-Lim against the torch one on the same magnitude (bins, frames)."""
    from musicstyle.engine.metrics import spectral_convergence
    from musicstyle.engine.spectrogram import magnitude_from_log

    magnitude = magnitude_from_log(log_mag)
    n_fft, hop = config.n_fft, config.hop
    fns = {"librosa (CPU)": lambda: griffin_lim_librosa(magnitude, n_fft, hop, iters, seed=0),
           f"torch ({device.type})": lambda: griffin_lim(magnitude, n_fft, hop, iters, seed=0, device=device)}
    med = interleaved(fns, rounds, device)
    rows = []
    for name, fn in fns.items():
        audio = fn()
        sc = spectral_convergence(audio, magnitude, n_fft, hop)
        rows.append([name, str(iters), f"{med[name]:.2f}", f"{med['librosa (CPU)'] / med[name]:.2f}x", f"{sc:.4f}"])
    return rows, med


def straightforward_run(content: np.ndarray, style: np.ndarray, config: TransferConfig, device: torch.device
                        ) -> tuple[float, float, int]:
    """The straightforward port end to end: scipy L-BFGS-B on StraightStep, then librosa's Griffin-Lim.

    Returns (seconds, final loss, evaluations).
    """
    from musicstyle.engine.spectrogram import magnitude_from_log

    start = time.perf_counter()
    c, s = (torch.as_tensor(a, dtype=torch.float32, device=device) for a in (content, style))
    step = StraightStep(c, s, config)
    x0 = np.random.default_rng((config.seed, 2)).standard_normal(content.shape) * INIT_NOISE_STD
    evaluations = 0

    def fun(flat: np.ndarray) -> tuple[float, np.ndarray]:
        nonlocal evaluations
        evaluations += 1
        value, grad = step(torch.as_tensor(flat.reshape(content.shape), dtype=torch.float32, device=device))
        return value, grad.double().cpu().numpy().ravel()

    result = scipy.optimize.minimize(fun, x0.ravel(), jac=True, method="L-BFGS-B",
                                     options={"maxiter": config.iterations, "maxcor": 10})
    magnitude = magnitude_from_log(result.x.reshape(content.shape).astype(np.float32))
    griffin_lim_librosa(magnitude, config.n_fft, config.hop, config.griffin_lim_iters, config.seed)
    return time.perf_counter() - start, float(result.fun), evaluations


def project_run(content: np.ndarray, style: np.ndarray, config: TransferConfig, device: torch.device
                ) -> tuple[float, float, int, bool]:
    """The project's way end to end (cold: filters and targets built inside): optimise, Griffin-Lim."""
    from musicstyle.engine.spectrogram import magnitude_from_log

    clear_problem_cache()
    start = time.perf_counter()
    result = optimize_spectrogram(content, style, config, device=device)
    griffin_lim(magnitude_from_log(result.spectrogram), config.n_fft, config.hop, config.griffin_lim_iters,
                config.seed, device=device)
    synchronize(device)
    return time.perf_counter() - start, result.final_loss, result.evaluations, result.float64_fallback


def bench_whole_run(device: torch.device, iterations: int, gl_iters: int, bf16: bool, filters_mode: bool
                    ) -> list[list[str]]:
    config = make_config({"device": device.type, "iterations": iterations, "griffin_lim_iters": gl_iters})
    content, style, source = paper_pair(config)
    print(f"  whole run on {source}", flush=True)
    seconds, loss, evals = straightforward_run(content, style, config, device)
    rows = [["straightforward fp32 (conv1d, Gram over filters, autograd; librosa Griffin-Lim)",
             f"{seconds:.1f}", "1.00x", f"{loss:.2f}", "-", str(evals)]]
    print("  ", rows[-1], flush=True)
    blog = config.replace(**PAPER_ROWS[1].settings)  # the blog's LeakyReLU row: style-heavy, bf16's hard case
    variants = [("project fp32 (auto: frames identity)", config)]
    if filters_mode:
        variants.append(("project fp32, Gram over filters", config.replace(gram_mode="filters")))
    if bf16:
        variants.append(("project bf16", config.replace(precision="bf16")))
        variants += [(f"project fp32, {PAPER_ROWS[1].name} settings", blog),
                     (f"project bf16, {PAPER_ROWS[1].name} settings", blog.replace(precision="bf16"))]
    fp32_loss = {}
    for name, variant in variants:
        t, final, evaluations, fallback = project_run(content, style, variant, device)
        settings = variant.replace(precision="fp32", gram_mode="auto")
        reference = fp32_loss.setdefault(settings, final)
        diff = f"{(final - reference) / reference * 100:+.2f} %"
        rows.append([name + (" (float64 fallback)" if fallback else ""), f"{t:.1f}",
                     f"{seconds / t:.2f}x" if settings == config else "-", f"{final:.2f}", diff, str(evaluations)])
        print("  ", rows[-1], flush=True)
    return rows


def griffin_lim_section(device: torch.device, quick: bool) -> str:
    print("Griffin-Lim ...", flush=True)
    config = make_config({"device": device.type})
    content, _, source = paper_pair(config)
    gl_iters = 50 if quick else 500
    rows, _ = bench_griffin_lim(device, content, gl_iters, 2 if quick else 3, config)
    return f"## Griffin-Lim on the same magnitude ({source})\n\n" + table(
        ["implementation", "iterations", "median s", "speed-up", "spectral convergence"], rows)
