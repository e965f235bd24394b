"""Command line: `python -m musicstyle transfer CONTENT STYLE --out OUT.wav [--json S.json]`.

Every `TransferConfig` field becomes an option (`kernel_width` -> `--kernel-width`), with the
config's default, so the CLI never holds a default of its own.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .config import FIELDS, TransferConfig, make_config
from .data.paper_songs import PAPER_SONGS_ENV, SONGS
from .data.rendered import PAIRS
from .errors import MusicStyleError
from .truth.cli import add_truth_commands
from .util.io import ensure_writable_folder
from .util.progress import iteration_printer


def flag(name: str) -> str:
    return FIELDS[name].metadata.get("cli") or "--" + name.replace("_", "-")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per TransferConfig field; unset options keep the config default."""
    group = parser.add_argument_group("run settings (defaults: the base paper's)")
    for name, f in FIELDS.items():
        choices = f.metadata.get("choices")
        default = f.default
        shown = "none" if default is None else default
        group.add_argument(flag(name), dest=name, default=None, metavar=None if choices else name.upper(),
                           choices=choices, help=f"{f.metadata['help']} (default: {shown})")


def config_from_args(args: argparse.Namespace, base: TransferConfig | None = None) -> TransferConfig:
    values = (base or TransferConfig()).to_dict()
    values.update({name: getattr(args, name) for name in FIELDS if getattr(args, name, None) is not None})
    return make_config(values)


def check_writable(path: Path) -> None:
    """Fail early, before any work, if an output cannot be written."""
    if path.is_dir():
        raise MusicStyleError(f"output path is a folder: {path}")
    ensure_writable_folder(path.parent if str(path.parent) else Path("."))


def cmd_transfer(args: argparse.Namespace) -> int:
    from .engine.audio import write_wav
    from .engine.transfer import load_pair, run_transfer
    from .reports.common import plot_spectrograms
    from .util.io import write_json

    config = config_from_args(args)
    out = Path(args.out)
    png = Path(args.png) if args.png else out.with_suffix(".png")
    outputs = [out, png] + ([Path(args.json)] if args.json else [])
    for path in outputs:
        check_writable(path)
    pair = load_pair(args.content, args.style, config)
    print(f"content {args.content}, style {args.style}: {pair.content.shape[0]} bins x {pair.content.shape[1]} frames",
          file=sys.stderr)
    result = run_transfer(pair, config, progress=iteration_printer())
    summary = result.summary() | {"content": str(args.content), "style": str(args.style), "out": str(out)}
    write_wav(out, result.audio, config.sample_rate_hz)
    plot_spectrograms({"content": pair.content, "style": pair.style, "result": result.optimization.spectrogram},
                      png, config.sample_rate_hz, config.hop,
                      title=f"final loss {result.optimization.final_loss:.1f} ({config.activation}, "
                            f"alpha {config.alpha:g}, beta {config.beta:g})")
    if args.json:
        write_json(args.json, summary)
    o = result.optimization
    print(f"final loss {o.final_loss:.4f} (content {o.content_loss:.4f}, style {o.style_loss:.4f}) after "
          f"{o.iterations} iterations, {o.evaluations} evaluations, {o.optimize_seconds:.1f} s "
          f"({o.seconds_per_evaluation * 1000:.0f} ms/evaluation); Griffin-Lim {result.reconstruct_seconds:.1f} s")
    m = result.measures
    print(f"fair measures: style distance {m.style_distance:.3f}, content distance {m.content_distance:.3f}, "
          f"spectral convergence {m.spectral_convergence:.3f}, quality score {m.quality_score:.3f}")
    print(f"wrote {out}, {png}" + (f", {args.json}" if args.json else ""))
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    """The paper comparison in phases (musicstyle/paper/command.py)."""
    from .paper.command import reproduce

    base = config_from_args(args)
    check_writable(Path(args.out) / "report.md")
    return reproduce(args, base)


def cmd_fetch(args: argparse.Namespace) -> int:
    from .data.paper_songs import SONGS_URL, fetch_songs

    for path in fetch_songs(args.folder, base_url=args.url or SONGS_URL):
        print(f"{path}: sha256 checked")
    return 0


def cmd_corpus_render(args: argparse.Namespace) -> int:
    from .data.rendered import load_manifest, render_corpus

    manifest = render_corpus(args.folder, seed=args.seed, pairs=args.pairs)
    data = load_manifest(manifest.parent)
    print(f"wrote {len(data['files_sha256'])} renderings of {len(data['pieces'])} pieces on "
          f"{len(data['programs'])} instruments, {len(data['pairs'])} pairs: {manifest}")
    return 0


def cmd_truth(args: argparse.Namespace) -> int:
    import os
    import shlex

    from .truth.validate import run_validation

    paper_dir = args.paper_dir or os.environ.get("MUSICSTYLE_PAPER_SONGS")
    command = "python -m musicstyle " + (shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["truth"] else "truth")
    report = run_validation(args.out, quick=args.quick, paper_dir=paper_dir, seed=args.seed, command=command,
                            report_only=args.report_only, workers=args.workers)
    print(f"wrote {report}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m musicstyle", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    transfer = commands.add_parser("transfer", help="style-transfer one content song with one style song")
    transfer.add_argument("content", help="content audio file (wav, flac, ogg/opus, mp3)")
    transfer.add_argument("style", help="style audio file")
    transfer.add_argument("--out", required=True, help="output WAV")
    transfer.add_argument("--json", help="write the summary as JSON here")
    transfer.add_argument("--png", help="spectrogram figure (default: OUT with .png)")
    add_config_arguments(transfer)
    transfer.set_defaults(func=cmd_transfer)

    reproduce = commands.add_parser("reproduce", help="reproduce and extend the paper's 559 vs 81.79 comparison")
    reproduce.add_argument("--paper-dir",
                           help=f"folder with {SONGS} (default: ${PAPER_SONGS_ENV})")
    reproduce.add_argument("--out", default="results/paper", help="report folder (default: results/paper)")
    reproduce.add_argument("--seeds", type=int, default=3, help="seeds for the four rows and the ablation")
    reproduce.add_argument("--converged-seeds", type=int, default=1, help="seeds for each converged cell")
    reproduce.add_argument("--converge-iterations", type=int, default=3000,
                           help="L-BFGS cap of the converged cells; it normally stops on its tolerance first")
    reproduce.add_argument("--limit-seeds", type=int, default=1, help="seeds for each infinite-filter cell")
    reproduce.add_argument("--limit-activations", type=lambda text: [a for a in text.split(",") if a],
                           default=["relu", "leaky_relu", "elu", "selu"],
                           help="activations run with filters inf, comma-separated (default all four; ELU and SELU "
                                "go through Mehler's series, several times slower than the closed forms)")
    reproduce.add_argument("--search", type=int, default=400, metavar="N",
                           help="joint search for one setup behind the blog's three rows: N trials in all "
                                "(resumes OUT/search.journal; default 400); 0 skips it")
    reproduce.add_argument("--search-minutes", type=float, default=30.0,
                           help="stop the joint search after this many minutes (default 30; 0 = no limit)")
    reproduce.add_argument("--search-precisions", type=lambda text: text.split(","), default=None,
                           help="precisions the search may pick, comma-separated (default auto,fp32,fp64; fp64 is "
                                "several times slower on a CPU)")
    reproduce.add_argument("--precision-check", type=lambda text: [p for p in text.split(",") if p], default=["fp32"],
                           help="precisions the finalists' best setup is re-run in (seed 0), comma-separated "
                                "(default fp32)")
    reproduce.add_argument("--finalist-seeds", type=int, default=5, help="seeds for each of the search's best 3")
    reproduce.add_argument("--search-seed", type=int, default=0,
                           help="the search's sampler seed and its runs' seed (default 0)")
    reproduce.add_argument("--quick", action="store_true", help="one run of each kind (a smoke test)")
    reproduce.add_argument("--report-only", action="store_true",
                           help="write report.md and report.html from OUT's runs, running nothing")
    reproduce.add_argument("--listen", action="store_true",
                           help="only run the paper's rows once (seed 0) keeping their audio, in OUT/listen/, "
                                "and write OUT/report.html")
    reproduce.add_argument("--workers", type=int, default=1,
                           help="processes running at once (default 1; more pays on a GPU or many cores)")
    reproduce.add_argument("--command-line", help=argparse.SUPPRESS)
    add_config_arguments(reproduce)
    reproduce.set_defaults(func=cmd_reproduce)

    fetch = commands.add_parser("fetch-paper-songs", help="download the paper's two songs and check their SHA-256")
    fetch.add_argument("folder", help=f"where to put {SONGS}")
    fetch.add_argument("--url", help="base URL (default: the base paper's public repository)")
    fetch.set_defaults(func=cmd_fetch)

    corpus = commands.add_parser("corpus", help="corpora with known answers")
    corpus = corpus.add_subparsers(dest="action", required=True)
    render = corpus.add_parser("render", help="render the pairs with targets (FluidSynth, Bach chorales)")
    render.add_argument("folder", nargs="?", help="output folder (default: the cache, $MUSICSTYLE_CACHE_DIR)")
    render.add_argument("--seed", type=int, default=0, help="seed drawing the pairs (default 0)")
    render.add_argument("--pairs", type=int, default=PAIRS, help=f"number of pairs (default {PAIRS})")
    render.set_defaults(func=cmd_corpus_render)

    truth = commands.add_parser("truth", help="validate the fair measures against the rendered corpus's targets")
    truth.add_argument("--out", default="results/truth", help="report folder (default: results/truth)")
    truth.add_argument("--quick", action="store_true", help="a handful of tiny runs (CI)")
    truth.add_argument("--seed", type=int, default=0, help="seed of the run design (default 0)")
    truth.add_argument("--report-only", action="store_true", help="write the report from runs.csv, running nothing")
    truth.add_argument("--paper-dir", help="the paper's songs, for their baselines (default: $MUSICSTYLE_PAPER_SONGS)")
    truth.add_argument("--workers", type=int, default=1, help="transfers in this many processes (default 1)")
    truth.set_defaults(func=cmd_truth)
    add_truth_commands(truth)
    return parser


def run_cli(main: Callable[[], int]) -> int:
    """Run an entry point: a MusicStyleError is one line on stderr and exit status 2, never a traceback."""
    try:
        return main()
    except MusicStyleError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(lambda: args.func(args))
