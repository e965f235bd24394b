"""Do kernels.py's C kernels pay for themselves on a whole trial? The issue's rule: keep them only if
they save at least 10 % of a trial's time.

A trial-sized run: one pair of the built-in corpus at configs/default.yaml's fixed settings (its
bf16 precision, 173-frame clips, 120 L-BFGS iterations, 50 Griffin-Lim iterations), optimise +
reconstruct + measure, as one sweep trial does per pair. Runs with the kernels on and off
(`kernels.turned_off()`) alternate in one process after a warm-up, so that load from other
processes on the machine falls on both alike; the medians and the median of the per-pair
differences are reported. `--all` runs it natively (bf16) and again under AVX2 emulation
(ATEN_CPU_CAPABILITY=avx2, oneDNN and MKL limited to AVX2; there bfloat16 products are slow and
runs take float32) in child processes, and writes results/kernels-decision.md.

    python benchmark/kernels_decision.py --all --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "DNNL_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def measure(repeats: int, precision: str, iterations: int | None) -> dict:
    """Alternated on/off trial-sized runs in this process; seconds per run."""
    from musicstyle import kernels
    from musicstyle.corpus import builtin_pairs
    from musicstyle.machine import describe, limit_threads
    from musicstyle.metrics import evaluation_space
    from musicstyle.sweepconfig import load_settings
    from musicstyle.transfer import load_pair, run_transfer

    limit_threads(os.cpu_count() or 1)
    overrides = [f"fixed.precision={precision}"] + ([f"fixed.iterations={iterations}"] if iterations else [])
    config = load_settings(REPO / "configs" / "default.yaml", overrides).base_config()
    pair = builtin_pairs()[0]
    spectrograms = load_pair(pair.content, pair.style, config)
    space = evaluation_space(spectrograms.content, spectrograms.style, config.n_fft, config.hop)

    def trial() -> float:
        start = time.perf_counter()
        run_transfer(spectrograms, config, space=space)
        return time.perf_counter() - start

    available = kernels.library() is not None
    trial()  # warm-up: compiles the fused passes and the kernels
    on, off = [], []
    for i in range(repeats):
        order = ("on", "off") if i % 2 == 0 else ("off", "on")
        for which in order:
            if which == "on":
                on.append(trial())
            else:
                with kernels.turned_off():
                    off.append(trial())
    return {"machine": describe(), "precision": config.precision, "frames": int(spectrograms.content.shape[1]),
            "iterations": config.iterations, "filters": config.filters, "pair": pair.name,
            "kernels_available": available, "on": on, "off": off}


def row(label: str, r: dict) -> str:
    on, off = statistics.median(r["on"]), statistics.median(r["off"])
    saved = [b - a for a, b in zip(r["on"], r["off"])]
    share = statistics.median(saved) / off * 100
    return (f"| {label} | {r['precision']} | {r['kernels_available']} | {len(r['on'])} | {on:.2f} | {off:.2f} | "
            f"{statistics.median(saved):+.2f} | {share:+.1f} % | {min(saved):+.2f} .. {max(saved):+.2f} |")


def write_markdown(runs: list[tuple[str, dict]], command: str) -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    first = runs[0][1]
    lines = ["# The C kernels (musicstyle/kernels.py) on a whole trial", "",
             f"Command: `{command}` at commit {commit}.", "",
             f"A trial-sized run: the built-in pair `{first['pair']}` at configs/default.yaml's fixed settings "
             f"({first['frames']} frames, {first['filters']} filters, {first['iterations']} L-BFGS iterations), "
             "optimise + Griffin-Lim + fair measures, timed whole. Kernels on and off alternate in one process "
             "after a warm-up; other processes were loading the machine's cores at the same time, which the "
             "alternation spreads over both arms. 'saved' is off minus on per alternated pair (positive: "
             "the kernels are faster).", "",
             "| machine setting | precision | kernels built | pairs | median on (s) | median off (s) | "
             "median saved (s) | saved, share of a trial | saved, range (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [row(label, r) for label, r in runs]
    lines += ["", "Machines:"] + [f"- {label}: {r['machine']}" for label, r in runs]
    best = max(statistics.median([b - a for a, b in zip(r["on"], r["off"])]) / statistics.median(r["off"])
               for _, r in runs)
    verdict = "keep them" if best >= 0.10 else "remove them (torch's own ops run instead)"
    lines += ["", f"Decision by the issue's rule (keep only if they save >= 10 % of a trial): largest median "
              f"saving {best * 100:.1f} % of a trial, so {verdict}.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="alternated on/off pairs (default: %(default)s)")
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--iterations", type=int, help="L-BFGS iterations (default: the config's)")
    parser.add_argument("--all", action="store_true", help="native bf16 and AVX2 fp32; write the file")
    parser.add_argument("--out", default=str(REPO / "results" / "kernels-decision.md"))
    args = parser.parse_args()
    if not args.all:
        print(json.dumps(measure(args.repeats, args.precision, args.iterations)))
        return
    from musicstyle.io import write_text

    runs = []
    # AVX2: bfloat16 products are slow there, so runs take float32 (optimize.product_dtype falls back),
    # a path the kernels (bfloat16 only) never enter
    for label, env, precision in (("native", {}, "bf16"), ("AVX2 emulation", AVX2, "fp32")):
        command = [sys.executable, __file__, "--repeats", str(args.repeats), "--precision", precision]
        if args.iterations:
            command += ["--iterations", str(args.iterations)]
        done = subprocess.run(command, env=os.environ | env, capture_output=True, text=True, check=True)
        runs.append((label, json.loads(done.stdout.strip().splitlines()[-1])))
        print(row(label, runs[-1][1]), file=sys.stderr, flush=True)
        write_text(args.out, write_markdown(runs, "python benchmark/kernels_decision.py --all "
                                            f"--repeats {args.repeats}"))  # after each setting: partial results kept
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
