"""Only the infinite-filter runs of `python -m musicstyle reproduce` (its group 'limit'), on the paper's songs.

    python benchmark/limit_paper_rows.py [--paper-dir DIR] [--activations relu,leaky_relu,elu,selu]

Runs reproduce.plan_runs' 'limit' group (every activation at both weightings, filters inf) through
reproduce.run_all into results/limit/paper-rows/runs.csv (a restart skips what is done), and writes
results/limit/paper-rows.md: each cell's final loss, its parts and the fair measures, beside the
4096-filter runs of the same cell in results/paper/runs.csv where that file has them (mean ± std over
its seeds; its own machine and precision are in results/paper/report.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from musicstyle.config import TransferConfig
from musicstyle.data.paper_songs import PAPER_SONGS_ENV, SONGS
from musicstyle.engine.limit.kernels import LOSS_SCALE_NOTE
from musicstyle.paper.runs import WEIGHTS, plan_runs, run_all
from musicstyle.util.io import write_text

REPO = Path(__file__).resolve().parents[1]


def finite_cells(path: Path) -> pd.DataFrame:
    """Mean ± std per (activation, alpha, beta) of the 4096-filter rows and ablation runs in runs.csv."""
    if not path.exists():
        return pd.DataFrame()
    frame = pd.read_csv(path)
    frame = frame[frame["group"].isin(["rows", "ablation"]) & (frame["state"] == "ok")]
    return frame.groupby(["activation", "alpha", "beta"]).agg(
        loss_mean=("final_loss", "mean"), loss_std=("final_loss", "std"), seeds=("final_loss", "count"),
        quality=("quality_score", "mean"), quality_std=("quality_score", "std"), precision=("precision", "first"))


def table(frame: pd.DataFrame, finite: pd.DataFrame) -> str:
    names = {weights: name for name, weights in WEIGHTS.items()}
    lines = ["| activation | weights | limit final loss | content part | style part | limit quality | "
             "style dist. | content dist. | 4096 final loss (results/paper) | 4096 quality | iterations | "
             "s/eval |", "|" + "---|" * 12]
    for _, r in frame.iterrows():
        key = (r.activation, r.alpha, r.beta)
        f = finite.loc[key] if len(finite) and key in finite.index else None
        finite_loss = f"{f.loss_mean:.4g} ± {f.loss_std:.2g} ({int(f.seeds)} seeds)" if f is not None else "-"
        finite_quality = f"{f.quality:.3f} ± {f.quality_std:.2g}" if f is not None else "-"
        if r.state != "ok":
            lines.append(f"| {r.activation} | {names.get((r.alpha, r.beta))} | failed: {r.reason} |" + " |" * 9)
            continue
        lines.append(f"| {r.activation} | {names.get((r.alpha, r.beta))} | {r.final_loss:.4g} | {r.content_loss:.4g} | "
                     f"{r.style_loss:.4g} | {r.quality_score:.3f} | {r.style_distance:.3f} | "
                     f"{r.content_distance:.3f} | {finite_loss} | {finite_quality} | {int(r.iterations_done)} | "
                     f"{r.seconds_per_evaluation:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paper-dir", default=os.environ.get("MUSICSTYLE_PAPER_SONGS"),
                        help=f"folder with {SONGS} (default: ${PAPER_SONGS_ENV})")
    parser.add_argument("--activations", default="relu,leaky_relu,elu,selu")
    parser.add_argument("--weights", default="both", choices=("both", "paper", "blog"),
                        help="which weighting's cells to run (the table shows every cell run so far)")
    parser.add_argument("--workers", type=int, default=1, help="processes running at once (reproduce.run_all)")
    parser.add_argument("--out", default=str(REPO / "results" / "limit"))
    args = parser.parse_args(argv)
    if not args.paper_dir:
        parser.error("give --paper-dir or set MUSICSTYLE_PAPER_SONGS")
    from limit_convergence import commit, machine

    wanted = args.activations.split(",")
    runs = [r for r in plan_runs(1, 1) if r.group == "limit" and r.settings["activation"] in wanted
            and (args.weights == "both" or r.label.split(" @ ")[1].startswith(args.weights))]
    out = Path(args.out)
    base = TransferConfig()
    start = time.perf_counter()
    run_all(args.paper_dir, out / "paper-rows", base, runs, workers=args.workers)
    frame = pd.read_csv(out / "paper-rows" / "runs.csv")  # every cell run so far, this time's and earlier
    frame = frame.sort_values(["alpha", "activation"], ascending=[False, True])
    command = "python benchmark/limit_paper_rows.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = "\n".join([
        "# The paper's cells with infinitely many filters", "",
        f"Command: `{command.strip()}` ({time.perf_counter() - start:.0f} s this time; runs already in "
        "paper-rows/runs.csv are not re-run)  ",
        f"Machine: {machine()}  ",
        f"Precision: {', '.join(sorted(set(frame.get('precision_used', pd.Series(['?'])).dropna())))} "
        f"(the limit always runs float32; float64 fallbacks: {int(frame['float64_fallback'].fillna(0).sum())})  ",
        f"Code: commit {commit()}  ",
        f"Settings: the base paper's (L-BFGS-B {base.iterations} iterations, {base.frames} frames, Griffin-Lim "
        f"{base.griffin_lim_iters}), seed 0, torch threads {torch.get_num_threads()}.", "",
        f"Loss scale: {LOSS_SCALE_NOTE}. The 4096-filter columns are the rows and ablation runs of "
        "results/paper/runs.csv (see results/paper/report.md for their machine and precision).", "",
        table(frame, finite_cells(REPO / "results" / "paper" / "runs.csv")), "",
        "Raw: paper-rows/runs.csv.", "",
    ])
    write_text(out / "paper-rows.md", text)
    print(f"wrote {out / 'paper-rows.md'}")


if __name__ == "__main__":
    main()
