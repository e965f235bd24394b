"""Reproduce and extend the paper's comparison (559 vs 81.79) on the base paper's two songs.

Three groups of runs, all on the same pair with the base paper's settings unless a run says otherwise:

- rows:     the table's four rows as printed (base paper's L-BFGS, gain sqrt(2), LeakyReLU slope 0.3);
- variants: the details the blog leaves open, one at a time (optimiser, init gain, LeakyReLU slope,
            iterations, filters, pooling);
- ablation: every activation at both weight settings, so activation and weights are separated;
- limit:    every such cell with infinitely many filters (`--filters inf`, limit.py; docs/limit.md).

Every run also gets the fair measures (`metrics.py`), which do not depend on the run's weights.
Results go to `runs.csv` after each run (a restart skips what is done), then `report.md` and plots.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .config import TransferConfig
from .errors import MusicStyleError
from .io import save_figure, write_csv, write_text
from .machine import describe, limit_threads
from .paper import BASE_ROW, PAPER_ROWS, PaperRow, paper_song_paths
from .progress import eta
from .report import mean_std
from .transfer import load_pair, run_transfer

ACTIVATIONS = ("relu", "leaky_relu", "elu", "selu")
WEIGHTS = {"paper (alpha 1e-2, beta 1)": (1e-2, 1.0), "blog (alpha 1e-3, beta 10)": (1e-3, 10.0)}
BLOG_LEAKY = PAPER_ROWS[1]
SHOWN = {"std_digits": 2, "empty": "failed"}  # the report's mean ± std cells


@dataclass(frozen=True)
class Run:
    """One optimisation: which group and label it reports under, its settings and seed."""

    group: str
    label: str
    row: str  # the paper row it varies, or "" for ablation cells
    settings: dict[str, Any] = field(hash=False)
    seed: int = 0
    keep_audio: bool = field(default=False, compare=False)  # write its output under audio/ (listen_paper.py)

    @property
    def run_id(self) -> str:
        return f"{self.group}|{self.label}|{self.row}|seed{self.seed}"


def plan_runs(seeds: int, variant_seeds: int, quick: bool = False) -> list[Run]:
    """The list of runs: rows and ablation over `seeds` seeds, variants over `variant_seeds`."""
    runs: list[Run] = []
    for row in PAPER_ROWS:
        runs += [Run("rows", row.name, row.name, row.settings, s, keep_audio=s == 0) for s in range(seeds)]
    for name, (alpha, beta) in WEIGHTS.items():
        for activation in ACTIVATIONS:
            settings = {"activation": activation, "alpha": alpha, "beta": beta}
            label = f"{activation} @ {name}"
            if any(r.settings | {"lr": 0} == settings | {"lr": 0} for r in PAPER_ROWS):
                continue  # this cell is one of the rows: the report reuses those runs
            runs += [Run("ablation", label, "", settings, s) for s in range(seeds)]
    variants: list[tuple[str, PaperRow, dict[str, Any]]] = []
    for row in PAPER_ROWS:
        variants.append(("optimizer adam (table's learning rate)", row, {"optimizer": "adam"}))
        variants.append(("init gain 1 (Keras glorot_normal)", row, {"init_gain": 1.0}))
    for slope in (0.01, 0.2):
        variants.append((f"leaky slope {slope:g}", BLOG_LEAKY, {"leaky_slope": slope}))
    for row in (BASE_ROW, BLOG_LEAKY):
        for iterations in (100, 1000):
            variants.append((f"iterations {iterations}", row, {"iterations": iterations}))
        variants.append(("adam, 1000 iterations", row, {"optimizer": "adam", "iterations": 1000}))
        for filters in (2048, 1024):
            variants.append((f"filters {filters}", row, {"filters": filters}))
        variants.append(("max pooling 2", row, {"pooling": 2}))
    for label, row, change in variants:
        runs += [Run("variants", label, row.name, row.settings | change, s) for s in range(variant_seeds)]
    for name, (alpha, beta) in WEIGHTS.items():  # every cell in the infinite-filter limit (limit.py)
        for activation in ACTIVATIONS:
            settings = {"activation": activation, "alpha": alpha, "beta": beta, "filters": math.inf}
            runs += [Run("limit", f"{activation} @ {name}, filters inf", "", settings, s) for s in range(variant_seeds)]
    if quick:  # the four rows once, one ablation cell, one variant: a smoke test of the whole report
        first_ablation = next(r for r in runs if r.group == "ablation")
        first_variant = next(r for r in runs if r.group == "variants")
        runs = [r for r in runs if (r.group == "rows" and r.seed == 0) or r in (first_ablation, first_variant)]
    return runs


def run_one(run: Run, pair, base: TransferConfig, out_dir: Path) -> dict[str, Any]:
    """Run one optimisation; a failure becomes a row with its reason, not an exception.

    The base row's first seed also keeps its audio and a spectrogram figure in `out_dir`.
    """
    config = base.replace(**run.settings, seed=run.seed)
    record: dict[str, Any] = {"run_id": run.run_id, "group": run.group, "label": run.label, "row": run.row,
                              "seed": run.seed, **{k: getattr(config, k) for k in (
                                  "activation", "alpha", "beta", "optimizer", "lr", "init_gain", "leaky_slope",
                                  "iterations", "filters", "pooling", "precision")}}
    record["machine"] = describe()
    start = time.perf_counter()
    try:
        result = run_transfer(pair, config)
    except MusicStyleError as err:
        return record | {"state": "failed", "reason": str(err), "seconds": time.perf_counter() - start}
    if run.group == "rows" and run.row == BASE_ROW.name and run.seed == 0:
        from .audio import write_wav
        from .report import plot_spectrograms

        write_wav(out_dir / "base_row.wav", result.audio, config.sample_rate_hz)
        plot_spectrograms({"content (imperial.mp3)": pair.content, "style (usa.mp3)": pair.style,
                           f"result (base row, seed 0, final loss {result.optimization.final_loss:.1f})":
                           result.optimization.spectrogram},
                          out_dir / "base_row_spectrograms.png", config.sample_rate_hz, config.hop,
                          title="Base paper's settings on its two songs")
    if run.keep_audio:
        from .listen_paper import keep_audio

        record["audio"] = keep_audio(out_dir, run, result.audio, result.optimization.spectrogram,
                                     config.sample_rate_hz)
    summary = result.summary()
    summary.pop("config")
    summary["iterations_done"] = summary.pop("iterations")
    return record | summary | {"state": "ok", "reason": "", "seconds": time.perf_counter() - start}


_worker_pair = None  # each worker process loads the pair once


def _start_worker(paper_dir: str, base: TransferConfig, threads: int) -> None:
    global _worker_pair
    limit_threads(threads)
    _worker_pair = load_pair(*paper_song_paths(paper_dir), base)


def _run_in_worker(run: Run, base: TransferConfig, out_dir: Path) -> dict[str, Any]:
    return run_one(run, _worker_pair, base, out_dir)


def run_all(paper_dir: str | Path, out_dir: str | Path, base: TransferConfig, runs: list[Run],
            workers: int = 1) -> pd.DataFrame:
    """Run what `runs.csv` in `out_dir` does not have yet, saving after each run; return all rows.

    With `workers` > 1 the runs go to that many processes (each with cores / workers threads): worth it
    on a GPU, whose runs leave the card mostly idle, or on a machine with many cores.
    """
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed

    out_dir = Path(out_dir)
    csv = out_dir / "runs.csv"
    done = pd.read_csv(csv) if csv.exists() else pd.DataFrame()
    finished = set(done["run_id"]) if len(done) else set()
    todo = [r for r in runs if r.run_id not in finished]
    todo.sort(key=lambda r: -r.settings.get("iterations", base.iterations))  # longest first packs workers best
    records = done.to_dict("records") if len(done) else []
    start = time.perf_counter()

    def record_done(index: int, run: Run, record: dict[str, Any]) -> None:
        records.append(record)
        write_csv(csv, pd.DataFrame(records))
        elapsed = time.perf_counter() - start
        loss = record.get("final_loss", float("nan"))
        print(f"run {index}/{len(todo)} [{run.group}] {run.label} (row: {run.row or '-'}) seed {run.seed}: "
              f"{record['state']} loss {loss:.4g} in {record['seconds']:.0f} s; "
              f"{eta(index, len(todo), elapsed / index)}", file=sys.stderr, flush=True)

    if workers <= 1 or len(todo) <= 1:
        pair = load_pair(*paper_song_paths(paper_dir), base)
        for index, run in enumerate(todo, 1):
            record_done(index, run, run_one(run, pair, base, out_dir))
    else:
        threads = max(1, (os.cpu_count() or 1) // workers)
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # BLAS in the workers too
            os.environ[name] = str(threads)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
                                 initargs=(str(paper_dir), base, threads)) as pool:
            futures = {pool.submit(_run_in_worker, run, base, out_dir): run for run in todo}
            for index, future in enumerate(as_completed(futures), 1):
                record_done(index, futures[future], future.result())
    frame = pd.DataFrame(records)
    wanted = {r.run_id for r in runs}
    return frame[frame["run_id"].isin(wanted)].reset_index(drop=True)


def _ok(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["state"] == "ok"] if "state" in frame else frame


def rows_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The four rows as printed: measured mean ± std beside the paper's figure, and ratios to the base row."""
    ok = _ok(frame[frame["group"] == "rows"])
    base_mean = ok[ok["row"] == BASE_ROW.name]["final_loss"].mean()
    table = []
    for row in PAPER_ROWS:
        runs = ok[ok["row"] == row.name]
        table.append({
            "row": row.name, "activation": row.activation, "alpha": row.alpha, "beta": row.beta,
            "paper loss": row.paper_loss, "measured loss": mean_std(runs["final_loss"], **SHOWN),
            "content part": mean_std(runs["content_loss"], **SHOWN),
            "style part": mean_std(runs["style_loss"], **SHOWN),
            "paper ratio base/row": round(BASE_ROW.paper_loss / row.paper_loss, 2),
            "measured ratio base/row": round(base_mean / runs["final_loss"].mean(), 2) if len(runs) else math.nan,
            "style distance": mean_std(runs["style_distance"], 3, **SHOWN),
            "content distance": mean_std(runs["content_distance"], 3, **SHOWN),
            "quality score": mean_std(runs["quality_score"], 3, **SHOWN),
            "seeds": len(runs), "failed": int((frame[(frame["group"] == "rows") & (frame["row"] == row.name)]
                                               ["state"] != "ok").sum()),
        })
    return pd.DataFrame(table)


def variants_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Each open detail as a variant of a row, next to that row's paper figure."""
    paper = {r.name: r.paper_loss for r in PAPER_ROWS}
    table = []
    for (label, row), runs in frame[frame["group"] == "variants"].groupby(["label", "row"], sort=False):
        ok = _ok(runs)
        table.append({"variant": label, "row": row, "paper loss": paper[row],
                      "measured loss": mean_std(ok["final_loss"], **SHOWN),
                      "quality score": mean_std(ok["quality_score"], 3, **SHOWN),
                      "style distance": mean_std(ok["style_distance"], 3, **SHOWN),
                      "content distance": mean_std(ok["content_distance"], 3, **SHOWN),
                      "iterations done": mean_std(ok["iterations_done"], 4, **SHOWN),
                      "float64 fallback": int(ok["float64_fallback"].astype(bool).sum()) if len(ok) else 0,
                      "seeds": len(ok), "failed": int((runs["state"] != "ok").sum())})
    plan = {key: i for i, key in enumerate(dict.fromkeys((r.label, r.row) for r in plan_runs(1, 1)
                                                         if r.group == "variants"))}
    table.sort(key=lambda t: plan.get((t["variant"], t["row"]), len(plan)))  # plan order, not completion order
    return pd.DataFrame(table)


def ablation_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Every (activation, weights) cell's runs, reusing the rows' runs for the cells they cover."""
    ok = _ok(frame[frame["group"].isin(["rows", "ablation"])]).copy()
    names = {weights: name for name, weights in WEIGHTS.items()}
    ok["weights"] = [names.get((a, b), f"alpha {a:g}, beta {b:g}") for a, b in zip(ok["alpha"], ok["beta"])]
    return ok


def ablation_table(frame: pd.DataFrame) -> pd.DataFrame:
    cells = ablation_frame(frame)
    table = []
    for activation in ACTIVATIONS:
        entry: dict[str, Any] = {"activation": activation}
        for name in WEIGHTS:
            runs = cells[(cells["activation"] == activation) & (cells["weights"] == name)]
            entry[f"loss, {name}"] = mean_std(runs["final_loss"], **SHOWN)
            entry[f"quality, {name}"] = mean_std(runs["quality_score"], 3, **SHOWN)
        table.append(entry)
    return pd.DataFrame(table)


def claims(frame: pd.DataFrame, tolerance: float = 0.10) -> list[str]:
    """Plain statements of which of the paper's claims reproduce, computed from the runs."""
    ok = _ok(frame)
    rows = ok[ok["group"] == "rows"]
    lines = []
    for row in PAPER_ROWS:
        losses = rows[rows["row"] == row.name]["final_loss"]
        if losses.empty:
            lines.append(f"**{row.name}**: no run finished, so the paper's {row.paper_loss:g} is not checked here.")
            continue
        mean = losses.mean()
        verdict = (f"reproduces (within {tolerance:.0%})" if abs(mean - row.paper_loss) <= tolerance * row.paper_loss
                   else f"does not reproduce (off by more than {tolerance:.0%})")
        lines.append(f"**{row.name}**: paper {row.paper_loss:g}, measured {mean:.4g} "
                     f"(min {losses.min():.4g}, max {losses.max():.4g}, seeds: {len(losses)}): {verdict}.")
    variants = ok[ok["group"] == "variants"]
    for row in PAPER_ROWS[1:]:
        candidates = pd.concat([rows[rows["row"] == row.name].assign(label="as printed"),
                                variants[variants["row"] == row.name]])
        if candidates.empty:
            continue
        means = candidates.groupby("label")["final_loss"].mean()
        closest = (means - row.paper_loss).abs().idxmin()
        lines.append(f"Closest reading of **{row.name}** ({row.paper_loss:g}) by total loss: {closest}, "
                     f"measured {means[closest]:.4g}.")
    if len(variants):
        lines.append("(A loss over fewer filters or pooled frames sums fewer terms, so a variant that matches a "
                     "printed figure there is no evidence by itself.)")
    blog = rows[rows["row"].isin([r.name for r in PAPER_ROWS[1:]])].groupby("activation")["final_loss"].mean()
    if len(blog) == 3:
        order = " < ".join(blog.sort_values().index)
        holds = "holds" if order == "leaky_relu < elu < selu" else "does not hold"
        lines.append(f"The blog's order at its weights (leaky_relu < elu < selu) {holds}: measured {order}.")
    cells = ablation_frame(frame).groupby(["activation", "weights"])["final_loss"].mean()
    paper_w, blog_w = list(WEIGHTS)
    if {("relu", paper_w), ("relu", blog_w), ("leaky_relu", blog_w)} <= set(cells.index):
        weights_effect = cells[("relu", paper_w)] - cells[("relu", blog_w)]
        activation_effect = cells[("relu", blog_w)] - cells[("leaky_relu", blog_w)]
        base_mean = rows[rows["row"] == BASE_ROW.name]["final_loss"].mean()
        leaky_mean = rows[rows["row"] == BLOG_LEAKY.name]["final_loss"].mean()
        lines.append(f"The paper's ratio base/LeakyReLU is {BASE_ROW.paper_loss / BLOG_LEAKY.paper_loss:.2f}; measured "
                     f"{base_mean / leaky_mean:.2f}. Of the measured drop ({base_mean - leaky_mean:.4g}), changing the "
                     f"weights with ReLU kept accounts for {weights_effect:.4g}, and changing ReLU to LeakyReLU at "
                     f"the blog's weights for {activation_effect:.4g}"
                     + (" (negative: LeakyReLU ends higher than ReLU there)." if activation_effect < 0 else "."))
    quality = ablation_frame(frame).groupby(["weights", "activation"])["quality_score"].mean()
    for name in WEIGHTS:
        if name in quality.index.get_level_values(0):
            best = quality[name].idxmin()
            lines.append(f"By the fair quality score (lower is better; weights-independent), the best activation at "
                         f"the {name} weights is {best} ({quality[name][best]:.3f}; "
                         + ", ".join(f"{a} {v:.3f}" for a, v in quality[name].items()) + ").")
    by_weights = quality.groupby(level=0).mean()
    if len(by_weights) == 2:
        better = by_weights.idxmin()
        per_activation = quality.unstack(0)
        everywhere = bool((per_activation[better] <= per_activation.drop(columns=better).iloc[:, 0]).all())
        lines.append(f"By the fair quality score the {better} weights give better transfers "
                     f"({'for every activation' if everywhere else 'on average, not for every activation'}; "
                     + ", ".join(f"{w}: mean {v:.3f}" for w, v in by_weights.items()) + ").")
    lines.append("Total losses are comparable only between runs with the same alpha, beta, activation, init and "
                 "optimiser; the fair measures are comparable across all rows.")
    return lines


def plot_ablation(frame: pd.DataFrame, out_dir: Path) -> None:
    """Final loss and quality score per activation and weight setting, mean with std error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cells = ablation_frame(frame)
    for column, ylabel, name, log in (("final_loss", "final total loss (log scale)", "loss_by_activation.png", True),
                                      ("quality_score", "fair quality score (lower is better)",
                                       "quality_by_activation.png", False)):
        fig, ax = plt.subplots(figsize=(8, 4.5))
        x = np.arange(len(ACTIVATIONS))
        for offset, weights in zip((-0.2, 0.2), WEIGHTS):
            stats = [cells[(cells["activation"] == a) & (cells["weights"] == weights)][column] for a in ACTIVATIONS]
            means = [s.mean() if len(s) else np.nan for s in stats]
            stds = [s.std(ddof=1) if len(s) > 1 else 0 for s in stats]
            ax.bar(x + offset, means, width=0.4, yerr=stds, capsize=4, label=f"weights: {weights}")
        ax.set_xticks(x, ACTIVATIONS)
        ax.set_xlabel("activation")
        ax.set_ylabel(ylabel)
        if log:
            ax.set_yscale("log")
        ax.set_title(f"{column.replace('_', ' ')} by activation and weights (mean ± std over seeds)")
        ax.legend()
        save_figure(fig, out_dir / name)


def write_report(frame: pd.DataFrame, out_dir: str | Path, base: TransferConfig, command: str,
                 seconds: float | None = None) -> Path:
    """Write report.md and the plots from the runs in `frame`."""
    out_dir = Path(out_dir)
    plot_ablation(frame, out_dir)
    total_seconds = frame["seconds"].sum() if "seconds" in frame else math.nan
    devices = ", ".join(sorted(frame["device"].dropna().unique())) if "device" in frame else "?"
    machines = sorted(frame["machine"].dropna().unique()) if "machine" in frame else []
    runs_on = "; ".join(machines) if machines else "not recorded in runs.csv"
    lines = [
        "# Reproducing the paper's comparison (559 vs 81.79)", "",
        f"Generated by `{command}`; report written on {describe()}. Runs made on: {runs_on}; "
        f"device `{devices}`, precision {base.precision}. {len(frame)} runs, "
        f"{int((frame['state'] != 'ok').sum())} failed; "
        f"the runs' own times add up to {total_seconds / 60:.1f} min (they overlap with `--workers` > 1).", "",
        "Songs: the base paper's `imperial.mp3` (content) and `usa.mp3` (style), 430 frames. Unless a run says "
        "otherwise: the base paper's network (4096 filters, width 11, Glorot-normal gain sqrt(2)), L-BFGS-B "
        "(memory 10, 300 iterations), start from noise, LeakyReLU slope 0.3, Griffin-Lim 500 iterations.", "",
        "## What reproduces", "", *[f"- {line}" for line in claims(frame)], "",
        "## The table's four rows as printed", "", rows_table(frame).to_markdown(index=False), "",
        "The ratio columns compare each row with the base row (paper: 559 / 81.79 = 6.8).", "",
        "## Activation and weights, separated (mean ± std over seeds)", "",
        ablation_table(frame).to_markdown(index=False), "", "![final loss by activation](loss_by_activation.png)", "",
        "![quality by activation](quality_by_activation.png)", "",
        "## The details the blog leaves open, as variants", "", variants_table(frame).to_markdown(index=False), "",
        "## Measures", "",
        "- final loss: alpha * content + beta * style as the run optimised it (depends on alpha, beta, activation, "
        "init and optimiser);",
        "- style distance, content distance, quality score: the fair measures of the README, on the audio each run "
        "produced, in one fixed evaluation network (lower is better; 0.5 = as good as copying either song).", "",
        "## The base row's output", "", "![spectrograms](base_row_spectrograms.png)", "",
        "Every run's figures are in [runs.csv](runs.csv).", "",
    ]
    path = out_dir / "report.md"
    write_text(path, "\n".join(lines))
    return path
