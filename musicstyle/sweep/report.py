"""The sweep's report: trials.csv, pairs.csv, results.md and its plots under results/<study>/, built
from the study alone (so `--report-only` rebuilds it from any storage), and the re-evaluation of
the best configurations over several seeds.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from ..measures import TRIAL_MEASURES, TRUTH_MEASURES, objective_measures
from ..reports.common import activation_table, best_rows, fmt, mean_std, plot_spectrograms
from ..reports.listening import write_sweep_listening_report
from ..util.io import write_csv, write_text
from ..util.machine import describe
from . import plots
from .confirm import confirm_markdown
from .objective import PairCache, run_pair, summarise
from .plan import SweepPlan
from .quarantine import markdown as quarantine_section
from .quarantine import quarantined, rescore
from .trials import is_discarded, top_trials


def trial_table(trials: list[Any], objective: str) -> pd.DataFrame:
    """One row per trial: number, state, objective value(s), every parameter, seed, reasons, measures."""
    names = objective_measures(objective)
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
        row["precision"] = (a.get("config") or {}).get("precision")  # what ran (the sweep resolves 'auto')
        rows.append(row)
    columns = ["trial", "state"] + [f"objective_{n}" for n in names] + params
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=columns)
    return frame[[c for c in columns if c in frame] + [c for c in frame if c not in columns]]


def pair_table(trials: list[Any]) -> pd.DataFrame:
    """One row per trial and pair, with the trial's parameters."""
    rows = []
    for t in trials:
        for pair in t.user_attrs.get("pairs", []):
            rows.append({"trial": t.number, "trial_state": t.state.name, **t.params, **pair})
    return pd.DataFrame(rows)


def _table(frame: pd.DataFrame, columns: list[str]) -> str:
    shown = frame[[c for c in columns if c in frame]].copy()
    for column in shown:
        shown[column] = [fmt(v) for v in shown[column]]
    return shown.to_markdown(index=False)


def results_markdown(frame: pd.DataFrame, meta: dict[str, Any], reevaluation: pd.DataFrame | None,
                     plots: list[str], notes: list[str], baselines: list[str] | None = None) -> str:
    """results.md: header, best configurations, the paper's rows, per activation, re-evaluation, plots."""
    objective = meta["objective"]
    params = [c for c in meta.get("params", []) if c in frame]
    kept = frame[frame["discarded"].fillna("") == ""] if not frame.empty else frame
    states = kept["state"].value_counts().to_dict() if not kept.empty else {}
    discarded = len(frame) - len(kept)
    counted = 0 if frame.empty else int((frame["discarded"] == "").sum() - (frame["state"] == "RUNNING").sum()
                                        - (frame["state"] == "WAITING").sum())
    lines = [f"# Sweep `{meta['study']}`", "",
             f"Objective **{objective}** ({', '.join(objective_measures(objective))}, lower is better); "
             f"{counted} of {meta['trials']} trials done; states: "
             + (", ".join(f"{k} {v}" for k, v in sorted(states.items())) or "none")
             + (f"; {discarded} discarded (stale, interrupted or surplus, not counted)" if discarded else "") + ".",
             f"Corpus: {meta.get('corpus', '')}.", f"Fixed settings: {meta.get('fixed', '')}.",
             f"Precision used: {meta.get('precision', 'unknown')}.", f"Machine: {meta.get('machine', 'unknown')}.",
             *([f"Projected at the start: {meta['projection']}."] if meta.get("projection") else []),
             runtime_line(frame), ""]
    lines += ["## Best configurations", ""]
    best = best_rows(frame, objective)
    truth = [k for k in TRUTH_MEASURES if k in frame and frame[k].notna().any()]  # pairs with targets only
    measures = ["final_loss", "quality_score", "style_distance", "content_distance", "spectral_convergence",
                *truth, "runtime_seconds"]
    lines.append(_table(best, ["trial"] + params + measures + ["paper_row"]) if not best.empty
                 else "No completed trial yet.")
    lines += ["", *(baselines or [])]
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
                         **{k: mean_std(group[k]) for k in ("quality_score", "style_distance", "content_distance",
                                                             "truth_score", "final_loss")
                            if k in group and group[k].notna().any()}})
        lines.append(pd.DataFrame(rows).to_markdown(index=False))
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def runtime_line(frame: pd.DataFrame) -> str:
    """'Trial runtime (one worker): COMPLETE 41 ± 15 s, PRUNED 30 ± 9 s; peak memory 1.4 GB.'"""
    if frame.empty or "runtime_seconds" not in frame:
        return ""
    parts = [f"{state} {mean_std(group['runtime_seconds'])} s" for state, group in frame.groupby("state")
             if group["runtime_seconds"].notna().any()]
    peak = frame["peak_memory_mb"].dropna().max() if "peak_memory_mb" in frame else None
    memory = f"; peak memory {peak / 1024:.2f} GB" if peak is not None and np.isfinite(peak) else ""
    wall = ""
    if frame["datetime_complete"].notna().any():
        span = (pd.to_datetime(frame["datetime_complete"].dropna()).max()
                - pd.to_datetime(frame["datetime_start"].dropna()).min())
        wall = f"; wall time from the first start to the last end {span.total_seconds() / 60:.1f} min"
    return f"Trial runtime per worker: {', '.join(parts)}{memory}{wall}." if parts else ""



def study_machine(study: optuna.Study, frame: pd.DataFrame) -> dict[str, str]:
    """The precision the trials ran (from their configs, else what the sweep resolved), the machine and
    the start's projection line, as the sweep recorded them on the study."""
    attrs = study.user_attrs
    used = sorted(str(v) for v in frame["precision"].dropna().unique()) if "precision" in frame else []
    precision = ", ".join(used) or attrs.get("precision", "unknown")
    if attrs.get("precision_reason"):
        precision += f" ({attrs['precision_reason']})"
    projection = (attrs.get("projection") or {}).get("line", "").removeprefix("projection: ")
    return {"precision": precision, "machine": attrs.get("machine") or describe(), "projection": projection}


def reevaluate(study: optuna.Study, plan: SweepPlan, k: int, seeds: int) -> pd.DataFrame:
    """Re-run the top k configurations with `seeds` seeds over every pair (no pruning); rows per
    (trial, seed) are written to results/<study>/reevaluate.csv and returned."""
    cache = PairCache()
    rows = []
    for trial in top_trials(study, k):
        for offset in range(seeds):
            seed = plan.seed + offset
            config = plan.settings.config_for(dict(trial.params), seed=seed)
            outcomes = [run_pair(pair, i, config, cache) for i, pair in enumerate(plan.pairs)]
            failed = [o.row["error"] for o in outcomes if o.row["status"] != "ok"]
            summary = summarise(outcomes)
            rows.append({"trial": trial.number, "seed": seed, **dict(trial.params),
                         **{k2: summary[k2] for k2 in ("quality_score", "style_distance", "content_distance",
                                                       "spectral_convergence", "truth_score", "final_loss")},
                         "error": "; ".join(failed)})
            if not plan.quiet:
                name = objective_measures(plan.objective)[0]
                print(f"re-evaluated trial {trial.number} seed {seed}: {name} {summary[name]}",
                      file=sys.stderr, flush=True)
    frame = pd.DataFrame(rows)
    write_csv(plan.results_dir / "reevaluate.csv", frame)
    return frame


def describe_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def _best_spectrogram_plot(plan: SweepPlan, best: FrozenTrial, path: Path) -> bool:
    archive = plan.results_dir / "best" / f"trial_{best.number:04d}" / "spectrograms.npz"
    if not archive.exists():
        return False
    with np.load(archive) as data:
        pair = sorted({name.split("/")[0] for name in data.files})[0]
        specs = {f"{pair}: {role}": data[f"{pair}/{role}"].astype(np.float32)
                 for role in ("content", "style", "output")}
    config = plan.settings.base_config()
    plot_spectrograms(specs, path, config.sample_rate_hz, config.hop,
                      title=f"best trial {best.number}: {describe_params(best.params)}")
    return True


def baseline_table(plan: SweepPlan) -> pd.DataFrame:
    """The trivial baselines (copy either song, mix them; musicstyle/data/baselines.py) at the sweep's settings,
    measured on every pair and averaged: what a trial has to beat. Cached in baselines.csv per study."""
    from ..data.baselines import score_baselines
    from ..engine.audio import load_clip
    from ..engine.transfer import load_pair
    from ..truth.measures import reference_for
    from .objective import pair_config

    path = plan.results_dir / "baselines.csv"
    if path.exists():
        return pd.read_csv(path)
    rows = []
    for pair in plan.pairs:
        config = pair_config(plan.settings.base_config(), pair)
        spectrograms = load_pair(pair.content, pair.style, config)
        reference = target = None
        if pair.target is not None:
            reference = reference_for(pair, config)
            target = load_clip(pair.target, config.sample_rate_hz, config.offset_seconds, config.clip_seconds)
        rows += [{"pair": pair.name, **row} for row in score_baselines(spectrograms, config, reference, target)]
    per_pair = pd.DataFrame(rows)
    write_csv(plan.results_dir / "baselines-pairs.csv", per_pair)
    table = per_pair.drop(columns="pair").groupby("baseline", sort=False).mean().reset_index()
    write_csv(path, table)
    return table


def baseline_lines(frame: pd.DataFrame, baselines: pd.DataFrame, objective: str) -> list[str]:
    """results.md's baseline section: the table, and whether the best trial beats the best baseline."""
    measures = [m for m in objective_measures(objective) if m in baselines]
    columns = ["baseline", *dict.fromkeys([*measures, "quality_score", "style_distance", "content_distance",
                                           *[k for k in TRUTH_MEASURES if k in baselines]])]
    lines = ["## Trivial baselines (mean over the pairs, at the sweep's settings)", "",
             "Copying either song, mixing them, all through the same Griffin-Lim (`musicstyle/data/baselines.py`;"
             " the oracle is the target itself through Griffin-Lim, the floor). A setting is only worth reporting"
             " as better where it beats these.", "", _table(baselines, columns), ""]
    best = best_rows(frame, objective)
    if len(measures) == 1 and not best.empty:
        measure = measures[0]
        trivial = baselines[baselines["baseline"] != "oracle"]
        floor = trivial.loc[trivial[measure].idxmin()]
        value = float(best.iloc[0][measure])
        verdict = "beats" if value < floor[measure] else "does not beat"
        lines += [f"The best trial ({measure} {value:.4g}) {verdict} the best trivial baseline, "
                  f"{floor['baseline']} ({floor[measure]:.4g}).", ""]
        if measure == "truth_score":  # the score's own zero: beating every trivial output of each pair
            where = "below" if value < 0 else "not below"
            lines += [f"truth_score below 0 means beating every trivial output of a pair (docs/truth.md); the best "
                      f"trial's mean over pairs is {where} 0.", ""]
    return lines


def write_report(study: optuna.Study, plan: SweepPlan) -> Path:
    """trials.csv, pairs.csv, results.md and the PNG plots under results/<study>/ (atomically).

    A plot that cannot be drawn (too few trials, no alpha/beta searched) is skipped with a note.
    """
    folder = plan.results_dir
    trials = [t for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING]
    frame = rescore(trial_table(trials, plan.objective), trials, set(quarantined(study)), plan.objective)
    write_csv(folder / "trials.csv", frame)
    write_csv(folder / "pairs.csv", pair_table(trials))
    notes: list[str] = []
    drawn: list[str] = []
    completed = [t for t in trials if t.state == TrialState.COMPLETE and not is_discarded(t)]
    best = top_trials(study, 3)

    def draw(name: str, needs: int, action: Any) -> None:
        if len(completed) < needs:
            notes.append(f"{name} skipped: needs {needs} completed trial(s), the study has {len(completed)}")
            return
        try:
            if action(folder / name) is not False:
                drawn.append(name)
        except Exception as err:  # a plot never stops the report
            notes.append(f"{name} skipped: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")

    draw("by_activation.png", 1, lambda p: plots.plot_by_activation(frame, p))
    draw("history.png", 1, lambda p: plots.plot_optuna("history", study, p, plan.objective))
    draw("importance.png", 2, lambda p: plots.plot_optuna("importance", study, p, plan.objective))
    draw("alpha_beta.png", 1, lambda p: plots.plot_alpha_beta(frame, p, plan.objective))
    draw("runtime_quality.png", 1, lambda p: plots.plot_runtime_quality(frame, p))
    draw("loss_curves.png", 1, lambda p: plots.plot_loss_curves(best, p))
    if best:
        draw("best_spectrograms.png", 1, lambda p: _best_spectrogram_plot(plan, best[0], p) or notes.append(
            f"best_spectrograms.png skipped: the outputs of trial {best[0].number} are not under {folder / 'best'}")
            or False)
    reevaluation_path = folder / "reevaluate.csv"
    reevaluation = pd.read_csv(reevaluation_path) if reevaluation_path.exists() else None
    fixed = ", ".join(f"{k}={v}" for k, v in plan.settings.fixed.items()) or "TransferConfig defaults"
    meta = {"study": plan.study_name, "objective": plan.objective, "trials": plan.trials,
            "params": list(plan.settings.search), "fixed": fixed + f", seed={plan.seed}",
            "corpus": f"{len(plan.pairs)} pairs ({', '.join(p.name for p in plan.pairs)})",
            **study_machine(study, frame)}
    path = folder / "results.md"
    try:  # like a plot, the baselines never stop the report
        baselines = baseline_lines(frame, baseline_table(plan), plan.objective)
    except Exception as err:
        baselines = []
        notes.append(f"baselines skipped: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
    text = results_markdown(frame, meta, reevaluation, drawn, notes, baselines)
    first, rest = text.split("\n", 1)  # the full-fidelity answer, then quarantined pairs, right under the title
    opening = [*confirm_markdown(folder, plan.settings, plan.objective), *quarantine_section(study, len(plan.pairs))]
    write_text(path, "\n".join([first, "", *opening, rest.lstrip("\n")]))
    try:  # like a plot, the listening page never stops the report
        write_sweep_listening_report(folder)
    except Exception as err:
        print(f"report.html not written: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
              file=sys.stderr)
    return path
