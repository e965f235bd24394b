"""results/paper/report.html: the paper comparison's tables and plots, and its rows to listen to.

The rows' audio comes from runs that kept it: a reproduction's own rows at seed 0, or the runs of
`reproduce --listen` (recorded apart in `listen/runs.csv`, so the comparison's tables are untouched).
Each player is labelled from its run's record (settings, precision, device, loss, seconds).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..data.paper_songs import BASE_ROW, CONTENT_SONG, PAPER_ROWS, STYLE_SONG, paper_song_paths
from ..reports.listening import (
    Clip,
    PairView,
    TrialView,
    fmt,
    html_table,
    spectrogram_png,
    write_listening_report,
    write_ogg,
)
from ..util.names import slug
from .finalists import finalists_table
from .report import ablation_table, claims, converged_table, rows_table
from .runs import Run

if TYPE_CHECKING:
    from ..config import TransferConfig

LISTEN = "listen"
PLOTS = ("loss_by_activation.png", "quality_by_activation.png", "base_row_spectrograms.png")
SETTINGS = ("activation", "alpha", "beta", "optimizer", "lr", "init_gain", "leaky_slope", "iterations", "filters",
            "pooling", "precision", "precision_used", "device")


LIMIT_ROWS = (BASE_ROW.name, "blog LeakyReLU")  # rows also run with filters inf (closed-form kernels: fast)


def listen_runs() -> list[Run]:
    """The paper's rows at seed 0, keeping their audio; after each of LIMIT_ROWS, the same row in the
    infinite-filter limit (docs/limit.md), labelled '<row>, filters inf' with no paper row (the blog's
    loss is a 4096-filter one)."""
    runs = []
    for row in PAPER_ROWS:
        runs.append(Run("listen", row.name, row.name, row.settings, 0, keep_audio=True))
        if row.name in LIMIT_ROWS:
            runs.append(Run("listen", f"{row.name}, filters inf", "", row.settings | {"filters": math.inf}, 0,
                            keep_audio=True))
    return runs


def _records(out_dir: Path, frame: pd.DataFrame) -> list[tuple[dict[str, Any], Path]]:
    """Runs with kept audio: (record, its .ogg path), the comparison's own first, then listen/runs.csv."""
    found = []
    sources = [(frame, out_dir)]
    if (out_dir / LISTEN / "runs.csv").exists():
        sources.append((pd.read_csv(out_dir / LISTEN / "runs.csv"), out_dir / LISTEN))
    for runs, folder in sources:
        if "audio" not in runs:
            continue
        for record in runs[(runs["state"] == "ok") & runs["audio"].notna()].to_dict("records"):
            if (folder / record["audio"]).exists():
                found.append((record, folder / record["audio"]))
    return found


def _clips(out_dir: Path, base: TransferConfig, paper_dir: str | Path) -> tuple[list[Clip], float]:
    """The content and style clips the runs used (base config's clip and frames), as OGG and PNG."""
    from ..engine.transfer import load_pair

    pair = load_pair(*paper_song_paths(paper_dir), base)
    samples = pair.content.shape[1] * base.hop
    vmax = float(max(pair.content.max(), pair.style.max()))
    clips = []
    for role, song, audio, spec in (("content", CONTENT_SONG, pair.content_audio, pair.content),
                                    ("style", STYLE_SONG, pair.style_audio, pair.style)):
        write_ogg(out_dir / LISTEN / f"{role}.ogg", audio[:samples], base.sample_rate_hz)
        spectrogram_png(out_dir / LISTEN / f"{role}.png", spec, base.sample_rate_hz, base.hop, f"{role}: {song}", vmax)
        clips.append(Clip(role, f"{LISTEN}/{role}.ogg", f"{LISTEN}/{role}.png",
                          f"{song}, {base.offset_seconds:g} s + {samples / base.sample_rate_hz:.2f} s"))
    return clips, vmax


def _view(out_dir: Path, record: dict[str, Any], ogg: Path, clips: list[Clip], vmax: float,
          base: TransferConfig, paper_loss: dict[str, float]) -> TrialView:
    image = None
    archive = ogg.with_suffix(".npz")
    if archive.exists():
        with np.load(archive) as data:
            spec = data["output"].astype(np.float32)
        spectrogram_png(ogg.with_suffix(".png"), spec, base.sample_rate_hz, base.hop, f"output: {record['label']}",
                        vmax)
        image = ogg.with_suffix(".png").relative_to(out_dir).as_posix()
    row = record["row"] if isinstance(record["row"], str) else ""  # a limit run has none (read back as NaN)
    scores = {"final loss": fmt(record.get("final_loss")), "paper's loss": fmt(paper_loss.get(row)),
              **{k.replace("_", " "): fmt(record.get(k)) for k in ("quality_score", "style_distance",
                                                                   "content_distance", "spectral_convergence")},
              "seconds": fmt(record.get("seconds"), 3)}
    source = "listen/runs.csv" if (out_dir / LISTEN) in ogg.parents else "runs.csv"
    settings = {k: "inf" if k == "filters" and record[k] == math.inf else fmt(record[k])
                for k in SETTINGS if k in record}
    view = TrialView(slug(f"{row or record['label']}_{record['seed']}_{source}"),
                     f"{row or record['label']} (seed {record['seed']})",
                     {k: v for k, v in settings.items() if v},
                     {k: v for k, v in scores.items() if v},
                     note=f"Run recorded in {source}" + (f", on {record['machine']}" if record.get("machine") else "")
                     + ".")
    output = Clip("output", ogg.relative_to(out_dir).as_posix(), image, record["label"])
    view.pairs.append(PairView(f"{CONTENT_SONG} (content) with {STYLE_SONG} (style)", [*clips, output]))
    return view


def write_paper_listening_report(out_dir: str | Path, frame: pd.DataFrame, base: TransferConfig,
                                 paper_dir: str | Path) -> Path:
    """report.html beside report.md: the comparison's tables and plots, and every run with kept audio."""
    out_dir = Path(out_dir)
    records = _records(out_dir, frame)
    clips, vmax = _clips(out_dir, base, paper_dir) if records else ([], 0.0)
    paper_loss = {row.name: row.paper_loss for row in PAPER_ROWS}
    views = [_view(out_dir, record, ogg, clips, vmax, base, paper_loss) for record, ogg in records]
    failed = int((frame["state"] != "ok").sum()) if "state" in frame else 0
    precisions = ", ".join(sorted(map(str, frame["precision"].dropna().unique()))) if "precision" in frame else "?"
    devices = ", ".join(sorted(map(str, frame["device"].dropna().unique()))) if "device" in frame else "?"
    summary = [f"Tables from runs.csv: {len(frame)} runs ({failed} failed), precision {precisions}, device "
               f"{devices}; report.md names the command that made them.", *claims(frame)] if len(frame) else \
        ["runs.csv has no runs yet."]
    tables = [html_table(rows_table(frame), "paper-rows", "The table's rows as printed (mean ± std over seeds)"),
              html_table(ablation_table(frame), "ablation", "Activation and weights, separated (mean ± std)"),
              html_table(finalists_table(frame), "finalists", "One setup for the blog's rows: the joint search's "
                         "finalists over seeds"),
              html_table(converged_table(frame), "converged", "Every cell at the fixed budget and converged")] \
        if len(frame) else []
    return write_listening_report(
        out_dir, title="Reproducing the paper's comparison: listening report", summary=summary, tables=tables,
        plots=[p for p in PLOTS if (out_dir / p).exists()], trials=views,
        listen_note=(f"{len(views)} runs kept their audio (Griffin-Lim output, re-encoded as OGG Vorbis); each is "
                     "labelled from its own record. The content and style clips are the songs as the runs read "
                     "them." if views else "No run here kept its audio: `python -m musicstyle reproduce "
                     "--listen` runs the rows once more and keeps it."),
        footer="Written by musicstyle.paper.listen from runs.csv and the kept audio in this folder.")
