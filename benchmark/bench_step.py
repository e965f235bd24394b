"""Speed of one optimisation step, and of the whole base-paper run, against the straightforward port.

    python benchmark/bench_step.py            # full: about 10-15 minutes on 2 CPU cores
    python benchmark/bench_step.py --quick    # a minute or two; writes nothing unless --out is given
    python benchmark/bench_step.py --device cuda
    python benchmark/bench_step.py --infinite # the infinite-filter rows only (bench_limit.py)

Everything is timed side by side on the same inputs, interleaved round by round, and reported as
medians and ratios from one run (the machine may be shared: compare ratios, not absolute times). In the
step table the float32 rows and the bf16 rows are two such groups (a bf16 step then follows bf16 work,
as in a run), and a row's cost against its floor is the median of the per-round ratios, with quartiles.

- step: the straightforward float32 step written here as the reference (F.conv1d, activation, Gram
  F F^T over the filters, both losses, autograd backward); the project's step as engine/optimize.py runs
  it (Problem.loss_parts + backward) in every mode; the floor: the two products a step cannot avoid
  (the convolution as the filter matrix times the unfolded input, and the transposed product for the
  input gradient), at the same shapes and precision;
- Gram crossover: the fused style loss and gradient, frames x frames identity against filters x filters;
- scaling with clip length and filter count, with peak memory (one subprocess per case);
- Griffin-Lim: librosa's against the torch version on the same magnitude, with spectral convergence
  (bench_run.py, as the whole run; common.py holds the timing helpers and inputs all benchmarks share);
- the whole base-paper run (L-BFGS-B 300 iterations + Griffin-Lim 500) the straightforward way and
  the project's way, with final losses (bf16 against fp32; with --filters-mode-run also the Gram over
  filters against the frames identity, a float32 precision check).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from bench_run import bench_whole_run, griffin_lim_section
from common import (
    interleaved,
    interleaved_times,
    machine,
    peak_rss_mb,
    relative,
    start_spectrogram,
    synchronize,
    synthetic_pair,
    table,
    with_threads,
)

from musicstyle.config import make_config
from musicstyle.engine import optimize
from musicstyle.engine.fast import fused
from musicstyle.engine.fast.anchors import ANCHOR_REFRESH_ITERATIONS
from musicstyle.engine.losses import StyleTarget, style_distance_sq, style_target
from musicstyle.engine.network import (
    ConvMatrices,
    bf16_supported,
    conv_matrices,
    output_frames,
    product_columns,
    unfold_frames,
)
from musicstyle.engine.optimize import Problem, build_problem, exact_anchor, keep_freed_memory
from musicstyle.engine.problem import next_anchor
from musicstyle.engine.reference import StraightStep
from musicstyle.util.io import write_text

REPO = Path(__file__).resolve().parents[1]

HAVE_LIBROSA = importlib.util.find_spec("librosa") is not None  # audio sections need it (GPU boxes may lack it)
Step = Callable[[torch.Tensor], tuple[float, torch.Tensor]]  # (bins, frames) -> (loss, gradient)
BF16_ROUNDS_FACTOR = 3  # the bf16 step table's rows are interleaved among themselves, this many times the rounds
SYSTEM_MALLOC = False  # --system-malloc: glibc's malloc settings left alone, scaling subprocesses too


def project_step(problem: Problem) -> Step:
    """The project's step as engine/optimize.py runs it: Problem.loss_parts, then backward."""

    def step(spec: torch.Tensor) -> tuple[float, torch.Tensor]:
        x = spec.detach().clone().requires_grad_(True)
        total, _, _ = problem.loss_parts(x)
        total.backward()
        return float(total.detach()), x.grad

    return step


def anchored(problem: Problem, spec: torch.Tensor) -> Problem:
    """The problem as a bf16 L-BFGS run evaluates it: through an anchor near `spec` (Problem.anchored)."""
    if problem.anchored:
        problem.anchor = exact_anchor(problem, spec * 0.999)
    return problem


def mean_run_evaluation(problem: Problem, spec: torch.Tensor, device: torch.device, cycles: int = 2) -> float:
    """Mean seconds of a bf16 evaluation as an L-BFGS run makes them: each through the anchor the
    previous one left, with the exact refreshes of problem.next_anchor amortised (whole cycles)."""
    step = project_step(problem)
    step(spec)
    times = []
    for iteration in range(1, cycles * ANCHOR_REFRESH_ITERATIONS + 1):
        synchronize(device)
        start = time.perf_counter()
        problem.anchor = next_anchor(problem, iteration, spec)
        step(spec)
        synchronize(device)
        times.append(time.perf_counter() - start)
    return float(np.mean(times))


def floor_products(filters: torch.Tensor, spec: torch.Tensor, dtype: torch.dtype, columns: int | None = None,
                   matrices: ConvMatrices | None = None) -> Callable[[], None]:
    """The two unavoidable products at the step's shapes in `dtype`, each in its fastest layout:
    (filters, bins*width) @ (bins*width, out) and (bins*width, filters) @ (filters, out); with
    `columns`, both on that many columns (the output frames, then zeros) instead of out. With
    `matrices` (a bf16 problem's, whose transpose is contiguous), on the very weights its step uses."""
    weight = conv_matrices(filters, dtype).weight if matrices is None else matrices.weight
    weight_t = weight.T.contiguous() if matrices is None else matrices.weight_t
    columns = unfold_frames(spec, filters.shape[2], columns, dtype=dtype).contiguous()
    grad = torch.randn(weight.shape[0], columns.shape[1], device=spec.device).to(dtype)

    def run() -> None:
        weight @ columns
        weight_t @ grad

    return run


def without_fused_passes(fn: Callable[[], object]) -> Callable[[], object]:
    """`fn` with the compiled passes off (engine/fast/fused.py's and engine/limit/series.py's, MUSICSTYLE_COMPILE=0):
    op by op."""
    def run() -> object:
        before = fused.COMPILE
        fused.COMPILE = False
        try:
            return fn()
        finally:
            fused.COMPILE = before

    return run


def warm_fused_passes(device: torch.device) -> None:
    """Compile engine/fast/fused.py's passes on a tiny bf16 problem (they are compiled for all shapes at once),
    so that a subprocess's peak memory is the step's, not the compiler's."""
    config = make_config({"n_fft": 128, "hop": 32, "filters": 64, "kernel_width": 5, "device": device.type,
                          "precision": "bf16"})
    content, style = synthetic_pair(config.n_bins, 40, device)
    project_step(anchored(build_problem(content, style, config), content * 0.9))(content)


# --- sections -------------------------------------------------------------------------------------

def bench_steps(device: torch.device, rounds: int, bf16: bool) -> tuple[list[list[str]], dict[str, float]]:
    """The step table at the base shapes (1025 bins x 430 frames, 4096 filters, width 11)."""
    config = make_config({"device": device.type})
    content, style = synthetic_pair(config.n_bins, 430, device)
    spec = start_spectrogram(content)
    straight = StraightStep(content, style, config)
    fp32 = build_problem(content, style, config)
    filters_mode = build_problem(content, style, config.replace(gram_mode="filters"))
    fns: dict[str, Callable[[], object]] = {
        "straightforward fp32 (conv1d, Gram over filters, autograd)": lambda: straight(spec),
        "project fp32 (auto: frames identity)": lambda: project_step(fp32)(spec),
        "project fp32, Gram over filters": lambda: project_step(filters_mode)(spec),
        "floor fp32 (two products)": floor_products(fp32.filters, spec, torch.float32),
    }
    out = output_frames(spec.shape[1], config.kernel_width)
    padded = {dtype: product_columns(out, dtype) for dtype in (torch.float32, torch.bfloat16)}
    fns[f"floor fp32 on {padded[torch.float32]} columns (as the project runs them)"] = floor_products(
        fp32.filters, spec, torch.float32, padded[torch.float32])
    threads = torch.get_num_threads()
    other = 1 if threads > 1 else (os.cpu_count() or 1)
    if device.type == "cpu" and other != threads:
        name = f"project fp32, {other} thread(s) instead of {threads}"
        fns[name] = with_threads(other, lambda: project_step(fp32)(spec))
    times = interleaved_times(fns, rounds, device)
    floors = {"fp32": "floor fp32 (two products)"}
    if bf16:
        bf = anchored(build_problem(content, style, config.replace(precision="bf16")), spec)
        bf_fns: dict[str, Callable[[], object]] = {
            "project bf16": lambda: project_step(bf)(spec),
            "project bf16 without fused passes (autograd; MUSICSTYLE_COMPILE=0)": without_fused_passes(
                lambda: project_step(bf)(spec)),
            # on the step's own bf16 weights (the same tensors in memory): like for like
            "floor bf16 (two products)": floor_products(fp32.filters, spec, torch.bfloat16, matrices=bf.matrices),
            f"floor bf16 on {padded[torch.bfloat16]} columns (as the project runs them)": floor_products(
                fp32.filters, spec, torch.bfloat16, padded[torch.bfloat16], matrices=bf.matrices),
        }
        fns.update(bf_fns)
        times.update(interleaved_times(bf_fns, BF16_ROUNDS_FACTOR * rounds, device))
        floors["bf16"] = "floor bf16 (two products)"
    med = {name: float(np.median(t)) for name, t in times.items()}
    # x floor: each round's ratio (what slows a whole round cancels); the median, and the quartiles
    floor_ratio = {}
    for name, t in times.items():
        q1, q2, q3 = np.percentile(t / times[floors["bf16" if "bf16" in name else "fp32"]], [25, 50, 75])
        floor_ratio[name] = f"{q2:.2f}x ({q1:.2f}-{q3:.2f})"
    names = list(fns)
    if bf16:
        run_name = (f"project bf16 in a run: a new anchor per step, refreshes amortised "
                    f"(mean of {2 * ANCHOR_REFRESH_ITERATIONS})")
        names.append(run_name)
        med[run_name] = mean_run_evaluation(bf, spec, device)
        floor_ratio[run_name] = f"{med[run_name] / med[floors['bf16']]:.2f}x (against the median)"
        anchored(bf, spec)  # back to the anchor near spec for the loss and gradient differences
    reference_loss, reference_grad = straight(spec)
    straight_name = names[0]
    rows = []
    for name in names:
        loss_diff = grad_diff = "-"
        if name.startswith("project") and "thread" not in name and "in a run" not in name:  # same numbers
            loss, grad = fns[name]()  # the project rows' functions are steps at spec
            loss_diff = f"{abs(loss - reference_loss) / reference_loss:.1e}"
            grad_diff = f"{relative(grad, reference_grad):.1e}"
        rows.append([name, f"{med[name] * 1e3:.1f}", f"{med[straight_name] / med[name]:.2f}x",
                     "-" if name.startswith("floor") and "columns" not in name else floor_ratio[name],
                     loss_diff, grad_diff])
    return rows, med


def style_step(features: torch.Tensor, target: StyleTarget) -> Callable[[], torch.Tensor]:
    """Style loss and its gradient in `features` (filters, frames)."""

    def run() -> torch.Tensor:
        x = features.detach().requires_grad_(True)
        style_distance_sq(x, target).backward()
        return x.grad

    return run


def bench_crossover(device: torch.device, rounds: int, filters: int, frame_list: list[int]) -> list[list[str]]:
    """Fused style loss + gradient, float32: frames x frames identity against the filters x filters Gram."""
    rows = []
    for frames in frame_list:
        gen = torch.Generator().manual_seed(frames)
        style = torch.rand(filters, frames, generator=gen).to(device)
        features = torch.rand(filters, frames, generator=gen).to(device)
        fns = {mode: style_step(features, style_target(style, frames, mode)) for mode in ("frames", "filters")}
        med = interleaved(fns, rounds, device)
        rows.append([str(filters), str(frames), f"{frames / filters:.2f}", f"{med['frames'] * 1e3:.1f}",
                     f"{med['filters'] * 1e3:.1f}", "frames" if med["frames"] < med["filters"] else "filters"])
    return rows


def run_case(case: str, device: torch.device, steps: int) -> dict[str, float]:
    """One scaling case in this (fresh) process: 'method,frames,filters' -> median ms and peak memory."""
    method, frames, filters = case.split(",")
    config = make_config({"filters": int(filters), "frames": int(frames), "device": device.type,
                          "precision": "bf16" if method == "bf16" else "fp32"})
    if method == "bf16":
        warm_fused_passes(device)
    base_rss = peak_rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    content, style = synthetic_pair(config.n_bins, int(frames), device)
    step = StraightStep(content, style, config) if method == "straight" else project_step(
        anchored(build_problem(content, style, config), content * 0.9))
    med = interleaved({"step": lambda: step(content * 0.9)}, steps, device)["step"]
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda"
            else peak_rss_mb() - base_rss)
    return {"ms": med * 1e3, "peak_mb": peak}


def bench_scaling(device: torch.device, steps: int, cases: list[tuple[int, int]], methods: list[str]
                  ) -> list[list[str]]:
    """Each (frames, filters) case and method in its own subprocess, for an honest peak memory."""
    rows = []
    for frames, filters in cases:
        row = [str(frames), str(filters)]
        results = {}
        for method in methods:
            out = subprocess.run([sys.executable, __file__, "--case", f"{method},{frames},{filters}",
                                  "--device", device.type, "--rounds", str(steps),
                                  "--threads", str(torch.get_num_threads()),
                                  *(["--system-malloc"] if SYSTEM_MALLOC else [])],
                                 capture_output=True, text=True, check=True)
            results[method] = json.loads(out.stdout.strip().splitlines()[-1])
        for method in methods:
            row.append(f"{results[method]['ms']:.1f}")
        for method in methods[1:]:
            row.append(f"{results['straight']['ms'] / results[method]['ms']:.2f}x")
        for method in methods:
            row.append(f"{results[method]['peak_mb']:.0f}")
        rows.append(row)
        print("  scaling", row, flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, cases and iterations (a minute or two)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--out", default=None, help="markdown report (default results/benchmarks.md; none in --quick)")
    parser.add_argument("--no-whole-run", action="store_true", help="skip the whole base-paper run")
    parser.add_argument("--filters-mode-run", action="store_true",
                        help="also run the whole optimisation with the Gram over filters (precision check)")
    parser.add_argument("--rounds", type=int, default=None, help="timing rounds per measurement")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default torch's: one per core); 1 is steadier on a shared machine")
    parser.add_argument("--system-malloc", action="store_true",
                        help="leave glibc's malloc settings alone (what optimize.keep_freed_memory buys)")
    parser.add_argument("--case", default=None, help=argparse.SUPPRESS)  # one scaling case, in a subprocess
    parser.add_argument("--infinite", action="store_true",
                        help="only the infinite-filter rows (bench_limit.py); default out results/limit/benchmark.md")
    parser.add_argument("--infinite-case", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.system_malloc:
        global SYSTEM_MALLOC
        SYSTEM_MALLOC = True
        optimize.keep_freed_memory = lambda: False  # optimize_spectrogram calls it too
    else:
        keep_freed_memory()  # every row alike, the straightforward one and the floors included
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA GPU")
    torch.backends.cudnn.allow_tf32 = False  # fp32 is fp32 for the reference conv1d too (cuDNN default: TF32)
    if args.case:
        print(json.dumps(run_case(args.case, device, args.rounds or 3)))
        return
    if args.infinite or args.infinite_case:
        import bench_limit
        from limit_convergence import commit

        if args.infinite_case:
            print(json.dumps(bench_limit.run_case(args.infinite_case, args.rounds or 3)))
            return
        command = "python benchmark/bench_step.py " + " ".join(sys.argv[1:] if argv is None else argv)
        text = bench_limit.report(args.rounds or (3 if args.quick else 5), args.quick, table,
                                  machine(device) + bench_limit.isa_note(), command.strip(), commit())
        out = args.out or (None if args.quick else str(REPO / "results" / "limit" / "benchmark.md"))
        if out:
            write_text(out, text)
            print(f"wrote {out}")
        return
    quick = args.quick
    rounds = args.rounds or (3 if quick else 7)
    bf16 = bf16_supported(device)
    command = "python benchmark/bench_step.py " + " ".join(sys.argv[1:] if argv is None else argv)
    sections = [f"# Benchmarks\n\nCommand: `{command.strip()}`\n\nMachine: {machine(device)}; "
                f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Medians of {rounds} interleaved "
                "rounds; ratios are from the same run. glibc malloc keeps freed memory for reuse "
                f"(optimize.keep_freed_memory): {'no (--system-malloc)' if args.system_malloc else 'yes'}, "
                "for every row.\n"]
    if not bf16:
        sections.append("bfloat16 products are not fast on this device: bf16 rows are left out.\n")

    print("step at the base shapes ...", flush=True)
    rows, _ = bench_steps(device, rounds, bf16)
    sections.append("## One step at the base shapes (1025 bins x 430 frames, 4096 filters, width 11)\n\n"
                    "Speed-up against the straightforward step; cost against the floor (the two unavoidable "
                    "products at the same shapes and precision): the median over rounds of the row's time over "
                    "the floor's in the same round, with the quartiles in brackets; loss and gradient differences "
                    "relative to the straightforward step. The project runs both products on columns padded with "
                    "zeros to whole blocks of the CPU's kernels (network.product_columns); the floor rows on those "
                    "columns show what that padding buys. The bf16 step runs through an anchor, as in an L-BFGS run "
                    "(Problem.anchored), its style term too (fast/anchors.StyleAnchor), written out with its "
                    "elementwise passes compiled by torch.compile (engine/fast/fused.py; compiled before timing); "
                    "the row "
                    "'without fused passes' is the same step through autograd, op by op; the row 'in a run' adds "
                    "what a run pays besides: a new anchor each step and the exact refreshes (a mean, against the "
                    f"floor's median). The float32 rows are interleaved among themselves, {rounds} rounds; the bf16 "
                    f"rows among themselves, {BF16_ROUNDS_FACTOR * rounds} rounds, so each sees its caches as a run "
                    "of its precision does (not just after a 0.8 s float32 step); the bf16 rows' speed-ups set "
                    "the medians of the two groups against each other.\n\n" + table(
                        ["step", "median ms", "speed-up", "x floor", "loss diff", "grad diff"], rows))
    print(sections[-1], flush=True)

    print("Gram crossover ...", flush=True)
    cross_filters = 1024 if quick else 4096
    frame_list = [256, 512, 1024] if quick else [1024, 1536, 2048, 3072]
    rows = bench_crossover(device, max(rounds // 2, 2), cross_filters, frame_list)
    sections.append("## Gram crossover (style loss + gradient, float32)\n\n" + table(
        ["filters", "frames", "frames / filters", "frames identity ms", "filters Gram ms", "faster"], rows))
    print(sections[-1], flush=True)

    print("scaling ...", flush=True)
    methods = ["straight", "fp32"] + (["bf16"] if bf16 else [])
    cases = ([(100, 4096), (430, 4096), (430, 1024)] if quick else
             [(100, 4096), (430, 4096), (1000, 4096), (2000, 4096), (430, 1024), (430, 2048), (430, 8192)])
    rows = bench_scaling(device, 1 if quick else 3, cases, methods)
    memory = "peak GPU memory allocated" if device.type == "cuda" else "peak RSS above the process's start"
    sections.append(f"## Scaling (one step, median ms; memory: {memory}, MB, one subprocess each)\n\n" + table(
        ["frames", "filters", *[f"{m} ms" for m in methods], *[f"{m} speed-up" for m in methods[1:]],
         *[f"{m} MB" for m in methods]], rows))
    print(sections[-1], flush=True)

    if not HAVE_LIBROSA:
        sections.append("librosa is not installed here: the Griffin-Lim and whole-run sections are left out.\n")
        args.no_whole_run = True
    else:
        sections.append(griffin_lim_section(device, quick))
        print(sections[-1], flush=True)

    if not args.no_whole_run:
        iterations, gl = (10, 20) if quick else (300, 500)
        print(f"whole run ({iterations} L-BFGS iterations, {gl} Griffin-Lim) ...", flush=True)
        rows = bench_whole_run(device, iterations, gl, bf16, args.filters_mode_run)
        sections.append(f"## Whole base-paper run ({iterations} L-BFGS-B iterations + {gl} Griffin-Lim, one run "
                        "each, cold: filters and targets built inside)\n\n" + table(
                            ["run", "seconds", "speed-up", "final loss", "vs project fp32 (same settings)",
                             "evaluations"], rows))
        print(sections[-1], flush=True)

    out = args.out or (None if quick else str(REPO / "results" / "benchmarks.md"))
    if out:
        write_text(out, "\n\n".join(sections) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
