"""The infinite-filter step (`--filters inf`) against the 4096-filter step and its own floor, fp32.

    python benchmark/bench_step.py --infinite [--quick] [--out results/limit/benchmark.md]

Run through bench_step.py (its timing helpers and machine line). Rows, interleaved round by round at
the base shapes (1025 bins x 430 frames, width 11): the project's 4096-filter float32 step, the limit's
step for several activations (ELU's also with its series loops op by op, as where compiling is off),
and the limit's floor: the four frames x frames products a step cannot
avoid (X^T X and X^T S, and the two products of the input gradient). Then the same steps at longer
clips, each in its own subprocess with its peak memory, and the crossover in frames where the limit's
T^2 cost catches up with the finite step's T, from a fit of the measured times (an extrapolation
where it lies beyond the longest clip measured). Above limit.BLOCK_FRAMES output frames the limit
computes its style term in row blocks under checkpointing, so its memory grows like T, not T^2.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from musicstyle.config import make_config
from musicstyle.engine.limit.kernels import BLOCK_FRAMES, build_limit_problem
from musicstyle.engine.optimize import build_problem

LIMIT_ACTIVATIONS = ("relu", "leaky_relu", "linear", "elu", "selu", "gelu", "tanh")


def isa_note() -> str:
    """avx2 in /proc/cpuinfo, the ATen CPU capability in use and the ISA-limiting variables that are set."""
    import os

    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    limits = [f"{k}={os.environ[k]}" for k in ("ATEN_CPU_CAPABILITY", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
              if k in os.environ]
    return (f"; avx2 {'listed' if ' avx2' in flags else 'not listed'}; ATen CPU capability "
            f"{torch.backends.cpu.get_cpu_capability()}"
            + (f" (emulated: {' '.join(limits)})" if limits else " (native)")
            + f"; compiled loops' SIMD width {torch._inductor.config.cpp.simdlen or 'native'} bits")


def emulate_inductor_isa() -> None:
    """Under AVX2 emulation (ATEN_CPU_CAPABILITY=avx2) give the compiled series loops AVX2's width too."""
    import os

    import torch._inductor.config

    if os.environ.get("ATEN_CPU_CAPABILITY", "").lower() == "avx2":
        torch._inductor.config.cpp.simdlen = 256


emulate_inductor_isa()


def limit_step(content: torch.Tensor, style: torch.Tensor, activation: str):
    """A (spec -> (loss, gradient)) step of the limit, fp32, the paper's weights (bench_step's project step)."""
    from bench_step import project_step

    return project_step(build_limit_problem(content, style, make_config({"filters": "inf", "activation": activation})))


def limit_floor(content: torch.Tensor, style: torch.Tensor):
    """The four (bins, T) x (T, T) sized float32 products of a limit step, on operands of the step's shapes."""
    frames = content.shape[1]
    grad = torch.randn(frames, frames)

    def run() -> None:
        content.T @ content
        content.T @ style
        content @ grad
        style @ grad

    return run


def finite_step(content: torch.Tensor, style: torch.Tensor):
    from bench_step import project_step

    return project_step(build_problem(content, style, make_config({"frames": content.shape[1]})))


def base_rows(rounds: int, activations: tuple[str, ...]) -> list[list[str]]:
    """Median ms of each step and the floor at the base shapes, with speed-ups against the 4096 step."""
    from common import interleaved_times, start_spectrogram, synthetic_pair

    device = torch.device("cpu")
    content, style = synthetic_pair(1025, 430, device)
    spec = start_spectrogram(content)
    fns = {"4096 filters, fp32 (project step)": lambda s=finite_step(content, style): s(spec)}
    for activation in activations:
        fns[f"limit, {activation}"] = lambda s=limit_step(content, style, activation): s(spec)
    if "elu" in activations:  # the series kernels' loops op by op, as where compiling is off or fails
        from bench_step import without_fused_passes

        fns["limit, elu, series op by op (MUSICSTYLE_COMPILE=0)"] = without_fused_passes(
            lambda s=limit_step(content, style, "elu"): s(spec))
    fns["limit floor (4 frames x frames products)"] = limit_floor(content, style)
    times = interleaved_times(fns, rounds, device)
    finite = times["4096 filters, fp32 (project step)"]
    floor = times["limit floor (4 frames x frames products)"]
    rows = []
    for name, t in times.items():
        rows.append([name, f"{np.median(t) * 1e3:.1f}", f"{np.median(finite / t):.1f}x",
                     f"{np.median(t / floor):.1f}x"])
    return rows


def run_case(case: str, rounds: int) -> dict[str, float]:
    """One 'method,frames' case in this fresh process: median ms and peak RSS (MB) above the start."""
    from common import interleaved, peak_rss_mb, start_spectrogram, synthetic_pair

    method, frames = case.split(",")
    base = peak_rss_mb()
    content, style = synthetic_pair(1025, int(frames), torch.device("cpu"))
    step = finite_step(content, style) if method == "fp32-4096" else limit_step(content, style, method)
    spec = start_spectrogram(content)
    ms = interleaved({"step": lambda: step(spec)}, rounds, torch.device("cpu"))["step"] * 1e3
    return {"ms": ms, "peak_mb": peak_rss_mb() - base}


def scaling_rows(frame_list: list[int], rounds: int) -> tuple[list[list[str]], str]:
    """The 4096 step and the limit's (ReLU) at each clip length, one subprocess each; and the crossover."""
    results: dict[tuple[str, int], dict[str, float]] = {}
    rows = []
    for frames in frame_list:
        for method in ("fp32-4096", "relu"):
            out = subprocess.run([sys.executable, str(Path(__file__).with_name("bench_step.py")), "--infinite-case",
                                  f"{method},{frames}", "--rounds", str(rounds),
                                  "--threads", str(torch.get_num_threads())],
                                 capture_output=True, text=True, check=True)
            results[method, frames] = json.loads(out.stdout.strip().splitlines()[-1])
        f, r = results["fp32-4096", frames], results["relu", frames]
        rows.append([str(frames), f"{f['ms']:.0f}", f"{r['ms']:.0f}", f"{f['ms'] / r['ms']:.1f}x",
                     f"{f['peak_mb']:.0f}", f"{r['peak_mb']:.0f}"])
        print("  limit scaling", rows[-1], flush=True)
    t = np.array(frame_list, float)
    finite = np.array([results["fp32-4096", n]["ms"] for n in frame_list])
    lim = np.array([results["relu", n]["ms"] for n in frame_list])
    a = np.polyfit(t, finite, 1)  # the finite step: linear in T (its T^2 frames-identity part switches off)
    b = np.polyfit(t, lim, 2)  # the limit: T^2 products and kernels
    # where the limit, faster at the shortest clip, becomes slower: a root past the shortest clip measured
    roots = [x.real for x in np.roots(b - np.pad(a, (1, 0))) if abs(x.imag) < 1e-9 and x.real > frame_list[0]]
    if not roots:
        crossover = "no crossover from the fits (the limit stays faster on every clip length they cover)"
    else:
        where = min(roots)
        beyond = where > max(frame_list)
        crossover = (f"the fits (4096 step: {a[0]:.3g} ms/frame + {a[1]:.3g} ms; limit: {b[0]:.3g} ms/frame^2 + "
                     f"{b[1]:.3g} ms/frame + {b[2]:.3g} ms) cross at about {where:.0f} frames"
                     + (" (an extrapolation beyond the longest clip measured)" if beyond else ""))
    return rows, crossover


def report(rounds: int, quick: bool, table, machine: str, command: str, commit: str) -> str:
    """The markdown section(s) for results/limit/benchmark.md."""
    activations = ("relu", "elu") if quick else LIMIT_ACTIVATIONS
    print("limit step at the base shapes ...", flush=True)
    rows = base_rows(rounds, activations)
    text = [f"# The infinite-filter step (fp32)\n\nCommand: `{command}`\n\nMachine: {machine}\n\n"
            f"Code: commit {commit}. Precision: float32 products everywhere (the 4096 step included; the limit's "
            "kernels and sums in float64).\n",
            f"## One step at the base shapes (1025 bins x 430 frames, width 11; medians of {rounds} interleaved "
            "rounds)\n\nSpeed-up: the 4096-filter step's time over the row's, per round (median); x floor: the row's "
            "time over the limit's floor in the same round.\n\n"
            + table(["step", "median ms", "speed-up vs 4096", "x limit floor"], rows)]
    print(text[-1], flush=True)
    frame_list = [430, 1000] if quick else [430, 1000, 2000, 4000]
    print("limit scaling ...", flush=True)
    rows, crossover = scaling_rows(frame_list, 1 if quick else 3)
    text.append("## Clip length (ReLU limit against the 4096-filter fp32 step; one subprocess each; memory: peak "
                f"RSS above the process's start, MB)\n\nAbove {BLOCK_FRAMES} output frames the limit's style term "
                "runs in row blocks under checkpointing.\n\n"
                + table(["frames", "4096 fp32 ms", "limit ms", "speed-up", "4096 MB", "limit MB"], rows)
                + f"\n\nCrossover: {crossover}.")
    print(text[-1], flush=True)
    return "\n\n".join(text) + "\n"
