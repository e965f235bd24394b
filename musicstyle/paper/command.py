"""`python -m musicstyle reproduce`: the comparison in phases, in this order, each timed into phases.csv:

1. rows and ablation, 2. converged, 3. limit (the planned runs, `runs.py`), then the baselines,
4. joint search (`search.py`), 5. finalists and 6. precision check (`finalists.py`);
then report.md (`report.py`), report.html (`listen.py`) and the plots. A phase with nothing left to do
(a restart after it finished) records no row. `--listen` runs the rows once more, keeping their audio.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import TransferConfig
from ..data.baselines import score_baselines
from ..data.paper_songs import paper_song_paths, paper_songs_dir, songs_needed
from ..engine.transfer import load_pair
from ..errors import ConfigError
from ..util.io import write_csv
from ..util.machine import code_version, describe
from .finalists import finalist_runs, precision_check_runs
from .listen import LISTEN, listen_runs, write_paper_listening_report
from .report import write_report
from .runs import Run, invocation_id, plan_runs, run_all
from .search import SEARCH_PRECISIONS, SPACE, open_search, run_search, small_space, trials_table

PLANNED_PHASES = (("rows and ablation", ("rows", "ablation")), ("converged", ("converged",)), ("limit", ("limit",)))


class Phases:
    """phases.csv: one row per phase that ran something (its runs or trials and wall minutes)."""

    def __init__(self, path: Path, common: dict[str, Any]) -> None:
        self.path, self.common = path, common
        self.rows: list[dict[str, Any]] = pd.read_csv(path).to_dict("records") if path.exists() else []

    def record(self, name: str, count: int, start: float) -> None:
        """Add the phase begun at perf_counter `start`, unless it had nothing left to do (count 0)."""
        if count:
            self.rows.append({"phase": name, "runs or trials": count,
                              "wall minutes": (time.perf_counter() - start) / 60, **self.common})
            write_csv(self.path, pd.DataFrame(self.rows))

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)


def reproduce(args: argparse.Namespace, base: TransferConfig) -> int:
    """The whole command, after the CLI has read the run settings into `base`."""
    out_dir = Path(args.out)
    args.paper_dir = paper_songs_dir(args.paper_dir)
    if args.paper_dir is None:
        raise songs_needed("reproduce")
    paper_song_paths(args.paper_dir)
    invocation = invocation_id()
    if args.listen:
        return listen(args, base, out_dir, invocation)
    command = args.command_line or "python -m musicstyle " + shlex.join(sys.argv[1:])
    phases = Phases(out_dir / "phases.csv", {"workers": args.workers, "machine": describe(base.device),
                                             "code_version": code_version(), "invocation": invocation,
                                             "command": command})
    if args.report_only:
        return report(args, base, out_dir, command, phases.frame(), open_search(out_dir, args.search_seed))
    plan = plan_runs(args.seeds, args.limit_seeds, args.converged_seeds, quick=args.quick,
                     converge_iterations=args.converge_iterations, limit_activations=tuple(args.limit_activations))
    print(f"{len(plan)} runs on the paper's songs (+ a joint search of {args.search} trials), results in {out_dir}",
          file=sys.stderr)
    for name, groups in PLANNED_PHASES:
        start = time.perf_counter()
        phases.record(name, new_runs(args, base, out_dir, [r for r in plan if r.group in groups], invocation), start)
    pair = load_pair(*paper_song_paths(args.paper_dir), base)
    if not (out_dir / "baselines.csv").exists():
        write_csv(out_dir / "baselines.csv", pd.DataFrame(score_baselines(pair, base)))
    study = search_and_finalists(args, base, out_dir, pair, invocation, phases) if args.search else None
    return report(args, base, out_dir, command, phases.frame(), study)


def done_runs(out_dir: Path) -> set[str]:
    """The run ids runs.csv already holds."""
    return set(pd.read_csv(out_dir / "runs.csv")["run_id"]) if (out_dir / "runs.csv").exists() else set()


def new_runs(args: argparse.Namespace, base: TransferConfig, out_dir: Path, runs: list[Run], invocation: str,
             reusable: pd.DataFrame | None = None) -> int:
    """Run what runs.csv lacks of `runs`; how many that was."""
    before = done_runs(out_dir)
    ran = run_all(args.paper_dir, out_dir, base, runs, args.workers, invocation, reusable=reusable)
    return len(ran) - len([r for r in runs if r.run_id in before])


def search_and_finalists(args: argparse.Namespace, base: TransferConfig, out_dir: Path, pair: Any, invocation: str,
                         phases: Phases) -> Any:
    """Phases 4-6: the joint search, its finalists over seeds, and the best setup in other precisions."""
    start = time.perf_counter()
    space = (small_space(base) if args.quick else SPACE) | {
        "precision": tuple(args.search_precisions or SEARCH_PRECISIONS)}
    study, added = run_search(pair, out_dir, base, args.search, args.search_minutes or None, seed=args.search_seed,
                              space=space, invocation=invocation)
    phases.record("joint search", added, start)
    write_csv(out_dir / "search-trials.csv", trials_table(study))
    frames = int(pair.content.shape[1])
    start = time.perf_counter()
    searched = pd.read_csv(out_dir / "search-runs.csv") if (out_dir / "search-runs.csv").exists() else None
    finalists = finalist_runs(study, base, frames, seeds=args.finalist_seeds)
    phases.record("finalists", new_runs(args, base, out_dir, finalists, invocation, reusable=searched), start)
    start = time.perf_counter()
    checks = precision_check_runs(study, pd.read_csv(out_dir / "runs.csv"), base, frames, tuple(args.precision_check))
    phases.record("precision check", new_runs(args, base, out_dir, checks, invocation), start)
    return study


def listen(args: argparse.Namespace, base: TransferConfig, out_dir: Path, invocation: str) -> int:
    """The rows once more, keeping their audio, recorded apart from the comparison's runs; then report.html."""
    run_all(args.paper_dir, out_dir / LISTEN, base, listen_runs(), workers=args.workers, invocation=invocation)
    frame = pd.read_csv(out_dir / "runs.csv") if (out_dir / "runs.csv").exists() else pd.DataFrame()
    html = write_paper_listening_report(out_dir, frame, base, args.paper_dir)
    print(f"wrote {html} and {out_dir / LISTEN / 'runs.csv'}")
    return 0


def report(args: argparse.Namespace, base: TransferConfig, out_dir: Path, command: str, phases: pd.DataFrame,
           study: Any) -> int:
    """report.md, report.html and the plots from what out_dir holds."""
    if not (out_dir / "runs.csv").exists():
        raise ConfigError(f"{out_dir / 'runs.csv'}: no runs to report on (run `reproduce` first)")
    frame = pd.read_csv(out_dir / "runs.csv")
    searched = pd.read_csv(out_dir / "search-trials.csv") if (out_dir / "search-trials.csv").exists() else None
    baselines = pd.read_csv(out_dir / "baselines.csv") if (out_dir / "baselines.csv").exists() else None
    written = write_report(frame, out_dir, base, command, baselines, phases, searched,
                           study.user_attrs.get("space", "") if study else "")
    html = write_paper_listening_report(out_dir, frame, base, args.paper_dir)
    print(f"wrote {written}, {html}, {out_dir / 'runs.csv'} and plots")
    return 0
