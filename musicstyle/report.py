"""Pieces every report uses: a matplotlib without a display, number formatting, spectrogram panels."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .io import save_figure

if TYPE_CHECKING:
    import pandas as pd


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
