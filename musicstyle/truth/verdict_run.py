"""The verdict's phases and its report (musicstyle.truth.verdict holds the plan, the rule and the runs).

verdict.md opens with one generated paragraph (the verdict, whichever way it goes), then the decision
rule, then a table in the form of Cifka et al. (ICASSP 2021): LSD, timbre, notes and artefacts for the
trivial outputs and each arm, with how many pairs each arm beats the frontier on.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
from scipy.stats import binom

from ..util.io import earlier_runs, write_csv, write_text
from ..util.machine import code_version, describe
from .measures import frontier_margin
from .verdict import ARMS, QUICK, VerdictPlan, baselines, decision_rule, prepare, rescore, run_all, sign_test_threshold

COLUMNS = {"truth_lsd_db": "LSD (dB)", "truth_log_odds": "timbre log-odds", "truth_timbre": "timbre",
           "truth_notes": "notes", "truth_artefacts_db": "artefacts (dB)", "truth_score": "score"}


def arm_table(runs: pd.DataFrame, base: pd.DataFrame, pairs: int) -> pd.DataFrame:
    """One row per trivial output and per (budget, arm): means over pairs; arms with k/N beating the frontier."""
    rows = []
    for name, part in base.groupby("baseline", sort=False):
        rows.append({"output": name, "budget": "", **{v: part[k].mean() for k, v in COLUMNS.items()},
                     "pairs": len(part), "beats frontier": "", "sign-test p": "", "beats trivial outputs alone": ""})
    trivial = base[base["baseline"] != "oracle"]
    points = {pair: list(zip(part["truth_timbre"], part["truth_notes"])) for pair, part in trivial.groupby("pair")}
    ok = runs[runs["state"] == "ok"] if "state" in runs else runs
    for (budget, arm), part in ok.groupby(["budget", "arm"], sort=False):
        wins = int((part["truth_score"] < 0).sum())
        alone = sum(frontier_margin((t, n), points[pair], midpoints=False) > 0
                    for t, n, pair in zip(part["truth_timbre"], part["truth_notes"], part["pair"]))
        rows.append({"output": arm, "budget": budget, **{v: part[k].mean() for k, v in COLUMNS.items()},
                     "pairs": len(part), "beats frontier": f"{wins}/{len(part)}",
                     "sign-test p": f"{binom.sf(wins - 1, len(part), 0.5):.4f}" if len(part) == pairs else
                     "(incomplete)", "beats trivial outputs alone": f"{alone}/{len(part)}"})
    return pd.DataFrame(rows)


def verdict_paragraph(runs: pd.DataFrame, pairs: int, settings: str) -> str:
    """The verdict in words, generated from the runs (no fixed claim)."""
    k = sign_test_threshold(pairs)
    ok = runs[runs["state"] == "ok"] if "state" in runs else runs
    judged, passing, pending = [], [], []
    for budget in dict.fromkeys(ok["budget"]) if len(ok) else []:
        for arm in ARMS:
            part = ok[(ok["budget"] == budget) & (ok["arm"] == arm)]
            if len(part) < pairs:
                pending.append(f"{arm} at {budget} ({len(part)}/{pairs} pairs run)")
                continue
            wins = int((part["truth_score"] < 0).sum())
            judged.append(f"{arm} at {budget}: {wins}/{pairs}")
            if wins >= k:
                passing.append(f"{arm} at {budget}")
    missing = [f"{arm} at {b}" for b in ("300 iterations", "converged") for arm in ARMS
               if (not len(ok) or not ((ok["budget"] == b) & (ok["arm"] == arm)).any())
               and not any(p.startswith(f"{arm} at {b} (") for p in pending)]
    if not judged:
        head = f"**No verdict yet**: no arm has run on all {pairs} held-out pairs."
    elif passing:
        head = (f"**The method beats every trivial output** (on at least {k} of {pairs} held-out pairs, sign test "
                f"p < 0.05) for: {'; '.join(passing)}.")
    else:
        head = (f"**No arm beats the trivial outputs**: none beats the trivial frontier on {k} or more of the "
                f"{pairs} held-out pairs, so on these pairs the method is not shown to do better than copying, "
                "mixing or EQ matching (one-sided sign test, p < 0.05).")
    parts = [head, f"Pairs beating the frontier per arm: {'; '.join(judged)}." if judged else "",
             f"Not yet complete: {'; '.join(pending + missing)} (run the same command to resume)."
             if pending or missing else "", f"Settings: {settings}."]
    return " ".join(p for p in parts if p)


def used_precisions(frame: pd.DataFrame, base) -> str:
    """The precisions the runs record; 'auto' (recorded before runs resolved it) with what it resolves to here."""
    from ..engine.network import resolve_precision
    from ..engine.transfer import resolve_device

    values = sorted(set(frame["precision"].astype(str))) if "precision" in frame and len(frame) else []
    here = resolve_precision("auto", resolve_device(base.device))[0]
    return ", ".join(f"auto (resolves to {here} on this machine)" if v == "auto" else v for v in values) or "none yet"


def run_verdict(out_dir: str | Path, quick: bool = False, minutes: float | None = None, report_only: bool = False,
                command: str = "python -m musicstyle truth verdict", corpus_dir: str | None = None,
                workers: int = 1, rescore_runs: bool = False) -> Path:
    """Run (or resume) the verdict's phases into out_dir and write verdict.md; returns its path.

    `rescore_runs`: re-measure the baselines and every finished run's saved audio with the current truth
    measures, running no transfer (after the timbre model is retrained)."""
    out_dir = Path(out_dir)
    plan: VerdictPlan = QUICK if quick else VerdictPlan()
    phases = []
    start = time.perf_counter()
    pairs, base, runs = prepare(plan, out_dir, 0, corpus_dir)
    phases.append(("corpus and decision rule", time.perf_counter() - start))
    start = time.perf_counter()
    references: dict = {}  # each pair's trivial frontier, built once for the baselines and the runs
    base_frame = baselines(pairs, base, out_dir, references, again=rescore_runs)
    phases.append(("baselines", time.perf_counter() - start))
    start = time.perf_counter()
    if rescore_runs:
        frame = rescore(earlier_runs(out_dir), pairs, base, out_dir, references)
    elif report_only:
        frame = earlier_runs(out_dir)
    else:
        frame = run_all(runs, pairs, base, out_dir, minutes, references, workers)
    phases.append(("transfers (this invocation)", time.perf_counter() - start))
    log = out_dir / "phases.csv"
    history = pd.read_csv(log) if log.exists() else pd.DataFrame()
    stamp = time.strftime("%Y-%m-%d %H:%M")
    now = pd.DataFrame([{"invocation": stamp, "command": command, "code_version": code_version(), "phase": p,
                         "minutes": round(s / 60, 2)} for p, s in phases])
    write_csv(log, pd.concat([history, now], ignore_index=True))
    settings = (", ".join(f"{k}={v}" for k, v in plan.fixed.items())
                + f", precision used: {used_precisions(frame, base)}, L-BFGS; arms' own settings in the table's names")
    table = arm_table(frame, base_frame, len(pairs))
    spent = pd.read_csv(log).groupby("phase", sort=False)["minutes"].sum()
    lines = [
        "# Verdict: does the method beat a trivial output at the paper's full budget?", "",
        verdict_paragraph(frame, len(pairs), settings), "",
        f"Written by `{command}` at code version {code_version()}, {stamp}. Machine: {describe()}. "
        f"Pairs: the {len(pairs)} held-out pairs of the rendered corpus ({', '.join(p.name for p in pairs)}). "
        "Minutes per phase over every invocation: " + ", ".join(f"{p} {m:.1f}" for p, m in spent.items())
        + f" (an invocation stopped by a kill records no phases; the runs' own time, summed over runs.csv: "
        f"{frame['seconds'].sum() / 60 if 'seconds' in frame else 0:.1f} min of transfers).",
        "", decision_rule(len(pairs)).replace("# Decision rule", "## Decision rule"), "",
        "## Every output, mean over pairs", "",
        "In the form of Cifka et al. (ICASSP 2021): LSD (dB, lower is better), timbre (the target's instrument "
        "against the content's: log-odds, higher is better; `timbre` = sigmoid(-log-odds), 0 is the target's "
        "instrument), notes (0 the target's, 1 as far as the style song), artefacts (noise floor, dB below the "
        "frames' peaks, lower is cleaner), score (minus the margin over the trivial frontier; below 0 beats every "
        "trivial output). `beats trivial outputs alone`: the pairs on which the arm beats every trivial output by "
        "the tolerance without the score's midpoints (timbre and notes below 0.5; docs/truth.md), a check of how "
        "much the verdict rests on them. The rule above was fixed before the first run; the measures were revised "
        "after it when they failed their sanity suite (results/truth/sanity.md), and `--rescore` measured every "
        "saved output again: phases.csv lists each invocation with its code version.", "",
        table.to_markdown(index=False, floatfmt=".3f"), ""]
    report = out_dir / "verdict.md"
    write_text(report, "\n".join(lines))
    return report
