"""Where the bf16 step's time goes, part by part.

    python benchmark/step_parts.py            # about 15 seconds on 2 CPU cores
    python benchmark/step_parts.py --frames 173 --activation leaky_relu

The step is `fused.anchored_step` (the bf16 step through an anchor, its passes compiled) cut into its
parts here, in the same order and with the same calls; before timing, the script checks that the cut
step gives the very same loss and gradient as `anchored_step` (bit for bit), so the two cannot drift.

Each part is timed with `time.perf_counter` inside whole steps (so with the caches as the step leaves
them, not warm as when timed alone): medians over steps, with quartiles.

Not measured here, on purpose: a part's cost by ablation (the step with that part replaced by its
result computed beforehand). Tried: the unfold came out at 0.3, 2.0 and 4.5 ms in three runs. The
stand-in is always the same buffer while the step's own come from the allocator, and on this machine
the same product took up to 8 % longer with one allocation of its weights than with another.

Shapes: the base paper's (1025 bins, `--frames` frames, 4096 filters, width 11), synthetic spectrograms.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from bench_step import anchored
from common import machine, start_spectrogram, synchronize, synthetic_pair, table

from musicstyle.config import make_config
from musicstyle.engine.fast import fused
from musicstyle.engine.fast.anchors import anchor_operand, difference_terms
from musicstyle.engine.losses import style_grad_scale, style_sum
from musicstyle.engine.network import bf16_supported, fold_padded, gradient_columns, product_columns, unfold_frames
from musicstyle.engine.optimize import Problem, build_problem, keep_freed_memory

REPO = Path(__file__).resolve().parents[1]

Part = tuple[str, Callable[[dict], dict]]  # (name, state -> what the part adds to the state)


def step_parts(problem: Problem, spec: torch.Tensor) -> list[Part]:
    """`fused.anchored_step` at `spec`, as a list of parts that each read and extend a state dict."""
    config, anchor, matrices, target = problem.config, problem.anchor, problem.matrices, problem.style
    frames, width = spec.shape[1], matrices.kernel_width
    out = frames - width + 1
    style_frames = target.features.shape[1]
    fixed = out + style_frames

    def features(s: dict) -> dict:
        left, slot = anchor_operand(anchor.style, target)
        pre, f, content, first_order = fused._features_pass(
            s["product"], anchor.pre, anchor.style.features, problem.content_features, anchor.style.grad, slot,
            config.activation, config.leaky_slope)
        return dict(left=left, pre=pre, features=f, content=content, first_order=first_order)

    def terms(s: dict) -> dict:
        ftf, second, right = difference_terms(s["products"], anchor.style.ftf)
        return dict(ftf=ftf, second=second, right=right)

    def gradient(s: dict) -> dict:
        padded = gradient_columns(matrices, frames, spec.device)
        content_weight = torch.tensor(2.0 * config.alpha, device=spec.device)
        style_weight = torch.tensor(config.beta * style_grad_scale(target), device=spec.device)
        style_grad = fused._gradient_pass(s["change"], anchor.style.grad, s["features"], problem.content_features,
                                          s["pre"], content_weight, style_weight, padded[:, :out],
                                          config.activation, config.leaky_slope)
        return dict(padded=padded, style_grad=style_grad)

    def rest(s: dict) -> dict:
        value = anchor.style.value + 4.0 * s["first_order"].double() + s["second"]
        total = config.alpha * s["content"] + config.beta * style_sum(value, target)
        return dict(total=float(total))

    dtype = matrices.weight.dtype
    return [
        ("spectrogram difference + unfold",
         lambda s: dict(u=unfold_frames(spec - anchor.spec, width, product_columns(out, dtype), dtype=dtype))),
        ("forward product", lambda s: dict(product=(matrices.weight @ s["u"])[:, :out])),
        ("features pass (compiled)", features),
        ("style product 1: [F0, S, D]^T D", lambda s: dict(products=s["left"].T @ s["left"][:, fixed:])),
        ("difference_terms (T x T)", terms),
        ("style product 2: [F0, S, D] [dA; -dB; A]", lambda s: dict(change=(s["left"] @ s["right"])[:, :out])),
        ("gradient pass (compiled)", gradient),
        ("input-gradient product", lambda s: dict(columns=matrices.weight_t @ s["padded"])),
        ("fold (float32 sums)", lambda s: dict(grad=fold_padded(s["columns"], width, frames).to(spec.dtype))),
        ("value, total", rest),
    ]


def run_parts(parts: list[Part], device: torch.device) -> tuple[dict, list[float]]:
    """Run the parts in order: (the final state, seconds of each part)."""
    state: dict = {}
    seconds = []
    synchronize(device)
    start = time.perf_counter()
    for _, part in parts:
        state.update(part(state))
        synchronize(device)
        now = time.perf_counter()
        seconds.append(now - start)
        start = now
    return state, seconds


def check_same_as_fused(problem: Problem, spec: torch.Tensor, parts: list[Part], device: torch.device) -> None:
    """The cut step must give anchored_step's loss and gradient exactly; stop with one line otherwise."""
    total, _, _, grad, _ = fused.anchored_step(problem, spec)
    state, _ = run_parts(parts, device)
    if state["total"] != float(total) or not torch.equal(state["grad"], grad):
        sys.exit("error: benchmark/step_parts.py no longer cuts fused.anchored_step the same way "
                 f"(loss {state['total']} against {float(total)}); update step_parts() to match")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--frames", type=int, default=430, help="spectrogram frames (default: the paper's 430)")
    parser.add_argument("--activation", default="relu")
    parser.add_argument("--steps", type=int, default=35, help="steps timed part by part")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda, but torch sees no CUDA device here")
    if not bf16_supported(device):
        sys.exit(f"error: no fast bfloat16 products on {device} (AVX-512 BF16 / AMX or CUDA needed)")
    keep_freed_memory()
    config = make_config({"device": args.device, "activation": args.activation, "precision": "bf16"})
    content, style = synthetic_pair(config.n_bins, args.frames, device)
    spec = start_spectrogram(content)
    problem = anchored(build_problem(content, style, config), spec)
    parts = step_parts(problem, spec)
    try:
        check_same_as_fused(problem, spec, parts, device)  # compiles the passes too
    except Exception as error:  # noqa: BLE001 - no C++ compiler / Triton: say so in one line
        sys.exit(f"error: the compiled passes do not run here ({type(error).__name__}: {str(error)[:200]})")

    per_part = np.array([run_parts(parts, device)[1] for _ in range(args.steps + 2)][2:]) * 1e3
    def cells(ms: np.ndarray) -> list[str]:
        return [f"{np.median(ms):.2f}", f"{np.percentile(ms, 25):.2f}-{np.percentile(ms, 75):.2f}"]

    rows = [[name, *cells(per_part[:, i])] for i, (name, _) in enumerate(parts)]
    rows.append(["whole step", *cells(per_part.sum(1))])
    print(f"bf16 step at {config.n_bins} bins x {args.frames} frames, {config.filters} filters, width "
          f"{config.kernel_width}, {args.activation}; {machine(device)}")
    print(f"each part timed inside the step: median of {args.steps} steps, quartiles\n")
    print(table(["part", "ms", "quartiles, ms"], rows))


if __name__ == "__main__":
    main()
