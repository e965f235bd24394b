"""The sweep's plots (PNG) from its trial table and study."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..measures import is_multi_objective, objective_measures
from ..reports.common import pyplot
from ..util.io import save_figure


def plot_by_activation(frame: pd.DataFrame, path: Path) -> None:
    """Final loss (log scale) and quality score per activation, one dot per completed trial."""
    plt = pyplot()
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
    plt = pyplot()
    done = frame[(frame["state"] == "COMPLETE") & (frame["discarded"] == "")]
    column = "quality_score" if is_multi_objective(objective) else f"objective_{objective_measures(objective)[0]}"
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
    plt = pyplot()
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
    plt = pyplot()
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


def plot_optuna(kind: str, study: Any, path: Path, objective: str) -> None:
    """Optuna's matplotlib plots: 'history' (or the Pareto front) and 'importance'."""
    import optuna.visualization.matplotlib as ovm

    plt = pyplot()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "history":
            if len(study.directions) > 1:
                ax = ovm.plot_pareto_front(study, target_names=objective_measures(objective))
            else:
                ax = ovm.plot_optimization_history(study)
                ax.set_ylabel("objective value (lower is better)")
                ax.set_xlabel("trial number")
        else:
            mean = "mean of " + ", ".join(objective_measures(objective))
            targets = {} if len(study.directions) == 1 else {"target": lambda t: sum(t.values) / len(t.values),
                                                             "target_name": mean}
            ax = ovm.plot_param_importances(study, **targets)
            ax.set_xlabel("importance for the objective (fANOVA, sums to 1)")
    fig = ax.figure if hasattr(ax, "figure") else plt.gcf()
    fig.set_size_inches(8, 4.8)
    save_figure(fig, path)
