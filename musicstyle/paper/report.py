"""results/paper/report.md: the paper comparison's verdict, tables and plots, all from runs.csv.

Nothing here is a fixed claim: frame counts, iterations, precisions, machines and every figure are
read from the runs' records and the config; a difference within the seed spread is called "no
measurable difference". The trivial baselines (content copy, style copy, mixes) sit in the
fair-measure tables, so a transfer's 0.40 can be read against a copy's 0.50.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import TransferConfig
from ..data.paper_songs import BASE_ROW, CONTENT_SONG, PAPER_ROWS, STYLE_SONG
from ..reports.common import mean_std
from ..util.io import save_figure, write_text
from ..util.machine import describe
from .finalists import DISTINCT_TOLERANCE, checked_trials, finalists_table, verdict, verdict_trial
from .runs import ACTIVATIONS, BLOG_LEAKY, WEIGHTS
from .search import BLOG_ROWS

SHOWN = {"std_digits": 2, "empty": "failed"}  # the report's mean ± std cells (rows: planned, so none = failed)
NOT_RUN = {"std_digits": 2, "empty": "-"}  # cells no run reached (a failed run is counted in its row)
FAIR = ("style_distance", "content_distance", "quality_score")
BASELINES_SHOWN = ("content copy", "style copy", "waveform mix w=0.5", "magnitude mix")


def _ok(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["state"] == "ok"] if "state" in frame else frame


def _col(frame: pd.DataFrame, name: str) -> pd.Series:
    """A column, or an empty one where no run wrote it."""
    return frame[name] if name in frame else pd.Series(dtype=float)


def _blank(table: pd.DataFrame) -> pd.DataFrame:
    """Missing cells shown empty (baseline rows have no loss)."""
    return table.astype(object).where(table.notna(), "")


def _count(runs: pd.DataFrame, column: str) -> int:
    return int(runs[column].fillna(False).astype(bool).sum()) if column in runs else 0


def _used(runs: pd.DataFrame) -> str:
    return ", ".join(sorted(map(str, runs["precision_used"].dropna().unique()))) if "precision_used" in runs else "?"


def differs(a: pd.Series, b: pd.Series) -> bool:
    """Whether two seed samples differ by more than their spread: |mean a - mean b| > std a + std b.

    One seed on either side has no spread, so nothing is called different.
    """
    a, b = a.dropna(), b.dropna()
    if len(a) < 2 or len(b) < 2:
        return False
    return abs(a.mean() - b.mean()) > a.std(ddof=1) + b.std(ddof=1)


def baseline_rows(baselines: pd.DataFrame | None, label: str) -> list[dict[str, Any]]:
    """The trivial baselines as table rows under `label`, their fair measures only."""
    if baselines is None or baselines.empty:
        return []
    shown = baselines[baselines["baseline"].isin(BASELINES_SHOWN)]
    return [{label: f"baseline: {b['baseline']}", "style distance": f"{b['style_distance']:.3g}",
             "content distance": f"{b['content_distance']:.3g}", "quality score": f"{b['quality_score']:.3g}"}
            for _, b in shown.iterrows()]


def rows_table(frame: pd.DataFrame, baselines: pd.DataFrame | None = None) -> pd.DataFrame:
    """The four rows as printed: measured mean ± std beside the paper's figure, ratios to the base row,
    the fair measures, what stopped abnormally or fell back to float64; then the baselines."""
    rows = frame[frame["group"] == "rows"]
    ok = _ok(rows)
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
            "precision used": _used(runs), "seeds": len(runs), "ABNORMAL stops": _count(runs, "abnormal_stop"),
            "float64 fallbacks": _count(runs, "float64_fallback"),
            "failed": int((rows[rows["row"] == row.name]["state"] != "ok").sum()),
        })
    return _blank(pd.DataFrame(table + baseline_rows(baselines, "row")))


def ablation_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Every (activation, weights) cell's 300-iteration runs, reusing the rows' runs for the cells they cover."""
    ok = _ok(frame[frame["group"].isin(["rows", "ablation"])]).copy()
    names = {weights: name for name, weights in WEIGHTS.items()}
    ok["weights"] = [names.get((a, b), f"alpha {a:g}, beta {b:g}") for a, b in zip(ok["alpha"], ok["beta"])]
    return ok


def ablation_table(frame: pd.DataFrame, baselines: pd.DataFrame | None = None) -> pd.DataFrame:
    cells = ablation_frame(frame)
    table = []
    for activation in ACTIVATIONS:
        entry: dict[str, Any] = {"activation": activation}
        for name in WEIGHTS:
            runs = cells[(cells["activation"] == activation) & (cells["weights"] == name)]
            entry[f"loss, {name}"] = mean_std(runs["final_loss"], **SHOWN)
            entry[f"quality, {name}"] = mean_std(runs["quality_score"], 3, **SHOWN)
        table.append(entry)
    for b in baseline_rows(baselines, "activation"):
        table.append({"activation": b["activation"],
                      **{f"quality, {name}": b["quality score"] for name in WEIGHTS}})
    return _blank(pd.DataFrame(table))


def converged_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Every cell at the 300-iteration budget and with L-BFGS left to stop on its own tolerance."""
    at_300 = ablation_frame(frame)
    budget = f"loss at {int(at_300['iterations'].max())} iterations" if len(at_300) else "loss at the fixed budget"
    converged = frame[frame["group"] == "converged"]
    table = []
    for activation in ACTIVATIONS:
        for name, (alpha, beta) in WEIGHTS.items():
            short = at_300[(at_300["activation"] == activation) & (at_300["weights"] == name)]
            runs = converged[converged["label"] == f"{activation} @ {name}"]
            ok = _ok(runs)
            printed = [r.paper_loss for r in PAPER_ROWS if (r.activation, r.alpha, r.beta) == (activation, alpha, beta)]
            table.append({"activation": activation, "weights": name,
                          "paper loss": printed[0] if printed else "",
                          budget: mean_std(short["final_loss"], **NOT_RUN),
                          "loss at convergence": mean_std(_col(ok, "final_loss"), **NOT_RUN),
                          "iterations done": mean_std(_col(ok, "iterations_done"), 4, **NOT_RUN),
                          "cap": int(runs["iterations"].max()) if len(runs) else "",
                          "stopped because": "; ".join(sorted(map(str, ok["stop_reason"].unique()))) if len(ok) else "",
                          "quality at convergence": mean_std(_col(ok, "quality_score"), 3, **NOT_RUN),
                          "precision used": _used(ok), "seeds": len(ok), "ABNORMAL stops": _count(ok, "abnormal_stop"),
                          "float64 fallbacks": _count(ok, "float64_fallback"),
                          "failed": int((runs["state"] != "ok").sum())})
    return pd.DataFrame(table)


def limit_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Every cell with filters = inf beside its 4096-filter runs: loss (scaled as at 4096) and quality."""
    at_4096 = ablation_frame(frame)
    limit = _ok(frame[frame["group"] == "limit"])
    table = []
    for activation in ACTIVATIONS:
        for name in WEIGHTS:
            finite = at_4096[(at_4096["activation"] == activation) & (at_4096["weights"] == name)]
            runs = limit[limit["label"] == f"{activation} @ {name}, filters inf"]
            table.append({"activation": activation, "weights": name,
                          "loss, 4096 filters": mean_std(finite["final_loss"], **NOT_RUN),
                          "loss, filters inf": mean_std(_col(runs, "final_loss"), **NOT_RUN),
                          "quality, 4096 filters": mean_std(finite["quality_score"], 3, **NOT_RUN),
                          "quality, filters inf": mean_std(_col(runs, "quality_score"), 3, **NOT_RUN),
                          "seeds (inf)": len(runs)})
    return pd.DataFrame(table)


def _best_activation(quality: pd.DataFrame, name: str) -> str:
    """Which activation the fair score favours at weights `name`, or "no measurable difference"."""
    cells = quality[quality["weights"] == name]
    if cells.empty:
        return ""
    means = cells.groupby("activation")["quality_score"].mean().sort_values()
    best, second = means.index[0], means.index[1] if len(means) > 1 else None
    listing = ", ".join(f"{a} {v:.3f}" for a, v in means.items())
    if second is None:
        return ""
    scores = {a: cells[cells["activation"] == a]["quality_score"] for a in (best, second)}
    if differs(scores[best], scores[second]):
        return (f"By the fair quality score (lower is better) at the {name} weights, {best} is best, by more than "
                f"the seed spread over the runner-up {second} ({listing}).")
    return (f"By the fair quality score at the {name} weights there is no measurable difference between {best} and "
            f"{second}: the gap is within the seed spread ({listing}).")


def _converged_clause(ok: pd.DataFrame, row: Any) -> str:
    """'; left to converge ...': the row's cell with L-BFGS stopping on its own tolerance, if it ran."""
    names = [name for name, weights in WEIGHTS.items() if weights == (row.alpha, row.beta)]
    runs = ok[(ok["group"] == "converged") & (ok["label"] == f"{row.activation} @ {names[0]}")] if names else ok[:0]
    if runs.empty:
        return ""
    mean = runs["final_loss"].mean()
    return (f"; left to converge ({runs['iterations_done'].mean():.0f} iterations, cap "
            f"{int(runs['iterations'].max())}, seeds: {len(runs)}) {mean:.4g} ({mean / row.paper_loss - 1:+.0%})")


def claims(frame: pd.DataFrame, study_trials: int = 0, tolerance: float = 0.10) -> list[str]:
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
        ok_within = abs(mean - row.paper_loss) <= tolerance * row.paper_loss
        verdict_text = (f"reproduces (within {tolerance:.0%})" if ok_within
                        else f"does not reproduce ({mean / row.paper_loss - 1:+.0%})")
        lines.append(f"**{row.name}** as printed: paper {row.paper_loss:g}, measured {mean:.4g} "
                     f"(min {losses.min():.4g}, max {losses.max():.4g}, seeds: {len(losses)}): {verdict_text}"
                     + _converged_clause(ok, row) + ".")
    lines.append(verdict(frame, study_trials, tolerance))
    blog = rows[rows["row"].isin([r.name for r in BLOG_ROWS])].groupby("activation")["final_loss"].mean()
    if len(blog) == len(BLOG_ROWS):
        printed_order = " < ".join(r.activation for r in sorted(BLOG_ROWS, key=lambda r: r.paper_loss))
        order = " < ".join(blog.sort_values().index)
        holds = "holds" if order == printed_order else "does not hold"
        lines.append(f"The blog's order at its weights ({printed_order}) {holds} as printed: measured {order}.")
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
    quality = ablation_frame(frame)
    by_quality = [line for name in WEIGHTS if (line := _best_activation(quality, name))]
    if by_quality:
        lines += by_quality + ["The fair quality score is only weakly validated against known right answers "
                               "(docs/truth.md), so read its differences as hints, not rankings."]
    lines.append("Total losses are comparable only between runs with the same alpha, beta, activation, init, "
                 "normalisation and optimiser; the fair measures are comparable across all rows.")
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


def search_section(frame: pd.DataFrame, searched: pd.DataFrame | None, space: str) -> list[str]:
    """The joint search's part of the report: the space, what became of the trials, the best ones, the finalists."""
    if searched is None or searched.empty:
        return ["The joint search was not run (`reproduce --search N`).", ""]
    states = searched["state"].value_counts()
    best = searched[searched["state"] == "COMPLETE"].sort_values("joint error").head(8).fillna({"reading": ""})
    shown = best[[c for c in ("trial", "reading", "joint error", "worst row off by a factor", "setup", "seconds")
                  if c in best]].round(3)
    return [f"Searched together, with the blog's weights fixed (alpha 1e-3, beta 10): {space}.", "",
            f"{len(searched)} trials: " + ", ".join(f"{n} {s.lower()}" for s, n in states.items())
            + ". The search starts from the readings tried before (`reading`: the table as printed, the same "
            "converged, a Keras-like setup), then TPE. A trial stops once it cannot beat "
            "the best one (its worst row so far is already worse, or an "
            "L-BFGS row has fallen below the bound). "
            + _screen_line(searched) + " Every row run is in `search-runs.csv`, every trial in "
            "`search-trials.csv`. The normalisation is folded into the weights (musicstyle/paper/search.py).", "",
            "The best finished trials (one seed each):", "", shown.to_markdown(index=False), "",
            "The finalists: the best three distinct setups (a trial with a better trial's choices and every number "
            f"within {DISTINCT_TOLERANCE:.0%} of its counts as that trial), re-run over seeds; finalists of earlier "
            "invocations stay listed (the verdict reads the best of these):", "",
            finalists_table(frame).to_markdown(index=False) or "(not run)", "",
            _precision_line(frame), "", finalists_table(frame, "precision check").to_markdown(index=False)
            or "(not run)", ""]


def _precision_line(frame: pd.DataFrame) -> str:
    """What the precision-check table holds, and whether the setup the verdict names is in it."""
    named = verdict_trial(frame)
    status = ("" if named is None else f"the verdict's setup, trial {named}, is among them"
              if named in checked_trials(frame)
              else f"the verdict's setup, trial {named}, has not been re-run in another precision yet")
    return ("Setups re-run in other precisions (seed 0), to see whether a verdict hangs on precision"
            + (f"; {status}" if status else "") + ":")


def _screen_line(searched: pd.DataFrame) -> str:
    """How many trials the heuristic screen stopped (it can discard a winner, the other stops cannot)."""
    from .search import SCREEN_ITERATION

    why = searched["why stopped"].fillna("").astype(str) if "why stopped" in searched else pd.Series([], dtype=str)
    screened = int(why.str.contains("screened at iteration").sum())
    return (f"{screened} trial(s) were stopped by the heuristic screen at iteration {SCREEN_ITERATION} (a row whose "
            "final loss, predicted from the ratios final / loss there of the search's finished rows, could not come "
            "within the best trial's error; unlike the bounds, this can discard a setup that would have won).")


def _commands(phases: pd.DataFrame | None) -> str:
    """The commands that made the runs, from phases.csv (one per invocation), each in backticks; the
    invocation ids of phases recorded before phases.csv kept commands."""
    if phases is None or phases.empty:
        return "not recorded"
    commands = phases["command"] if "command" in phases else pd.Series([None] * len(phases))
    known = [f"`{c}`" for c in dict.fromkeys(commands.tolist()) if isinstance(c, str)]
    unknown = sorted(set(phases.loc[commands.isna().to_numpy(), "invocation"].astype(str)))
    return "; ".join(known + ([f"invocation(s) {', '.join(unknown)} (command not recorded in phases.csv)"]
                              if unknown else []))


def _setup_line(frame: pd.DataFrame, base: TransferConfig) -> str:
    """What every run shares unless its group says otherwise, read from the config and the rows' records."""
    rows = frame[frame["group"] == "rows"] if "group" in frame else frame
    frames = ", ".join(str(int(f)) for f in sorted(rows["frames"].dropna().unique())) if "frames" in rows else "?"
    return (f"Songs: the base paper's `{CONTENT_SONG}` (content) and `{STYLE_SONG}` (style), {frames} frames "
            f"(n_fft {base.n_fft}, hop {base.hop}, {base.sample_rate_hz} Hz). Unless a run says otherwise: "
            f"{base.filters} filters of width {base.kernel_width}, Glorot-normal gain {base.init_gain:.3g}, "
            f"{'L-BFGS-B (memory 10)' if base.optimizer == 'lbfgs' else 'Adam'}, {base.iterations} iterations, "
            f"start from {base.init}, LeakyReLU slope {base.leaky_slope:g}, Griffin-Lim {base.griffin_lim_iters} "
            f"iterations, precision setting {base.precision} (used: {_used(frame)}).")


def write_report(frame: pd.DataFrame, out_dir: str | Path, base: TransferConfig, command: str,
                 baselines: pd.DataFrame | None = None, phases: pd.DataFrame | None = None,
                 searched: pd.DataFrame | None = None, space: str = "") -> Path:
    """Write report.md and the plots from the runs in `frame` (and the search's finalists in it)."""
    out_dir = Path(out_dir)
    plot_ablation(frame, out_dir)
    search_trials = len(searched) if searched is not None else 0
    stated = claims(frame, search_trials)  # the verdict opens with the first of them
    machines = sorted(frame["machine"].dropna().unique()) if "machine" in frame else []
    versions = sorted(map(str, frame["code_version"].dropna().unique())) if "code_version" in frame else []
    devices = ", ".join(sorted(map(str, frame["device"].dropna().unique()))) if "device" in frame else "?"
    invocations = frame["invocation"].nunique() if "invocation" in frame else 0
    failed = int((frame["state"] != "ok").sum())
    lines = [
        "# Reproducing the paper's comparison (559 vs 81.79)", "",
        "## Verdict", "", " ".join(stated[:len(PAPER_ROWS) + 1]), "",
        f"Runs made by: {_commands(phases)}; this report written by `{command}` on {describe()}. "
        f"Runs made on: {'; '.join(machines) or '?'}; "
        f"device {devices}; code version {', '.join(versions) or '?'}; {invocations} invocation(s). "
        f"{len(frame)} runs, {failed} failed, {_count(_ok(frame), 'abnormal_stop')} ended with an L-BFGS ABNORMAL "
        f"line-search stop, {_count(_ok(frame), 'float64_fallback')} fell back to float64.", "",
        _setup_line(frame, base), "",
        "## What reproduces", "", *[f"- {line}" for line in stated], "",
        "## The table's four rows as printed", "", rows_table(frame, baselines).to_markdown(index=False), "",
        f"The ratio columns compare each row with the base row (paper: {BASE_ROW.paper_loss:g} / "
        f"{BLOG_LEAKY.paper_loss:g} = {BASE_ROW.paper_loss / BLOG_LEAKY.paper_loss:.2f}). Baselines: the fair "
        "measures of copying either song, of mixing them, all through the same Griffin-Lim.", "",
        "## One setup for the blog's three rows: the joint search", "",
        *search_section(frame, searched, space),
        "## Converged: every cell at the fixed budget and at L-BFGS's own stop", "",
        converged_table(frame).to_markdown(index=False), "",
        "## Activation and weights, separated (mean ± std over seeds)", "",
        ablation_table(frame, baselines).to_markdown(index=False), "",
        "![final loss by activation](loss_by_activation.png)", "",
        "![quality by activation](quality_by_activation.png)", "",
        "## Infinitely many filters (docs/limit.md)", "", limit_table(frame).to_markdown(index=False), "",
        "## Measures", "",
        "- final loss: alpha * content + beta * style as the run optimised it (depends on alpha, beta, activation, "
        "init, normalisation and optimiser);",
        "- style distance, content distance, quality score: the fair measures of the README, on the audio each run "
        "produced, in one fixed evaluation network (lower is better).", "",
    ]
    if phases is not None and not phases.empty:
        shown = phases.fillna({"command": "(not recorded)"})
        lines += ["## What each phase cost", "", shown.to_markdown(index=False), ""]
    lines += ["## The base row's output", "", "![spectrograms](base_row_spectrograms.png)", "",
              "Every run's figures are in [runs.csv](runs.csv).", ""]
    path = out_dir / "report.md"
    write_text(path, "\n".join(lines))
    return path
