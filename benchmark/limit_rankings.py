"""Do configurations rank the same at 4096 filters (per network seed) and at `--filters inf`?

    python benchmark/limit_rankings.py [--configs 10] [--pairs 3] [--seeds 3] [--out results/limit]

Draws --configs configurations from the default search space (alpha, beta log-uniform as
configs/default.yaml; activation relu or leaky_relu only: the quadrature activations are slow in the
limit, docs/limit.md) and runs each on the first --pairs pairs of the rendered corpus (docs/truth.md)
at filters 4096 (bf16 products where the CPU has them) and at filters inf (float32), each with
--seeds seeds. A seed s sets the run's filters (4096 only) and its start noise (randn * 1e-3); the
Griffin-Lim phase seed is fixed at 0 for every run, and the truth's references use the same, so the
only differences between a configuration's runs are the network and the start noise. At inf the
seeds differ only in the start noise: their spread is the floor that the 4096 seeds add network
noise to.

Each configuration's score is its mean over pairs of truth_score and of the fair quality_score
(both: lower is better). The report gives Spearman's rho between the configuration rankings of every
two (engine, seed) runs, how often the best configuration changes between seeds, and a simulated
sweep: each configuration evaluated once at a random seed (as a sweep's trials are), and how often
its best trial is the configuration that is best on the mean over seeds.

runs.csv is written after every run; a restart skips what it holds (--report-only rewrites the report).
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from musicstyle.config import TransferConfig, make_config
from musicstyle.data.corpus import rendered_subset
from musicstyle.engine.metrics import fair_measures
from musicstyle.engine.optimize import bf16_supported, optimize_spectrogram
from musicstyle.engine.reconstruct import griffin_lim
from musicstyle.engine.spectrogram import magnitude_from_log
from musicstyle.reports.rankings import SCORES, best_choice, config_scores, rank_agreement
from musicstyle.truth.command import ALPHA_RANGE, BETA_RANGE, PairData
from musicstyle.util.io import save_figure, write_csv, write_text
from musicstyle.util.machine import describe, limit_threads

REPO = Path(__file__).resolve().parents[1]

ACTIVATIONS = ("relu", "leaky_relu")
ENGINES = ((4096, "bf16"), (math.inf, "fp32"))
GRIFFIN_LIM_SEED = 0


def commit() -> str:
    """HEAD and whether the code differs from it; taken once at the start (the code this process imported)."""
    from limit_convergence import commit as git_commit

    return git_commit()


CODE = {"commit": "unknown"}


def draw_configs(count: int, seed: int) -> list[dict]:
    """`count` configurations: alpha, beta log-uniform over the search space's ranges, relu or leaky_relu."""
    rng = np.random.default_rng(seed)
    return [{"config_id": i, "alpha": float(math.exp(rng.uniform(*np.log(ALPHA_RANGE)))),
             "beta": float(math.exp(rng.uniform(*np.log(BETA_RANGE)))),
             "activation": ACTIVATIONS[int(rng.integers(len(ACTIVATIONS)))]} for i in range(count)]


def plan(configs: list[dict], pairs: list[str], seeds: int) -> list[dict]:
    """Every run, seed by seed (both engines), so a run cut short holds whole seeds."""
    return [c | {"run_id": f"c{c['config_id']:02d}-{'inf' if math.isinf(f) else f}-s{s}-{p}", "engine":
                 "inf" if math.isinf(f) else str(f), "filters": f, "precision": prec, "seed": s, "pair": p}
            for s in range(seeds) for f, prec in ENGINES for c in configs for p in pairs]


def run_one(run: dict, data: PairData, base: TransferConfig) -> dict:
    """Optimise with the run's seed (filters, start noise), Griffin-Lim with the fixed phase seed, score."""
    config = base.replace(alpha=run["alpha"], beta=run["beta"], activation=run["activation"],
                          filters=run["filters"], precision=run["precision"], seed=run["seed"])
    scored = config.replace(seed=GRIFFIN_LIM_SEED)  # the truth's references: same Griffin-Lim as the output
    start = time.perf_counter()
    spectrograms, space, reference = data.get(run["pair"], scored)
    result = optimize_spectrogram(spectrograms.content, spectrograms.style, config)
    magnitude = magnitude_from_log(result.spectrogram)
    audio = griffin_lim(magnitude, config.n_fft, config.hop, config.griffin_lim_iters, GRIFFIN_LIM_SEED)
    if math.isinf(config.filters):
        used = "fp64" if result.float64_fallback else "fp32"
    else:
        used = "bf16" if config.precision == "bf16" and bf16_supported("cpu") else "fp32"
        used = "fp64" if result.float64_fallback else used
    return {k: v for k, v in run.items() if k != "filters"} | {
        "precision_used": used, "final_loss": result.final_loss, "iterations_done": result.iterations,
        **fair_measures(audio, space, magnitude).to_dict(), **reference.measures(audio),
        "seconds": time.perf_counter() - start, "commit": CODE["commit"]}


def plot(scores: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SCORES), figsize=(11, 4.5))
    for ax, score in zip(axes, SCORES):
        table = scores[score].unstack("config_id")
        limit = table.loc["inf"].mean(axis=0)
        for (engine, seed), row in table.iterrows():
            marker = "o" if engine == "inf" else "x"
            ax.scatter(limit[row.index], row, marker=marker, s=28, alpha=0.8, label=f"{engine} seed {seed}")
        lo, hi = float(np.nanmin(table.to_numpy())), float(np.nanmax(table.to_numpy()))
        ax.plot([lo, hi], [lo, hi], "k:", lw=1)
        ax.set(xlabel=f"{score} at filters inf (mean over seeds)", ylabel=f"{score} of the run",
               title=f"{score}: each configuration, mean over pairs")
        ax.legend(fontsize=7)
    save_figure(fig, path)
    plt.close(fig)


def matrix_md(corr: pd.DataFrame) -> str:
    lines = ["| | " + " | ".join(corr.columns) + " |", "|---" * (len(corr.columns) + 1) + "|"]
    lines += [f"| {i} | " + " | ".join(f"{v:+.2f}" for v in row) + " |" for i, row in corr.iterrows()]
    return "\n".join(lines)


def summary_lines(corr: pd.DataFrame) -> list[str]:
    """Mean rho within the 4096 seeds, within the inf seeds, and between the two engines."""
    names = list(corr.columns)
    groups = {"4096 vs 4096 (other seed)": [(a, b) for a, b in itertools.combinations(names, 2)
                                             if a.startswith("4096") and b.startswith("4096")],
              "inf vs inf (other start noise)": [(a, b) for a, b in itertools.combinations(names, 2)
                                                  if a.startswith("inf") and b.startswith("inf")],
              "inf vs 4096": [(a, b) for a in names for b in names if a.startswith("inf") and b.startswith("4096")]}
    out = []
    for label, pairs in groups.items():
        if pairs:
            values = [corr.loc[a, b] for a, b in pairs]
            out.append(f"- {label}: mean rho {np.mean(values):+.2f} (min {np.min(values):+.2f}, "
                       f"max {np.max(values):+.2f}, {len(values)} pairs of runs)")
    return out


def report(runs: pd.DataFrame, configs: list[dict], args: argparse.Namespace, out: Path, seconds: float) -> None:
    scores = config_scores(runs)
    plot(scores, out / "rankings.png")
    first = runs.iloc[0]
    sections = []
    for score in SCORES:
        corr = rank_agreement(scores, score)
        choice = best_choice(scores, score)
        lines = [f"### By {score}", "", f"Spearman rho of the configuration rankings ({corr.shape[0]} runs of "
                 f"{scores[score].unstack('config_id').dropna(axis=1).shape[1]} configurations):", "",
                 matrix_md(corr), "", *summary_lines(corr), ""]
        for engine, c in choice.items():
            lines.append(f"- {engine}: best configuration per seed {c['best_per_seed']} (best on the mean over "
                         f"seeds: {c['best_on_mean']}); a simulated sweep (each configuration once, at a random "
                         f"seed) picks that one {100 * c['sweep_hits']:.0f} % of the time, and its pick is on "
                         f"average {c['sweep_excess']:.3f} worse on the mean over seeds; seed spread (std over "
                         f"seeds, mean over configurations) {c['seed_std']:.3f} against a spread between "
                         f"configurations of {c['config_std']:.3f}; pairs of configurations whose order "
                         f"changes between seeds: {c['flips'][0]} of {c['flips'][1]}")
        sections += lines + [""]
    config_table = pd.DataFrame(configs).set_index("config_id")
    means = scores.groupby(["engine", "config_id"]).mean().unstack("engine")
    means.columns = [f"{s} {e}" for s, e in means.columns]
    table = config_table.join(means)
    lines_cfg = ["| id | alpha | beta | activation | " + " | ".join(means.columns) + " |",
                 "|---" * (4 + len(means.columns)) + "|"]
    lines_cfg += [f"| {i} | {r.alpha:.3g} | {r.beta:.3g} | {r.activation} | "
                  + " | ".join(f"{r[c]:.3f}" for c in means.columns) + " |" for i, r in table.iterrows()]
    precisions = ", ".join(f"{e}: {', '.join(sorted(g.precision_used.unique()))}"
                           for e, g in runs.groupby("engine"))
    fallbacks = int((runs.precision_used == "fp64").sum())
    text = "\n".join([
        "# Rankings at 4096 filters and in the limit", "",
        f"Command: `python benchmark/limit_rankings.py {' '.join(a for a in sys.argv[1:] if a != '--report-only')}`"
        + (" (this report rewritten from rankings.csv by --report-only)" if args.report_only else "") + "  ",
        f"Machine: {describe()}  ",
        f"Precision used (products): {precisions}" + (f" ({fallbacks} runs retried in float64 by engine/optimize.py)"
                                                       if fallbacks else "") + "  ",
        f"Code: commit {', '.join(sorted(runs['commit'].unique()))}  ",
        f"Runs: {len(runs)} ({runs.pair.nunique()} rendered pairs: {', '.join(sorted(runs.pair.unique()))}; "
        f"{len(configs)} configurations; seeds {sorted(runs.seed.unique().tolist())}); {first.iterations_planned} "
        f"L-BFGS iterations, {args.clip_seconds} s clips, Griffin-Lim {args.griffin_lim_iters} iterations "
        f"(phase seed {GRIFFIN_LIM_SEED} for every run); run time {runs.seconds.sum() / 60:.1f} min summed over "
        f"runs ({runs.groupby('engine').seconds.sum().div(60).round(1).to_dict()} by engine)"
        + ("." if args.report_only else f", this invocation {seconds / 60:.1f} min wall."), "",
        "Configurations: alpha and beta log-uniform over configs/default.yaml's search ranges, activation relu "
        "or leaky_relu (the quadrature activations elu, selu are slow in the limit: docs/limit.md). A seed sets "
        "the filters (4096 only) and the start noise; at inf the seeds differ in the start noise only. Scores: "
        "mean over the pairs of truth_score (docs/truth.md) and of the fair quality_score; lower is better.", "",
        *sections,
        "## Configurations (mean over seeds and pairs)", "", *lines_cfg, "",
        "![each configuration's score at 4096 and inf against inf](rankings.png)", "",
        "Raw numbers: rankings.csv (one row per run).", ""])
    write_text(out / "rankings.md", text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=10)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--clip-seconds", type=float, default=2.0)
    parser.add_argument("--griffin-lim-iters", type=int, default=30)
    parser.add_argument("--design-seed", type=int, default=0, help="seed of the configurations' draw")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(REPO / "results" / "limit"))
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    limit_threads(args.threads)
    CODE["commit"] = commit()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "rankings.csv"
    configs = draw_configs(args.configs, args.design_seed)
    pairs = rendered_subset(f"rendered:{args.pairs}")
    runs = plan(configs, [p.name for p in pairs], args.seeds)
    done = pd.read_csv(csv, dtype={"engine": str}) if csv.exists() else pd.DataFrame()  # "4096", "inf"
    records = done.to_dict("records") if len(done) else []
    finished = {r["run_id"] for r in records}
    base = make_config({"offset_seconds": 0.0, "clip_seconds": args.clip_seconds, "frames": None,
                        "iterations": args.iterations, "griffin_lim_iters": args.griffin_lim_iters,
                        "device": "cpu"})
    start = time.perf_counter()
    todo = [] if args.report_only else [r for r in runs if r["run_id"] not in finished]
    data = PairData(pairs)
    for index, run in enumerate(todo, 1):
        records.append(run_one(run, data, base) | {"iterations_planned": args.iterations})
        write_csv(csv, pd.DataFrame(records))
        r = records[-1]
        elapsed = time.perf_counter() - start
        print(f"{index}/{len(todo)} {run['run_id']}: truth {r['truth_score']:.3f} quality {r['quality_score']:.3f} "
              f"({r['seconds']:.1f} s; ETA {elapsed / index * (len(todo) - index) / 60:.1f} min)", flush=True)
    frame = pd.DataFrame(records)
    if len(frame):
        report(frame, configs, args, out, time.perf_counter() - start)
        print(f"wrote {out / 'rankings.md'}")


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
