"""Pieces every report uses: a matplotlib without a display, number formatting, spectrogram panels, and the
best-trials and per-activation tables that the sweep's results.md and its listening report share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..measures import is_multi_objective, objective_measures
from ..util.io import save_figure


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, in the default style (optuna's plots switch to ggplot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.style.use("default")
    return plt


def fmt(value: Any, digits: int = 4) -> str:
    """A table cell: floats to `digits` significant digits, None and non-finite as ''."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def mean_std(values: pd.Series, digits: int = 4, std_digits: int = 3, empty: str = "") -> str:
    """'0.512 ± 0.03' over the non-missing values (sample std); one value alone; `empty` for none."""
    values = values.dropna().astype(float)
    if values.empty:
        return empty
    if len(values) == 1:
        return f"{values.iloc[0]:.{digits}g}"
    return f"{values.mean():.{digits}g} ± {values.std(ddof=1):.{std_digits}g}"


def plot_spectrograms(
    spectrograms: dict[str, np.ndarray], path: str | Path, sample_rate_hz: int, hop: int, title: str = ""
) -> None:
    """One panel per (bins, frames) log-magnitude, time in seconds and frequency in kHz, shared colour scale."""
    plt = pyplot()
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


def best_rows(frame: pd.DataFrame, objective: str, k: int = 5) -> pd.DataFrame:
    """The k best completed trials (several objectives: the non-dominated ones, by quality score)."""
    done = frame[(frame["state"] == "COMPLETE") & (frame["discarded"] == "")] if not frame.empty else frame
    if done.empty:
        return done
    if not is_multi_objective(objective):
        return done.sort_values(f"objective_{objective_measures(objective)[0]}").head(k)
    points = done[objective_measures(objective)].to_numpy(dtype=float)
    front = [i for i, p in enumerate(points) if not any(np.all(q <= p) and np.any(q < p) for q in points)]
    return done.iloc[front].sort_values("quality_score")


def activation_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per-activation mean ± std over completed trials."""
    done = frame[(frame["state"] == "COMPLETE") & (frame["discarded"] == "")] if "activation" in frame else frame[:0]
    measures = [k for k in ("final_loss", "quality_score", "style_distance", "content_distance", "spectral_convergence",
                            "truth_score", "runtime_seconds") if k in done and done[k].notna().any()]
    rows = [{"activation": activation, "trials": len(group), **{k: mean_std(group[k]) for k in measures}}
            for activation, group in done.groupby("activation")]
    return pd.DataFrame(rows)
