"""Do kernels.py's C kernels pay for themselves on a whole trial? The issue's rule: keep them only if
they save at least 10 % of a trial's time.

A trial-sized run: one pair of the built-in corpus at configs/default.yaml's fixed settings (its
bf16 precision, 173-frame clips, 120 L-BFGS iterations, 50 Griffin-Lim iterations), optimise +
reconstruct + measure, as one sweep trial does per pair. Runs with the kernels on and off
(`kernels.turned_off()`) alternate in one process after a warm-up, so that load from other
processes on the machine falls on both alike; the medians and the median of the per-pair
differences are reported. `--setting native` runs it natively (bf16), `--setting 'AVX2 emulation'`
under AVX2 emulation (ATEN_CPU_CAPABILITY=avx2, oneDNN and MKL limited to AVX2; there bfloat16
products are slow and runs take float32), each in a child process; the data go to
results/kernels-decision.json and the table and decision to results/kernels-decision.md.

    python benchmark/kernels_decision.py --setting native --setting 'AVX2 emulation' --repeats 3
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

AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "DNNL_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def measure(repeats: int, precision: str, iterations: int | None) -> dict:
    """Alternated on/off trial-sized runs in this process; seconds per run."""
    try:
        from musicstyle import kernels
    except ImportError:
        sys.exit("error: musicstyle/kernels.py was removed by this measurement's decision; check out the commit "
                 "results/kernels-decision.md names to measure again")
    from musicstyle.data.corpus import builtin_pairs
    from musicstyle.engine.metrics import evaluation_space
    from musicstyle.engine.transfer import load_pair, run_transfer
    from musicstyle.sweep.config import load_settings
    from musicstyle.util.machine import describe, limit_threads

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


def savings(r: dict) -> list[float]:
    """Seconds the kernels saved in each alternated pair (off minus on; positive: they are faster)."""
    return [b - a for a, b in zip(r["on"], r["off"])]


def row(label: str, r: dict) -> str:
    on, off, saved = statistics.median(r["on"]), statistics.median(r["off"]), savings(r)
    return (f"| {label} | {r['precision']} | {r['kernels_available']} | {len(r['on'])} | {on:.2f} | {off:.2f} | "
            f"{statistics.median(saved):+.2f} | {statistics.median(saved) / off * 100:+.1f} % | "
            f"{min(saved):+.2f} .. {max(saved):+.2f} |")


def keeps(r: dict) -> bool:
    """The issue's rule, with the noise of a shared machine: the kernels stay only where every pair shows
    a saving and the median saving is at least 10 % of the trial without them."""
    saved = savings(r)
    return min(saved) > 0 and statistics.median(saved) >= 0.10 * statistics.median(r["off"])


def write_markdown(runs: dict[str, dict], command: str) -> str:
    first = next(iter(runs.values()))
    lines = ["# The C kernels (musicstyle/kernels.py) on a whole trial", "",
             f"Command: `{command}`; measured at commit {first['commit']}.", "",
             f"A trial-sized run: the built-in pair `{first['pair']}` at configs/default.yaml's fixed settings "
             f"({first['frames']} frames, {first['filters']} filters, {first['iterations']} L-BFGS iterations), "
             "optimise + Griffin-Lim + fair measures, timed whole. Kernels on and off alternate in one process "
             "after a warm-up (on/off, then off/on, ...). Other helpers' jobs were loading this machine's two "
             "cores at the same time (load average at the start of each setting below); the alternation spreads "
             "that load over both arms, but single runs still vary by tens of percent, so the range of the "
             "per-pair savings is shown and a saving counts only where every pair shows one. 'saved' is off "
             "minus on per alternated pair (positive: the kernels are faster).", "",
             "| machine setting | precision | kernels built | pairs | median on (s) | median off (s) | "
             "median saved (s) | median saved, share of a trial | saved, range over pairs (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [row(label, r) for label, r in runs.items()]
    lines += ["", "Machines:"] + [f"- {label}: {r['machine']}; load average at start {r['load']:.1f}"
                                  for label, r in runs.items()]
    kept = [label for label, r in runs.items() if keeps(r)]
    verdict = (f"they save at least 10 % of a trial in every pair on: {', '.join(kept)}; keep them" if kept else
               "no setting shows a saving of 10 % of a trial (in every alternated pair), so remove them; "
               "torch's own ops run instead")
    lines += ["", f"Decision by the issue's rule (keep only if they save >= 10 % of a trial): {verdict}.", ""]
    return "\n".join(lines)


SETTINGS = {  # AVX2: bfloat16 products are slow there, so runs take float32, a path the kernels never enter
    "native": ({}, "bf16"),
    "AVX2 emulation": (AVX2, "fp32"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="alternated on/off pairs (default: %(default)s)")
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--iterations", type=int, help="L-BFGS iterations (default: the config's)")
    parser.add_argument("--setting", choices=tuple(SETTINGS), action="append",
                        help="measure this setting in a child process, keep its data, rewrite the file (repeatable)")
    parser.add_argument("--data", default=str(REPO / "results" / "kernels-decision.json"))
    parser.add_argument("--out", default=str(REPO / "results" / "kernels-decision.md"))
    args = parser.parse_args()
    if not args.setting:
        print(json.dumps(measure(args.repeats, args.precision, args.iterations)))
        return
    from musicstyle.util.io import write_text

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    for label in args.setting:
        env, precision = SETTINGS[label]
        command = [sys.executable, __file__, "--repeats", str(args.repeats), "--precision", precision]
        if args.iterations:
            command += ["--iterations", str(args.iterations)]
        load = os.getloadavg()[0]
        done = subprocess.run(command, env=os.environ | env, capture_output=True, text=True, check=True)
        result = json.loads(done.stdout.strip().splitlines()[-1]) | {"commit": commit, "load": load}
        data = json.loads(Path(args.data).read_text()) if Path(args.data).exists() else {}
        data[label] = result  # read again just before writing: settings may be measured in parallel
        write_text(args.data, json.dumps(data, indent=1))
        write_text(args.out, write_markdown({k: data[k] for k in SETTINGS if k in data},
                                            "python benchmark/kernels_decision.py --setting native "
                                            f"--setting 'AVX2 emulation' --repeats {args.repeats}"))
        print(row(label, result), file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
