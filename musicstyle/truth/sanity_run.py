"""`python -m musicstyle truth sanity`: the sanity suite (musicstyle.truth.sanity) on every rendered pair,
written to sanity.csv (one row per pair and case) and sanity.md (pass rates per measure and per case,
the tuning pairs and the held-out pairs apart)."""

from __future__ import annotations

import time
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import TransferConfig, make_config
from ..data.rendered import load_manifest, render_corpus
from ..util.io import ensure_writable_folder, write_csv, write_text
from ..util.machine import code_version, describe
from .measures import truth_reference
from .sanity import EXPECT, sanity_cases, score_cases

FULL = {"frames": 430, "clip_seconds": None, "griffin_lim_iters": 500, "offset_seconds": 0.0}
QUICK = {"frames": None, "clip_seconds": 4.0, "griffin_lim_iters": 100, "offset_seconds": 0.0}
NOISE_ORDER = ("target GL500", "target + white 40 dB", "target + white 30 dB", "target + white 20 dB")


def pair_rows(job: tuple[dict[str, Any], str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every case's measures and checks for one manifest pair (runs in a worker process)."""
    import torch

    from ..data.rendered import read_score
    from ..engine.audio import load_clip

    torch.set_num_threads(1)
    pair, corpus_dir, settings = job
    root = Path(corpus_dir)
    config: TransferConfig = make_config(settings)
    clips = [load_clip(root / pair[k], config.sample_rate_hz, config.offset_seconds, config.clip_seconds)
             for k in ("content", "style", "target")]
    frames = min(1 + len(y) // config.hop for y in clips)
    frames = frames if config.frames is None else min(frames, config.frames)
    reference = truth_reference(*clips, frames, config, read_score(root / pair["score"]))
    rows = score_cases(sanity_cases(pair, root, frames, config), reference.measures)
    artefacts = {r["case"]: r["truth_artefacts_db"] for r in rows}
    rising = all(artefacts[a] < artefacts[b] for a, b in zip(NOISE_ORDER, NOISE_ORDER[1:]))
    for row in rows:
        row |= {"pair": pair["name"], "held_out": bool(pair.get("held_out")), "artefacts_rise_with_noise": rising,
                "target_class_ok": int(reference.model.programs[reference.target_class]) == pair["style_program"],
                "content_class_ok": int(reference.model.programs[reference.content_class]) == pair["content_program"]}
    return rows


def pass_rates(frame: pd.DataFrame) -> pd.DataFrame:
    """Per measure and pair group: the share of pairs on which every required check passes."""
    rows = []
    for group, part in [("tuning", frame[~frame["held_out"]]), ("held out", frame[frame["held_out"]]),
                        ("all", frame)]:
        if part.empty:
            continue
        for measure in EXPECT:
            required = part[part[f"{measure}_pass"].notna()]
            per_pair = required.groupby("pair")[f"{measure}_pass"].apply(lambda s: bool(s.astype(bool).all()))
            rows.append({"pairs": group, "measure": measure, "pass rate": per_pair.mean(), "n": len(per_pair)})
        per_pair = part.groupby("pair")["artefacts_rise_with_noise"].first()
        rows.append({"pairs": group, "measure": "truth_artefacts_db (rises with white noise)",
                     "pass rate": per_pair.astype(bool).mean(), "n": len(per_pair)})
    return pd.DataFrame(rows)


def case_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per case: each measure's median and, where required, its pass rate over pairs."""
    rows = []
    for case, part in frame.groupby("case", sort=False):
        row: dict[str, Any] = {"case": case}
        for measure in (*EXPECT, "truth_log_odds", "truth_artefacts_db", "truth_lsd_db"):
            row[f"{measure} median"] = part[measure].median()
            if measure in EXPECT:
                row[f"{measure} expects"] = part[f"{measure}_expect"].iloc[0]
                checks = part[f"{measure}_pass"].dropna()
                row[f"{measure} pass"] = checks.astype(bool).mean() if len(checks) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def run_sanity(out_dir: str | Path, quick: bool = False, pairs: int | None = None,
               command: str = "python -m musicstyle truth sanity", corpus_dir: str | None = None) -> Path:
    """Run the suite into out_dir/sanity.csv and sanity.md; returns the report's path."""
    out_dir = Path(out_dir)
    ensure_writable_folder(out_dir)
    start = time.perf_counter()
    root = render_corpus(corpus_dir).parent
    manifest = load_manifest(root)
    chosen = manifest["pairs"]
    limit = 1 if quick else pairs
    if limit is not None:
        chosen = [p for p in chosen if not p["held_out"]][:limit] + [p for p in chosen if p["held_out"]][:limit]
    settings = QUICK if quick else FULL
    jobs = [(p, str(root), settings) for p in chosen]
    with get_context("spawn").Pool(2) as pool:
        frame = pd.DataFrame([r for rows in pool.map(pair_rows, jobs) for r in rows])
    write_csv(out_dir / ("sanity-quick.csv" if quick else "sanity.csv"), frame)
    rates = pass_rates(frame)
    classes = frame.groupby("pair")[["target_class_ok", "content_class_ok"]].first()
    lines = [
        "# Sanity suite of the truth measures", "",
        f"Written by `{command}` at code version {code_version()}, {time.strftime('%Y-%m-%d')}, in "
        f"{(time.perf_counter() - start) / 60:.1f} min. Machine: {describe()}. Precision: float32 "
        "Griffin-Lim, float64 measures (no network is run).", "",
        f"Pairs: {len(chosen)} of the rendered corpus ({sum(not p['held_out'] for p in chosen)} tuning, "
        f"{sum(p['held_out'] for p in chosen)} held out), settings "
        + ", ".join(f"{k}={v}" for k, v in settings.items())
        + "; the reference and frontier at seed 0, the cases at seed 1. What each case is, and what each measure "
        "must see or ignore: docs/truth.md and musicstyle/truth/sanity.py.", "",
        "## Pass rates per measure", "",
        "The share of pairs on which every required check of the measure holds (bar: 0.9).", "",
        rates.to_markdown(index=False, floatfmt=".2f"), "",
        f"The timbre model named the target's instrument on {classes['target_class_ok'].mean():.0%} of pairs and "
        f"the content's on {classes['content_class_ok'].mean():.0%} (from the clean clips).", "",
        "## Per case", "",
        "Medians over pairs; `expects`: see (> 0.5), ignore (< 0.5), good (score < 0), bad (score >= 0), "
        "report (not required); `pass`: share of pairs meeting it.", "",
        case_table(frame).to_markdown(index=False, floatfmt=".2f"), ""]
    report = out_dir / ("sanity-quick.md" if quick else "sanity.md")
    write_text(report, "\n".join(lines))
    return report
