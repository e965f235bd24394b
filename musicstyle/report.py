"""Report: figures and tables people can read and paste."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .io import save_figure

if TYPE_CHECKING:
    import pandas as pd


def plot_spectrograms(
    spectrograms: dict[str, np.ndarray], path: str | Path, sample_rate_hz: int, hop: int, title: str = ""
) -> None:
    """One panel per (bins, frames) log-magnitude, time in seconds and frequency in kHz, shared colour scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(spectrograms), 1, figsize=(9, 2.6 * len(spectrograms)), sharex=True,
                             squeeze=False)
    vmax = max(float(np.max(s)) for s in spectrograms.values())
    image = None
    for ax, (name, spec) in zip(axes[:, 0], spectrograms.items()):
        seconds = spec.shape[1] * hop / sample_rate_hz
        image = ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", vmin=0, vmax=vmax,
                          extent=(0, seconds, 0, sample_rate_hz / 2000))
        ax.set_title(name)
        ax.set_ylabel("frequency (kHz)")
    axes[-1, 0].set_xlabel("time (s)")
    fig.colorbar(image, ax=axes[:, 0].tolist(), label="log(1 + |STFT|)")
    if title:
        fig.suptitle(title)
    save_figure(fig, path)


# ---------------------------------------------------------------- sweep tables and plots

TRIAL_MEASURES = ("final_loss", "content_loss", "style_loss", "content_loss_unweighted", "style_loss_unweighted",
                  "style_distance", "content_distance", "spectral_convergence", "quality_score", "iterations",
                  "evaluations", "pairs_done", "runtime_seconds", "seconds_per_iteration", "peak_memory_mb",
                  "peak_memory_delta_mb")
OBJECTIVE_COLUMNS = {"quality": ["quality_score"], "loss": ["final_loss"],
                     "pareto": ["content_distance", "style_distance"]}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.style.use("default")  # optuna's plots switch to ggplot for the whole process
    return plt


def trial_table(trials: list[Any], objective: str) -> pd.DataFrame:
    """One row per trial: number, state, objective value(s), every parameter, seed, reasons, measures."""
    import pandas as pd

    names = OBJECTIVE_COLUMNS[objective]
    params = sorted({name for t in trials for name in t.params})
    rows = []
    for t in trials:
        a = t.user_attrs
        row: dict[str, Any] = {"trial": t.number, "state": t.state.name}
        for i, name in enumerate(names):
            row[f"objective_{name}"] = t.values[i] if t.values else None
        row.update({name: t.params.get(name) for name in params})
        row.update(seed=a.get("seed"), paper_row=a.get("paper_row", ""), paper_loss=a.get("paper_loss"),
                   reason=a.get("fail_reason") or a.get("prune_reason") or "", discarded=a.get("discarded", ""),
                   repeat_of=a.get("repeat_of"), retry_of=a.get("retry_of"))
        row.update({k: a.get(k) for k in TRIAL_MEASURES})
        row["duration_seconds"] = t.duration.total_seconds() if t.duration else None
        row["datetime_start"] = t.datetime_start.isoformat(timespec="seconds") if t.datetime_start else None
        row["datetime_complete"] = t.datetime_complete.isoformat(timespec="seconds") if t.datetime_complete else None
        if t.params.get("activation") is None and a.get("config"):
            row["activation"] = a["config"].get("activation")
        rows.append(row)
    columns = ["trial", "state"] + [f"objective_{n}" for n in names] + params
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=columns)
    return frame[[c for c in columns if c in frame] + [c for c in frame if c not in columns]]


def pair_table(trials: list[Any]) -> pd.DataFrame:
    """One row per trial and pair, with the trial's parameters."""
    import pandas as pd

    rows = []
    for t in trials:
        for pair in t.user_attrs.get("pairs", []):
            rows.append({"trial": t.number, "trial_state": t.state.name, **t.params, **pair})
    return pd.DataFrame(rows)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _mean_std(series: pd.Series) -> str:
    values = series.dropna().astype(float)
    if values.empty:
        return ""
    if len(values) == 1:
        return f"{values.iloc[0]:.4g}"
    return f"{values.mean():.4g} ± {values.std(ddof=1):.3g}"


def best_rows(frame: pd.DataFrame, objective: str, k: int = 5) -> pd.DataFrame:
    """The k best completed trials (pareto: the non-dominated ones by the two distances)."""
    done = frame[(frame["state"] == "COMPLETE") & (frame["discarded"] == "")] if not frame.empty else frame
    if done.empty:
        return done
    if objective != "pareto":
        return done.sort_values(f"objective_{OBJECTIVE_COLUMNS[objective][0]}").head(k)
    points = done[["content_distance", "style_distance"]].to_numpy(dtype=float)
    front = [i for i, p in enumerate(points) if not any(np.all(q <= p) and np.any(q < p) for q in points)]
    return done.iloc[front].sort_values("quality_score")


def _table(frame: pd.DataFrame, columns: list[str]) -> str:
    shown = frame[[c for c in columns if c in frame]].copy()
    for column in shown:
        shown[column] = [_fmt(v) for v in shown[column]]
    return shown.to_markdown(index=False)


def activation_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per-activation mean ± std over completed trials."""
    import pandas as pd

    done = frame[(frame["state"] == "COMPLETE") & (frame["discarded"] == "")] if "activation" in frame else frame[:0]
    rows = []
    for activation, group in done.groupby("activation"):
        rows.append({"activation": activation, "trials": len(group),
                     **{k: _mean_std(group[k]) for k in ("final_loss", "quality_score", "style_distance",
                                                         "content_distance", "spectral_convergence",
                                                         "runtime_seconds")}})
    return pd.DataFrame(rows)


def results_markdown(frame: pd.DataFrame, meta: dict[str, Any], reevaluation: pd.DataFrame | None,
                     plots: list[str], notes: list[str]) -> str:
    """results.md: header, best configurations, the paper's rows, per activation, re-evaluation, plots."""
    objective = meta["objective"]
    params = [c for c in meta.get("params", []) if c in frame]
    kept = frame[frame["discarded"].fillna("") == ""] if not frame.empty else frame
    states = kept["state"].value_counts().to_dict() if not kept.empty else {}
    discarded = len(frame) - len(kept)
    counted = 0 if frame.empty else int((frame["discarded"] == "").sum() - (frame["state"] == "RUNNING").sum()
                                        - (frame["state"] == "WAITING").sum())
    lines = [f"# Sweep `{meta['study']}`", "",
             f"Objective **{objective}** ({', '.join(OBJECTIVE_COLUMNS[objective])}, lower is better); "
             f"{counted} of {meta['trials']} trials done; states: "
             + (", ".join(f"{k} {v}" for k, v in sorted(states.items())) or "none")
             + (f"; {discarded} discarded (stale, interrupted or surplus, not counted)" if discarded else "") + ".",
             f"Corpus: {meta.get('corpus', '')}.", f"Fixed settings: {meta.get('fixed', '')}.",
             runtime_line(frame), ""]
    lines += ["## Best configurations", ""]
    best = best_rows(frame, objective)
    measures = ["final_loss", "quality_score", "style_distance", "content_distance", "spectral_convergence",
                "runtime_seconds"]
    lines.append(_table(best, ["trial"] + params + measures + ["paper_row"]) if not best.empty
                 else "No completed trial yet.")
    lines += ["", "## The paper's four rows, measured here", "",
              "The paper's figures are final losses on its two songs at full size (10 s, 300 L-BFGS "
              "iterations); ours are means over this corpus's pairs at the sweep's settings (the same loss "
              "terms), so compare the order and the fair measures, not the absolute totals.", ""]
    paper = frame[frame["paper_row"] != ""] if "paper_row" in frame and not frame.empty else frame[:0]
    paper = paper[paper["discarded"] == ""] if not paper.empty else paper
    lines.append(_table(paper, ["paper_row", "trial", "state", "paper_loss"] + measures) if not paper.empty
                 else "No paper row in this study.")
    lines += ["", "## Per activation (completed trials, mean ± std)", ""]
    by_activation = activation_table(frame)
    lines.append(by_activation.to_markdown(index=False) if not by_activation.empty else "No completed trial yet.")
    if reevaluation is not None and not reevaluation.empty:
        lines += ["", f"## Top configurations re-run over {reevaluation['seed'].nunique()} seeds (mean ± std)", ""]
        rows = []
        for number, group in reevaluation.groupby("trial", sort=False):
            rows.append({"trial": number, "seeds": len(group),
                         **{k: _mean_std(group[k]) for k in ("quality_score", "style_distance", "content_distance",
                                                             "final_loss") if k in group}})
        lines.append(pd_frame(rows).to_markdown(index=False))
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def runtime_line(frame: pd.DataFrame) -> str:
    """'Trial runtime (one worker): COMPLETE 41 ± 15 s, PRUNED 30 ± 9 s; peak memory 1.4 GB.'"""
    if frame.empty or "runtime_seconds" not in frame:
        return ""
    parts = [f"{state} {_mean_std(group['runtime_seconds'])} s" for state, group in frame.groupby("state")
             if group["runtime_seconds"].notna().any()]
    peak = frame["peak_memory_mb"].dropna().max() if "peak_memory_mb" in frame else None
    memory = f"; peak memory {peak / 1024:.2f} GB" if peak is not None and np.isfinite(peak) else ""
    wall = ""
    if frame["datetime_complete"].notna().any():
        span = pd_to_datetime(frame["datetime_complete"]).max() - pd_to_datetime(frame["datetime_start"]).min()
        wall = f"; wall time from the first start to the last end {span.total_seconds() / 60:.1f} min"
    return f"Trial runtime per worker: {', '.join(parts)}{memory}{wall}." if parts else ""


def pd_to_datetime(series: pd.Series) -> pd.Series:
    import pandas as pd

    return pd.to_datetime(series.dropna())


def pd_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(rows)


def plot_by_activation(frame: pd.DataFrame, path: Path) -> None:
    """Final loss (log scale) and quality score per activation, one dot per completed trial."""
    plt = _pyplot()
    done = frame[(frame["state"] == "COMPLETE") & (frame["discarded"] == "")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    activations = sorted(done["activation"].dropna().unique())
    for ax, column, label in ((axes[0], "final_loss", "final total loss (sum over terms)"),
                              (axes[1], "quality_score", "quality score (0 = ideal, dimensionless)")):
        for i, activation in enumerate(activations):
            values = done.loc[done["activation"] == activation, column].dropna().astype(float)
            jitter = np.random.default_rng(i).uniform(-0.15, 0.15, len(values))
            ax.scatter(i + jitter, values, s=18, alpha=0.7, label=activation)
            if len(values):
                ax.hlines(values.median(), i - 0.3, i + 0.3, colors="k")
        ax.set_xticks(range(len(activations)), activations)
        ax.set_xlabel("activation")
        ax.set_ylabel(label)
        if column == "final_loss" and (done[column].dropna() > 0).all() and len(done):
            ax.set_yscale("log")
    axes[0].set_title("final loss by activation (black: median)")
    axes[1].set_title("fair quality score by activation")
    if activations:
        axes[1].legend(title="activation", fontsize=8)
    save_figure(fig, path)


def plot_alpha_beta(frame: pd.DataFrame, path: Path, objective: str) -> None:
    """Completed trials on the (alpha, beta) plane, coloured by the objective (or quality score)."""
    plt = _pyplot()
    done = frame[(frame["state"] == "COMPLETE") & (frame["discarded"] == "")]
    column = "quality_score" if objective == "pareto" else f"objective_{OBJECTIVE_COLUMNS[objective][0]}"
    fig, ax = plt.subplots(figsize=(6.5, 5))
    alpha = done.get("alpha", done.get("config_alpha"))
    beta = done.get("beta")
    if alpha is None or beta is None:
        raise ValueError("alpha and beta are not both searched")
    points = ax.scatter(alpha.astype(float), beta.astype(float), c=done[column].astype(float), cmap="viridis_r",
                        s=35, edgecolors="k", linewidths=0.3, label="completed trial")
    fig.colorbar(points, ax=ax, label=column.replace("objective_", "") + " (lower is better)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("alpha (content weight)")
    ax.set_ylabel("beta (style weight)")
    ax.set_title("alpha-beta map")
    ax.legend(loc="best", fontsize=8)
    save_figure(fig, path)


def plot_runtime_quality(frame: pd.DataFrame, path: Path) -> None:
    """Runtime per trial against the quality score, coloured by filter count."""
    plt = _pyplot()
    done = frame[(frame["state"] == "COMPLETE") & (frame["discarded"] == "")]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    groups = done.groupby("filters") if "filters" in done else [("all", done)]
    for name, group in groups:
        ax.scatter(group["runtime_seconds"].astype(float), group["quality_score"].astype(float), s=25,
                   label=f"{name} filters" if name != "all" else "trials")
    ax.set_xlabel("trial runtime (s)")
    ax.set_ylabel("quality score (lower is better)")
    ax.set_title("runtime against quality")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_loss_curves(trials: list[Any], path: Path) -> None:
    """Loss per iteration of the given trials, one line per pair (log scale)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, trial in enumerate(trials):
        for j, (_pair, history) in enumerate(sorted(trial.user_attrs.get("loss_history", {}).items())):
            ax.plot(np.arange(1, len(history) + 1), history, color=colours[i % len(colours)], alpha=0.8,
                    label=f"trial {trial.number}" if j == 0 else None)
    ax.set_yscale("log")
    ax.set_xlabel("iteration (downsampled to at most 200 points)")
    ax.set_ylabel("total loss (weighted sum)")
    ax.set_title("loss curves of the best trials (one line per pair)")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_optuna(kind: str, study: Any, path: Path) -> None:
    """Optuna's matplotlib plots: 'history' (or the Pareto front) and 'importance'."""
    import warnings

    import optuna.visualization.matplotlib as ovm

    plt = _pyplot()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "history":
            if len(study.directions) > 1:
                ax = ovm.plot_pareto_front(study, target_names=OBJECTIVE_COLUMNS["pareto"])
            else:
                ax = ovm.plot_optimization_history(study)
                ax.set_ylabel("objective value (lower is better)")
                ax.set_xlabel("trial number")
        else:
            targets = {} if len(study.directions) == 1 else {"target": lambda t: sum(t.values) / 2,
                                                             "target_name": "quality score"}
            ax = ovm.plot_param_importances(study, **targets)
            ax.set_xlabel("importance for the objective (fANOVA, sums to 1)")
    fig = ax.figure if hasattr(ax, "figure") else plt.gcf()
    fig.set_size_inches(8, 4.8)
    save_figure(fig, path)
