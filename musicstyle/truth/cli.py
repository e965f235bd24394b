"""The `python -m musicstyle truth ...` subcommands: score, sanity, verdict, train-timbre.

`truth` alone (with --out, --quick, --report-only) runs the validation of the fair measures (validate.py).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys


def _command_line() -> str:
    return "python -m musicstyle " + shlex.join(sys.argv[1:])


def cmd_score(args: argparse.Namespace) -> int:
    from .score import score_output

    result = score_output(args.output, args.content, args.style, args.target, args.score, args.griffin_lim_iters,
                          args.seed)
    print(json.dumps(result, indent=2))
    return 0


def cmd_sanity(args: argparse.Namespace) -> int:
    from .sanity_run import run_sanity

    print(f"wrote {run_sanity(args.sub_out, quick=args.quick, pairs=args.pairs, command=_command_line())}")
    return 0


def cmd_verdict(args: argparse.Namespace) -> int:
    from .verdict_run import run_verdict

    report = run_verdict(args.sub_out, quick=args.quick, minutes=args.minutes, report_only=args.report_only,
                         command=_command_line(), workers=args.workers, rescore_runs=args.rescore)
    print(f"wrote {report}")
    return 0


def cmd_train_timbre(args: argparse.Namespace) -> int:
    from .timbre_train import train_and_report

    print(f"wrote {train_and_report(args.model, args.report, quick=args.quick, command=_command_line())}")
    return 0


def add_truth_commands(truth: argparse.ArgumentParser) -> None:
    """Attach the subcommands to the `truth` parser."""
    sub = truth.add_subparsers(dest="truth_command", metavar="{score,sanity,verdict,train-timbre}")
    score = sub.add_parser("score", help="the truth measures of any output against its pair, as JSON")
    score.add_argument("output", help="the audio to score")
    score.add_argument("--content", required=True, help="the content clip (right notes)")
    score.add_argument("--style", required=True, help="the style clip (right instrument)")
    score.add_argument("--target", required=True, help="the right answer: the content's notes on the style's "
                                                          "instrument")
    score.add_argument("--score",
                       help="MIDI file of the content's notes (default: the pitch classes heard in the target)")
    score.add_argument("--griffin-lim-iters", type=int, default=500,
                       help="Griffin-Lim iterations of the trivial outputs (default 500, the paper's)")
    score.add_argument("--seed", type=int, default=0, help="Griffin-Lim start phase of the trivial outputs")
    score.set_defaults(func=cmd_score)

    sanity = sub.add_parser("sanity", help="the measures' sanity suite -> sanity.md, sanity.csv")
    sanity.add_argument("--out", dest="sub_out", default="results/truth", help="folder (default results/truth)")
    sanity.add_argument("--quick", action="store_true", help="two pairs, short clips (CI)")
    sanity.add_argument("--pairs", type=int, help="only the first N pairs of each group")
    sanity.set_defaults(func=cmd_sanity)

    verdict = sub.add_parser("verdict", help="the full-budget verdict on the held-out pairs (resumable)")
    verdict.add_argument("--out", dest="sub_out", default="results/verdict", help="folder (default results/verdict)")
    verdict.add_argument("--quick", action="store_true", help="two pairs, tiny runs (CI)")
    verdict.add_argument("--minutes", type=float, help="stop cleanly after this many minutes of runs (resume later)")
    verdict.add_argument("--report-only", action="store_true", help="write verdict.md from runs.csv, running nothing")
    verdict.add_argument("--rescore", action="store_true",
                         help="re-measure the baselines and every finished run's audio with the current measures")
    verdict.add_argument("--workers", type=int, default=1, help="transfers in this many processes (default 1)")
    verdict.set_defaults(func=cmd_verdict)

    train = sub.add_parser("train-timbre", help="train the timbre classifier on chorales that are in no pair")
    train.add_argument("--model", default=None, help="model file (default: the one the package ships)")
    train.add_argument("--report", default="results/truth/timbre-model.md", help="its accuracy report")
    train.add_argument("--quick", action="store_true", help="a tiny training set (CI)")
    train.set_defaults(func=cmd_train_timbre)
