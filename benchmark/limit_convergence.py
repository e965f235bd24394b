"""Finite-N losses against the infinite-filter limit at the base shapes (docs/limit.md).

    python benchmark/limit_convergence.py [--paper-dir DIR] [--seeds 5] [--activations relu,elu]

For each activation and N in --filters, --seeds networks of N filters drawn with the limit's variance
give content and style losses on the limit's scale (content * 4096 / N, style * (4096 / N)^2) and their
gradients at one spectrogram, x = 0.6 content + 0.4 style + 0.05 noise (seeded), a point between the
two that an optimisation passes near. Against the limit (`--filters inf`): the ratio's mean and
spread over seeds, and the gradients' cosine similarity. Writes results/limit/convergence.md, a
log-log plot of |ratio - 1| against N, and the raw numbers as CSV. The paper's songs come from
--paper-dir or MUSICSTYLE_PAPER_SONGS; without them, generated audio (the report says which).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from musicstyle.config import make_config
from musicstyle.data.paper_songs import PAPER_SONGS_ENV, SONGS
from musicstyle.engine.limit.check import cosine, finite_point, limit_point
from musicstyle.util.io import save_figure, write_csv, write_text
from musicstyle.util.machine import cpu_model

REPO = Path(__file__).resolve().parents[1]


def machine() -> str:
    """CPU model, the ISA flags that matter, cores and torch's threads."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    isa = ", ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in flags) or "none listed"
    return (f"{cpu_model()} ({isa}), {os.cpu_count()} cores, torch {torch.__version__} with "
            f"{torch.get_num_threads()} threads, ATen CPU capability {torch.backends.cpu.get_cpu_capability()}")


def commit() -> str:
    """HEAD, and whether code or docs differ from it (results/, which the scripts write, not counted)."""
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no",
                                "--", ".", ":!results"],
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "")
    except OSError:
        return "unknown"


def load_pair(paper_dir: str | None, frames: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(content, style) (1025, frames) log-magnitudes: the paper's songs where given, else generated audio."""
    config = make_config({"frames": frames})
    folder = paper_dir or os.environ.get("MUSICSTYLE_PAPER_SONGS")
    if folder:
        from musicstyle.data.paper_songs import paper_song_paths
        from musicstyle.engine.transfer import load_pair as load

        pair = load(*paper_song_paths(folder), config)
        source = f"the paper's songs (imperial / usa, first {pair.content.shape[1]} frames)"
        return torch.from_numpy(pair.content), torch.from_numpy(pair.style), source
    from musicstyle.data.tones import tone_mix
    from musicstyle.engine.spectrogram import log_magnitude

    seconds = frames * config.hop / config.sample_rate_hz + 0.1
    specs = [log_magnitude(tone_mix(seconds, config.sample_rate_hz, f, s), config.n_fft, config.hop)[:, :frames]
             for f, s in (((220.0, 330.0, 440.0), 1), ((150.0, 600.0, 1200.0), 2))]
    return torch.from_numpy(specs[0]), torch.from_numpy(specs[1]), "generated tone mixes (paper songs not given)"


def measure(activation: str, content: torch.Tensor, style: torch.Tensor, filter_counts: list[int], seeds: int
            ) -> list[dict]:
    config = make_config({"activation": activation})
    noise = torch.randn(content.shape, generator=torch.Generator().manual_seed(5))
    spec = 0.6 * content + 0.4 * style + 0.05 * noise
    start = time.perf_counter()
    exact = limit_point(content, style, spec, config)
    print(f"{activation}: limit content {exact.content:.6g}, style {exact.style:.6g} "
          f"({time.perf_counter() - start:.1f} s)", flush=True)
    rows = []
    for filters in filter_counts:
        for seed in range(seeds):
            start = time.perf_counter()
            p = finite_point(content, style, spec, config, filters, seed)
            rows.append({"activation": activation, "filters": filters, "seed": seed,
                         "content_ratio": p.content / exact.content, "style_ratio": p.style / exact.style,
                         "content_grad_cosine": cosine(p.content_grad, exact.content_grad),
                         "style_grad_cosine": cosine(p.style_grad, exact.style_grad),
                         "limit_content": exact.content, "limit_style": exact.style})
            print(f"  N {filters} seed {seed}: ratios {rows[-1]['content_ratio']:.4f} {rows[-1]['style_ratio']:.4f}"
                  f" ({time.perf_counter() - start:.1f} s)", flush=True)
    return rows


def summary_table(frame: pd.DataFrame) -> str:
    lines = ["| activation | N | content ratio mean ± std | style ratio mean ± std | content grad cos | "
             "style grad cos |", "|---|---|---|---|---|---|"]
    for (activation, filters), g in frame.groupby(["activation", "filters"]):
        lines.append(f"| {activation} | {filters} | {g.content_ratio.mean():.4f} ± {g.content_ratio.std():.4f} | "
                     f"{g.style_ratio.mean():.4f} ± {g.style_ratio.std():.4f} | "
                     f"{g.content_grad_cosine.mean():.4f} | {g.style_grad_cosine.mean():.4f} |")
    return "\n".join(lines)


def slopes(frame: pd.DataFrame) -> str:
    """Fitted log-log slopes of the spread (std over seeds) and of 1 - cosine against N."""
    lines = []
    for activation, g in frame.groupby("activation"):
        stats = g.groupby("filters").agg(c=("content_ratio", "std"), s=("style_ratio", "std"),
                                         gc=("content_grad_cosine", "mean"), gs=("style_grad_cosine", "mean"))
        logn = np.log(stats.index.to_numpy(float))
        fit = {k: np.polyfit(logn, np.log(v), 1)[0] for k, v in (("content spread", stats.c), ("style spread", stats.s),
                                                                 ("1 - content cos", 1 - stats.gc),
                                                                 ("1 - style cos", 1 - stats.gs))}
        lines.append(f"- {activation}: " + ", ".join(f"{k} ~ N^{v:.2f}" for k, v in fit.items()))
    return "\n".join(lines)


def plot(frame: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, term in zip(axes, ("content", "style")):
        for activation, g in frame.groupby("activation"):
            err = (g[f"{term}_ratio"] - 1).abs()
            ax.scatter(g.filters, err, s=10, alpha=0.5)
            ax.plot(*zip(*sorted((n, v.mean()) for n, v in err.groupby(g.filters))), marker="o", label=activation)
        n = np.array(sorted(frame.filters.unique()), float)
        first = (frame[frame.filters == n[0]][f"{term}_ratio"] - 1).abs().mean()
        ax.plot(n, first * np.sqrt(n[0] / n), "k--", lw=1, label="∝ 1/√N")
        ax.set(xscale="log", yscale="log", xlabel="filters N", title=f"{term}: |finite / limit - 1|")
        ax.legend()
    axes[0].set_ylabel("relative error (dots: seeds, line: mean)")
    save_figure(fig, path)
    plt.close(fig)


def reduced(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[str]:
    """A line naming the settings that differ from the script's defaults (a run cut short for time)."""
    changed = [f"--{k.replace('_', '-')} {getattr(args, k)} (default {parser.get_default(k)})"
               for k in ("seeds", "filters", "activations", "frames") if getattr(args, k) != parser.get_default(k)]
    return [f"Reduced from the defaults: {'; '.join(changed)}.  "] if changed else []


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paper-dir", help=f"folder with {SONGS} (default: ${PAPER_SONGS_ENV})")
    parser.add_argument("--activations", default="relu,elu")
    parser.add_argument("--filters", default="256,512,1024,2048,4096,8192,16384")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--frames", type=int, default=430)
    parser.add_argument("--out", default=str(REPO / "results" / "limit"))
    args = parser.parse_args(argv)
    code = commit()  # at the start: the code that runs, even if the tree changes while it does
    torch.manual_seed(0)
    content, style, source = load_pair(args.paper_dir, args.frames)
    filter_counts = [int(v) for v in args.filters.split(",")]
    start = time.perf_counter()
    rows = [row for activation in args.activations.split(",")
            for row in measure(activation, content, style, filter_counts, args.seeds)]
    seconds = time.perf_counter() - start
    frame = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "convergence.csv", frame)
    plot(frame, out / "convergence.png")
    command = "python benchmark/limit_convergence.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = "\n".join([
        "# Finite filters against the infinite-filter limit", "",
        f"Command: `{command.strip()}`  ",
        f"Machine: {machine()}  ",
        "Precision: float32 products (finite networks and the limit's frames x frames products), kernels and "
        "sums in float64  ",
        f"Code: commit {code}  ",
        *reduced(args, parser),
        f"Input: {source}; {content.shape[0]} bins x {content.shape[1]} frames, width 11, gain sqrt(2); "
        f"{args.seeds} network seeds per N; {seconds:.0f} s in all.", "",
        "Ratios are the finite network's loss on the limit's scale (content x 4096 / N, style x (4096 / N)^2, "
        "filters with the 4096-filter Glorot variance) over the limit's (`--filters inf`), at x = 0.6 content + "
        "0.4 style + 0.05 noise. Cosines: the finite network's gradient against the limit's.", "",
        summary_table(frame), "",
        "Log-log slopes against N (1/sqrt(N) is -0.5; 1 - cosine ~ 1/N is -1):", "",
        slopes(frame), "",
        "![relative error against N](convergence.png)", "",
        "Raw numbers: convergence.csv.", "",
    ])
    write_text(out / "convergence.md", text)
    print(f"wrote {out / 'convergence.md'}")


if __name__ == "__main__":
    main()
