"""`python sweep.py`: parse the flags, check everything before any trial, run the workers, write the report."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import optuna

from ..cli import run_cli
from ..data.corpus import resolve_pairs
from ..data.paper_songs import SONGS
from ..errors import ConfigError
from ..measures import NEEDS_TARGETS, OBJECTIVES
from ..util.io import ensure_writable_folder
from ..util.machine import limit_threads
from ..util.names import check_name
from .budget import measure, record, resolve_sweep_precision
from .config import load_settings, promoted
from .confirm import confirm
from .plan import SweepPlan, loss_objective_warning
from .quarantine import TooManyQuarantined, recorded_before, stop_if_too_many
from .report import reevaluate, write_report
from .retry import retrying
from .stop import catch_stop_signals
from .storage import open_study, storage_label
from .trials import counted_trials, fail_stale_trials, requeue_interrupted
from .workers import default_workers, run_workers


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python sweep.py", description="Optuna sweep of random-network audio style transfer over a corpus "
        "of song pairs: tables, plots and the paper's four rows under results/<study>/.")
    parser.add_argument("--config", default="configs/default.yaml", help="sweep config YAML (default: %(default)s)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config entry by dotted key, e.g. --set fixed.iterations=50 "
                             "--set search.alpha.low=1e-3 (repeatable)")
    parser.add_argument("--trials", type=int, help="trials in total for the study, across processes and "
                        "restarts (default: the config's study.trials)")
    parser.add_argument("--study", help="study name (default: the config file's name); an existing one resumes")
    parser.add_argument("--storage", help="Optuna storage URL: sqlite:///FILE, postgresql://USER@HOST/DB, "
                        "journal:FILE (default: a journal file results/<study>/study.journal)")
    parser.add_argument("--results", default="results", help="folder holding results/<study>/ (default: %(default)s)")
    parser.add_argument("--workers", type=int, help="processes to run here, sharing the storage, each with "
                        "cores/N torch threads (default: one per CPU core, at most 8; 1 with a GPU)")
    parser.add_argument("--seed", type=int, help="study seed (default: the config's study.seed)")
    parser.add_argument("--objective", choices=tuple(OBJECTIVES), help="what the trials minimise: " + "; ".join(
        f"{name} ({', '.join(measures)})" for name, measures in OBJECTIVES.items()))
    parser.add_argument("--corpus", help="builtin, builtin-reverse, paper, rendered (pairs with known targets; "
                        "rendered:N for its first N) or a corpus YAML file")
    parser.add_argument("--content-dir", help="folder of content songs (with --style-dir)")
    parser.add_argument("--style-dir", help="folder of style songs (paired by name, else by sorted order)")
    parser.add_argument("--paper-dir", help=f"folder with the paper's {SONGS} (--corpus paper)")
    parser.add_argument("--report-only", action="store_true", help="rebuild tables and plots from the storage")
    parser.add_argument("--reevaluate", type=int, default=0, metavar="K", help="re-run the top K configurations")
    parser.add_argument("--seeds", type=int, default=3, metavar="S", help="seeds per re-run configuration")
    parser.add_argument("--quiet", action="store_true", help="no per-trial progress lines")
    return parser


def plan_from_args(args: argparse.Namespace) -> SweepPlan:
    """Parse and check everything (config, corpus, results folder) before any trial."""
    overrides = list(args.overrides)
    for key in ("trials", "seed", "objective"):
        if getattr(args, key) is not None:
            overrides.append(f"study.{key}={getattr(args, key)}")
    settings = load_settings(args.config, overrides)
    workers = default_workers() if args.workers is None else args.workers
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if args.reevaluate < 0 or args.seeds < 1:
        raise ConfigError("--reevaluate K needs K >= 0 and --seeds S needs S >= 1")
    name = args.study or Path(args.config).stem
    check_name(name, "--study name (default: the config file's name)")
    results_dir = Path(args.results) / name
    known_broken = recorded_before(args.storage, results_dir, name)  # a resumed study's quarantined pairs
    pairs = resolve_pairs(settings, args.corpus, args.content_dir, args.style_dir, args.paper_dir, known_broken)
    untargeted = [p.name for p in pairs if p.target is None]
    if settings.objective in NEEDS_TARGETS and untargeted:
        raise ConfigError(f"{settings.source}: objective '{settings.objective}' needs a target for every pair "
                          f"(--corpus rendered); these have none: {', '.join(untargeted[:5])}")
    ensure_writable_folder(results_dir, "results")
    return SweepPlan(settings, pairs, name, results_dir, args.storage, settings.study["trials"], workers,
                     args.quiet)


def prepare(plan: SweepPlan) -> optuna.Study:
    """Open or create the study (a new one queues the paper's rows), recover stale trials."""
    study = open_study(plan)
    stale = fail_stale_trials(study, plan.settings.study["stale_after_seconds"])
    if stale:
        print(f"re-running {len(stale)} trial(s) left RUNNING by a stopped process: {stale}", file=sys.stderr)
    return study


def sweep(args: argparse.Namespace) -> int:
    """The whole sweep: check, prepare, run the workers, then write the report (also after Ctrl-C)."""
    catch_stop_signals()
    plan = plan_from_args(args)
    limit_threads(os.cpu_count() or 1)  # this process's own work (re-evaluation); workers set theirs
    if not args.report_only:  # once, before the study records (or checks) the fixed settings
        precision, why = resolve_sweep_precision(plan.settings)
    warning = loss_objective_warning(plan.settings)
    if warning and not args.report_only:
        print(warning, file=sys.stderr)
    study = open_study(plan, create=False) if args.report_only else prepare(plan)
    if args.report_only and args.trials is None:
        plan.trials = int(study.user_attrs.get("trials", plan.trials))
    elif not args.report_only:
        study.set_user_attr("trials", plan.trials)
    status = 0
    stopped: TooManyQuarantined | None = None
    if not args.report_only:
        done = counted_trials(study.get_trials(deepcopy=False))
        print(f"study '{plan.study_name}' ({plan.objective}): {done}/{plan.trials} trials done, "
              f"{len(plan.pairs)} pairs, {plan.workers} worker(s); storage {storage_label(plan)}", file=sys.stderr)
        projection = measure(plan, precision, why, plan.trials - done) if done < plan.trials else None
        if projection is not None:
            print(projection.line(), file=sys.stderr, flush=True)
        record(study, precision, why, projection)
        try:
            run_workers(plan)
        except KeyboardInterrupt:
            print("interrupted: finished trials stay recorded; the running one re-runs on resume; writing the "
                  "report", file=sys.stderr)
            requeue_interrupted(study)
            status = 130
        except TooManyQuarantined as err:
            stopped = err
        if stopped is None and status == 0:  # workers in other processes stopped on their own
            try:
                retrying(lambda: stop_if_too_many(study, [pair.name for pair in plan.pairs]),
                         plan.settings.study["storage_retry_seconds"], "reading the study after the workers")
            except TooManyQuarantined as err:
                stopped = err
    if plan.settings.confirm["enabled"] and status == 0 and stopped is None and not args.report_only:
        print(f"confirming the best {promoted(plan.settings.confirm, plan.trials)} setting(s) at full fidelity "
              f"({plan.settings.confirm['seeds']} seed(s) x {len(plan.pairs)} pairs; results/<study>/confirm.csv)",
              file=sys.stderr, flush=True)
        confirm(study, plan)
    if args.reevaluate and status == 0:
        reevaluate(study, plan, args.reevaluate, args.seeds)
    path = write_report(study, plan)
    print(f"wrote {path}, {plan.results_dir / 'trials.csv'}, {plan.results_dir / 'pairs.csv'} and plots",
          file=sys.stderr)
    if stopped is not None:  # after the report: one line, exit status 2
        raise stopped
    return status


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python sweep.py`: bad input is one line and exit status 2."""
    args = build_parser().parse_args(argv)
    return run_cli(lambda: sweep(args))
