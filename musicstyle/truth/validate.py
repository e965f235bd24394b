"""`python -m musicstyle truth --out results/truth`: the whole validation in one resumable command.

Phases: render the corpus (cached), the baselines on every corpus, the transfers (runs.csv, resumable),
then the report. The wall time of each phase before the report goes into it (timings.json keeps every
invocation's, so a resumed validation reports each).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ..config import TransferConfig, make_config
from ..data.corpus import rendered_pairs
from ..data.rendered import INSTRUMENTS, load_manifest
from ..util.io import earlier_runs, ensure_writable_folder, write_json
from ..util.machine import code_version, describe
from .command import ACTIVATIONS, ALPHA_RANGE, BETA_RANGE, QUICK, Plan, all_baselines, plan_runs, run_all
from .report import write_report


def run_validation(out_dir: str | Path, quick: bool = False, paper_dir: str | None = None, seed: int = 0,
                   command: str = "python -m musicstyle truth", corpus_dir: str | None = None,
                   report_only: bool = False, workers: int = 1) -> Path:
    """Run (or resume) the validation into `out_dir` and write report.md; returns its path.

    `report_only` writes the report from the runs runs.csv already holds, running none; `workers`: transfers
    run in this many processes (each with cores / workers torch threads).
    """
    import torch

    out_dir = Path(out_dir)
    ensure_writable_folder(out_dir)
    plan = QUICK if quick else Plan()
    base: TransferConfig = make_config(plan.fixed | {"seed": seed})
    phases: dict[str, float] = {}
    start = time.perf_counter()
    pairs = rendered_pairs(corpus_dir)
    if plan.pairs is not None:
        pairs = pairs[: plan.pairs]
    phases["render corpus"] = time.perf_counter() - start
    manifest = load_manifest(Path(pairs[0].target).parent)
    print(f"{len(pairs)} rendered pairs; baselines ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    had_baselines = (out_dir / "baselines.csv").exists()
    baselines, notes = all_baselines(plan, pairs, base, paper_dir, out_dir)
    phases["baselines (read from baselines.csv)" if had_baselines else "baselines"] = time.perf_counter() - start
    runs = plan_runs(plan, pairs, seed)
    print(f"{len(runs)} transfers ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    if report_only:
        frame = earlier_runs(out_dir)
    else:
        frame = run_all(runs, pairs, base, out_dir, workers)
    phases["transfers (this invocation; earlier ones resumed from runs.csv)"] = time.perf_counter() - start
    phases["transfers (sum of every run's own time)"] = float(frame["seconds"].sum())
    timings = out_dir / "timings.json"  # every invocation's phases, so a resumed run keeps the first one's
    history = json.loads(timings.read_text()) if timings.exists() else []
    ran = {} if report_only else {"transfer processes": workers}
    history.append({k: round(v, 1) for k, v in phases.items()} | ran)
    write_json(timings, history)
    programs = sorted({p for pr in manifest["pairs"] for p in (pr["content_program"], pr["style_program"])})
    meta = {
        "command": command, "commit": code_version(), "precision": base.precision,
        "machine": describe() + ("" if report_only else f"; transfers in {workers} process(es)"),
        "device": base.device if base.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"),
        "phases": history, "planned": len(runs), "pair_names": [p.name for p in pairs], "notes": notes,
        "ablation": f"{plan.ablation_filters} filters, {plan.ablation_iterations} iterations, pairs "
                    f"{', '.join(p.name for p in pairs[: plan.ablation_pairs])}",
        "search": f"alpha log-uniform {ALPHA_RANGE}, beta log-uniform {BETA_RANGE}, activation "
                  f"{'/'.join(ACTIVATIONS)}, filters {'/'.join(map(str, plan.filters))}, iterations log-uniform "
                  f"{plan.iterations_range[0]}-{plan.iterations_range[1]}",
        "fixed": ", ".join(f"{k}={v}" for k, v in plan.fixed.items()) + f", seed base {seed}",
        "corpus_summary": f"{len(manifest['pieces'])} Bach chorales, {len(programs)} GM programs "
                          f"({', '.join(INSTRUMENTS[p][0] for p in programs if p in INSTRUMENTS)}), "
                          f"corpus seed {manifest['seed']}",
    }
    return write_report(out_dir, frame, baselines, meta)
