"""The listening report: report.html with players for content, style and output, side by side.

The page is rendered from a Jinja2 template (`templates/report.html.j2`) and works offline: its audio
(OGG Vorbis, small enough to commit) and spectrogram PNGs lie in `listen/` beside it, its plots are
the PNGs already in the folder. `write_listening_report` renders any such page;
`write_sweep_listening_report` builds one for a sweep from what the sweep left on disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..util.io import atomic_path, save_figure, write_text
from ..util.names import slug

if TYPE_CHECKING:
    import pandas as pd

TEMPLATE = "report.html.j2"
SWEEP_PLOTS = ("by_activation.png", "history.png", "importance.png", "alpha_beta.png", "runtime_quality.png",
               "loss_curves.png", "best_spectrograms.png")
SCORES = ("quality_score", "style_distance", "content_distance", "spectral_convergence", "final_loss", "truth_score")
CLIP_KEYS = ("offset_seconds", "clip_seconds", "sample_rate_hz", "n_fft", "hop")


@dataclass
class Clip:
    """One player: its role (content, style, output, target), files relative to the page, a caption."""

    role: str
    audio: str | None
    image: str | None
    caption: str = ""


@dataclass
class PairView:
    name: str
    clips: list[Clip]
    scores: dict[str, str] = field(default_factory=dict)


@dataclass
class TrialView:
    """One trial (or run) to listen to: its settings, scores and pairs."""

    anchor: str
    title: str
    settings: dict[str, str]
    scores: dict[str, str]
    pairs: list[PairView] = field(default_factory=list)
    note: str = ""


@dataclass
class Table:
    id: str
    caption: str
    html: str
    note: str = ""


def fmt(value: Any, digits: int = 4) -> str:
    """A cell as the page shows it: floats to `digits` significant digits, missing values empty."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.{digits}g}"
    return str(value)


def html_table(frame: pd.DataFrame, table_id: str, caption: str, note: str = "") -> Table:
    """A DataFrame as an HTML table (cells through `fmt`), with an id the tests can find."""
    shown = frame.copy()
    for column in shown:
        shown[column] = [fmt(v) for v in shown[column]]
    html = shown.to_html(index=False, table_id=table_id, border=0, escape=True, na_rep="")
    return Table(table_id, caption, html, note)


def write_ogg(path: str | Path, audio: np.ndarray, sample_rate_hz: int, quality: float = 0.4) -> None:
    """Mono audio (samples,) as OGG Vorbis, peak-normalised if it would clip; written atomically."""
    import soundfile as sf

    audio = np.asarray(audio, dtype=np.float32)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > 1.0:
        audio = audio / peak
    with atomic_path(path) as tmp:
        # libsndfile's compression level: 0 = best quality, 1 = smallest file
        sf.write(str(tmp), audio, sample_rate_hz, format="OGG", subtype="VORBIS", compression_level=1.0 - quality)


def spectrogram_png(path: str | Path, spec: np.ndarray, sample_rate_hz: int, hop: int, title: str,
                    vmax: float | None = None) -> None:
    """A small PNG of one (bins, frames) log-magnitude: time in s, frequency in kHz."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.6, 2.4))
    seconds = spec.shape[1] * hop / sample_rate_hz
    ax.imshow(spec.astype(np.float32), origin="lower", aspect="auto", cmap="magma", vmin=0,
              vmax=vmax if vmax is not None else float(np.max(spec)), extent=(0, seconds, 0, sample_rate_hz / 2000))
    ax.set_title(title, fontsize=8)
    ax.set_xlabel("time (s)", fontsize=7)
    ax.set_ylabel("kHz", fontsize=7)
    ax.tick_params(labelsize=6)
    save_figure(fig, path, dpi=80)


def write_listening_report(folder: str | Path, *, title: str, summary: list[str], tables: list[Table],
                           plots: list[str], trials: list[TrialView], listen_note: str = "",
                           footer: str = "") -> Path:
    """Render report.html in `folder`; every file it names must already be there (relative paths)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    import re

    from markupsafe import Markup, escape

    summary = [Markup(re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", str(escape(line)))) for line in summary]  # **bold**
    html = env.get_template(TEMPLATE).render(title=title, summary=summary, tables=tables, plots=plots,
                                             trials=trials, listen_note=listen_note, footer=footer)
    path = Path(folder) / "report.html"
    write_text(path, html)
    return path


# ---------------------------------------------------------------- a sweep's page


def _read_csv(path: Path) -> pd.DataFrame:
    import pandas as pd

    from ..errors import MusicStyleError

    if not path.exists():
        raise MusicStyleError(f"no such file: {path} (run the sweep first)")
    return pd.read_csv(path, keep_default_na=True)


def objective_of(trials: pd.DataFrame) -> str:
    """The objective (a name of measures.OBJECTIVES) whose measures are trials.csv's objective_* columns."""
    from ..measures import OBJECTIVES

    columns = [c[len("objective_"):] for c in trials if c.startswith("objective_")]
    for name, measures in OBJECTIVES.items():
        if list(measures) == columns:
            return name
    return "quality"


def _trial_configs(results_dir: Path) -> dict[int, dict[str, Any]]:
    """Each trial's config as recorded in the study journal beside the results (empty if none)."""
    journal = results_dir / "study.journal"
    if not journal.exists():
        return {}
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(journal)))
    configs = {}
    for summary in storage.get_all_studies():
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        configs.update({t.number: t.user_attrs["config"] for t in study.get_trials(deepcopy=False)
                        if "config" in t.user_attrs})
    return configs


def clip_settings(row: pd.Series, configs: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
    """A pairs.csv row's clip (offset, length, rate, hop): its own columns, else its trial's config."""
    if all(k in row and row[k] == row[k] for k in CLIP_KEYS if k != "clip_seconds"):
        return {k: (None if k not in row or row[k] != row[k] else row[k]) for k in CLIP_KEYS}
    config = configs.get(int(row["trial"]))
    return {k: config.get(k) for k in CLIP_KEYS} if config else None


class _Clips:
    """Content, style (and target) players of each pair, written once under listen/clips/."""

    def __init__(self, results_dir: Path, pairs: pd.DataFrame, configs: dict[int, dict[str, Any]]) -> None:
        self.results_dir, self.pairs, self.configs = results_dir, pairs, configs
        self.done: dict[tuple[str, str], Clip] = {}

    def clip(self, trial: int, pair: str, role: str, spec: np.ndarray | None, frames: int, vmax: float) -> Clip:
        """The role's clip (content, style, target) as the trial read it; `spec` None: computed here."""
        from ..engine.audio import load_clip
        from ..engine.spectrogram import log_magnitude

        rows = self.pairs[(self.pairs["trial"] == trial) & (self.pairs["pair"] == pair)]
        if rows.empty or role not in rows or rows.iloc[0][role] != rows.iloc[0][role]:
            return Clip(role, None, None, "not recorded in pairs.csv")
        row = rows.iloc[0]
        settings = clip_settings(row, self.configs)
        key = (pair, role, str(row[role]), str(settings))
        if key in self.done:
            return self.done[key]
        stem = f"listen/clips/{slug(pair)}_{role}_{len(self.done)}"
        audio_rel = image_rel = None
        caption = Path(str(row[role])).name
        if settings:
            rate, hop = int(settings["sample_rate_hz"]), int(settings["hop"])
            offset = float(settings["offset_seconds"] or 0.0)
            try:
                audio = load_clip(row[role], rate, offset, settings["clip_seconds"])
                if spec is None:
                    spec = log_magnitude(audio, int(settings["n_fft"]), hop)[:, :frames]
                write_ogg(self.results_dir / f"{stem}.ogg", audio[: frames * hop], rate)
                audio_rel = f"{stem}.ogg"
                caption += f", {offset:g} s + {frames * hop / rate:.2f} s"
            except Exception as err:  # a moved or unreadable song: the page says so and goes on
                caption += f" (cannot read: {type(err).__name__})"
            if spec is not None:
                spectrogram_png(self.results_dir / f"{stem}.png", spec, rate, hop, f"{pair}: {role}", vmax)
                image_rel = f"{stem}.png"
        else:
            caption += " (clip settings not recorded)"
        self.done[key] = Clip(role, audio_rel, image_rel, caption)
        return self.done[key]


def _trial_view(results_dir: Path, row: pd.Series, params: list[str], clips: _Clips,
                pairs: pd.DataFrame) -> TrialView:
    import soundfile as sf

    number = int(row["trial"])
    kind = f", paper row: {row['paper_row']}" if row.get("paper_row") else ""
    view = TrialView(f"trial-{number}", f"Trial {number}{kind}",
                     {p: fmt(row[p]) for p in params if p in row and fmt(row[p])},
                     {k: fmt(row[k]) for k in SCORES if k in row and fmt(row[k])})
    folder = results_dir / "best" / f"trial_{number:04d}"
    archive = folder / "spectrograms.npz"
    if not archive.exists():
        view.note = (f"No audio kept for this trial: the sweep keeps the outputs of trials that were the best "
                     f"when they finished (best/trial_{number:04d}/ is absent).")
        return view
    with np.load(archive) as data:
        specs = {name: data[name].astype(np.float32) for name in data.files}
    for pair in sorted({name.split("/")[0] for name in specs}):
        rows = pairs[(pairs["trial"] == number) & (pairs["pair"] == pair)]
        has_target = len(rows) and "target" in rows and rows.iloc[0]["target"] == rows.iloc[0]["target"]
        roles = ["content", "style", *(["target"] if has_target or f"{pair}/target" in specs else [])]
        vmax = max(float(np.max(specs[f"{pair}/{r}"])) for r in ("content", "style"))
        frames = specs[f"{pair}/output"].shape[1]
        shown = [clips.clip(number, pair, r, specs.get(f"{pair}/{r}"), frames, vmax) for r in roles]
        wav = folder / f"{pair}.wav"
        stem = f"listen/trial_{number:04d}/{slug(pair)}"
        rate = sf.info(str(wav)).samplerate if wav.exists() else None
        hop = (clip_settings(rows.iloc[0], clips.configs) or {}).get("hop") if len(rows) else None
        output = Clip("output", None, None, f"trial {number}")
        if rate:
            audio, _ = sf.read(str(wav), dtype="float32")
            write_ogg(results_dir / f"{stem}.ogg", audio, rate)
            output.audio = f"{stem}.ogg"
        if rate and hop:
            spectrogram_png(results_dir / f"{stem}.png", specs[f"{pair}/output"], rate, int(hop),
                            f"{pair}: output, trial {number}", vmax)
            output.image = f"{stem}.png"
        view.pairs.append(PairView(pair, [*shown, output],
                                   {k: fmt(rows.iloc[0][k]) for k in SCORES if len(rows) and k in rows}))
    return view


def write_sweep_listening_report(results_dir: str | Path, k: int = 3) -> Path:
    """results_dir/report.html from trials.csv, pairs.csv, best/trial_NNNN/ and the plots there.

    Listens to the k best trials and the paper's rows; the content and style clips are read again from
    the files and clip settings pairs.csv records (older results: the trial's config in study.journal).
    """
    from ..measures import TRIAL_MEASURES
    from .common import activation_table, best_rows

    results_dir = Path(results_dir)
    trials = _read_csv(results_dir / "trials.csv")
    pairs = _read_csv(results_dir / "pairs.csv")
    for column in ("discarded", "paper_row", "reason"):
        if column in trials:
            trials[column] = trials[column].astype(object).where(trials[column].notna(), "")
    objective = objective_of(trials)
    columns = {"trial", "state", "seed", "paper_row", "paper_loss", "reason", "discarded", "repeat_of", "retry_of",
               "duration_seconds", "datetime_start", "datetime_complete", *TRIAL_MEASURES}
    params = [c for c in trials if c not in columns and not c.startswith("objective_")]
    best = best_rows(trials, objective, k)
    paper = trials[(trials["paper_row"] != "") & (trials["discarded"] == "")] if "paper_row" in trials else trials[:0]
    objective_columns = [c for c in trials if c.startswith("objective_")]
    measures = ["final_loss", "quality_score", "style_distance", "content_distance", "spectral_convergence",
                "truth_score", "runtime_seconds"]

    def cols(frame: pd.DataFrame, names: list[str]) -> pd.DataFrame:
        return frame[[n for n in names if n in frame]]

    tables = [html_table(cols(best, ["trial", *objective_columns, *params, *measures, "paper_row"]), "best-trials",
                         f"Best trials (objective {objective}, lower is better)",
                         "From trials.csv: the completed trials with the lowest objective."),
              html_table(cols(paper, ["paper_row", "trial", "state", "paper_loss", *measures]), "paper-rows",
                         "The paper's rows: its final loss beside the loss and the fair measures measured here",
                         "The paper's losses are on its two songs at full size; a total loss compares only runs "
                         "with the same weights, activation and optimiser. The fair measures compare all rows."),
              html_table(activation_table(trials) if "activation" in trials else trials[:0][[]],
                         "by-activation",
                         "Fair measures per activation (completed trials, mean ± std)")]
    states = trials[trials["discarded"] == ""]["state"].value_counts().to_dict()
    pair_names = list(dict.fromkeys(pairs["pair"])) if "pair" in pairs else []
    summary = [f"Study {results_dir.name}: objective {objective}; {len(trials)} trials ("
               + ", ".join(f"{s} {n}" for s, n in sorted(states.items())) + f"); {len(pair_names)} pairs ("
               + ", ".join(map(str, pair_names)) + ")."]
    if "datetime_start" in trials and trials["datetime_start"].notna().any():
        summary.append(f"First trial started {trials['datetime_start'].dropna().min()}, last ended "
                       f"{trials['datetime_complete'].dropna().max()}.")
    chosen = [*best["trial"], *[t for t in paper["trial"] if t not in set(best["trial"])]]
    clips = _Clips(results_dir, pairs, _trial_configs(results_dir))
    views = [_trial_view(results_dir, trials[trials["trial"] == t].iloc[0], params, clips, pairs) for t in chosen]
    page = write_listening_report(
        results_dir, title=f"Sweep {results_dir.name}: listening report", summary=summary, tables=tables,
        plots=[p for p in SWEEP_PLOTS if (results_dir / p).exists()], trials=views,
        listen_note=f"The {len(best)} best trials, then the paper's rows. Outputs are the trials' Griffin-Lim "
                    "audio, re-encoded as OGG Vorbis; a pair's spectrograms share the colour scale its content and "
                    "style set.",
        footer="Written by musicstyle.reports.listening from trials.csv, pairs.csv and best/ in this folder.")
    named = {Path(c.audio or "").as_posix() for v in views for p in v.pairs for c in p.clips} | \
        {Path(c.image or "").as_posix() for v in views for p in v.pairs for c in p.clips}
    for stale in (results_dir / "listen").rglob("*"):  # files of an earlier report that this one no longer names
        if stale.is_file() and stale.relative_to(results_dir).as_posix() not in named:
            stale.unlink()
    return page
