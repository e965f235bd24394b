"""Report: figures and tables people can read and paste."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .io import save_figure


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
