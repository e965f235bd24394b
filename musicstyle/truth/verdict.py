"""`python -m musicstyle truth verdict`: does the method beat a trivial output at the paper's full budget?

On the rendered corpus's held-out pairs (never used to tune anything; stratified by target instrument),
every arm runs at full size (430 frames, the arm's filter count, 300 L-BFGS iterations and, as a second
phase, left to converge, Griffin-Lim 500) and is scored by the truth measures (musicstyle.truth); the
trivial outputs (copies, mixes, EQ matching) are scored at the same settings. The decision rule is
written into `decision.md` before the first run and checked unchanged on every resume.

Phases, each timed into `phases.csv`: render the corpus, baselines (`baselines.csv`), transfers
(`runs.csv`, written after every run; a restart skips finished runs), report (`verdict.md`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import binom

from .. import campaign
from ..config import TransferConfig, make_config
from ..data.corpus import SongPair, rendered_pairs
from ..data.paper_songs import PAPER_ROWS
from ..engine.network import resolve_precision
from ..engine.transfer import load_pair, resolve_device, run_transfer
from ..errors import ConfigError, MusicStyleError
from ..util.io import atomic_path, ensure_writable_folder, write_csv, write_text
from .measures import reference_for

SIGNIFICANCE = 0.05
CONVERGED_ITERATIONS = 3000  # "left to converge": L-BFGS-B stops on its own tolerance well before this cap
_BLOG = PAPER_ROWS[1]
# arm -> settings over TransferConfig's defaults (which are the base paper's: ReLU, 4096 filters, alpha 1e-2, beta 1)
ARMS: dict[str, dict[str, Any]] = {
    "paper's weights": {},
    "blog's weights (LeakyReLU)": {"activation": _BLOG.activation, "alpha": _BLOG.alpha, "beta": _BLOG.beta},
    "start from the content": {"init": "content"},
    "the old sweep's region (ELU, alpha 1, beta 0.01)": {"activation": "elu", "alpha": 1.0, "beta": 0.01},
    "filters inf (paper's weights)": {"filters": math.inf},
}
BUDGETS: dict[str, dict[str, Any]] = {"300 iterations": {"iterations": 300},
                                      "converged": {"iterations": CONVERGED_ITERATIONS}}


@dataclass(frozen=True)
class VerdictPlan:
    """The verdict's size: pairs (held out), the run settings every arm shares, budgets in order."""

    pairs: int | None = None  # None: every held-out pair
    fixed: dict[str, Any] = field(default_factory=lambda: {
        "offset_seconds": 0.0, "clip_seconds": None, "frames": 430, "griffin_lim_iters": 500, "precision": "auto"})
    budgets: tuple[str, ...] = ("300 iterations", "converged")
    arm_overrides: dict[str, Any] = field(default_factory=dict)  # applied to every arm (the quick plan's sizes)


QUICK = VerdictPlan(pairs=2, fixed={"offset_seconds": 0.0, "clip_seconds": 1.5, "frames": None, "n_fft": 512,
                                    "hop": 128, "griffin_lim_iters": 8, "precision": "fp32", "device": "cpu"},
                    budgets=("300 iterations",), arm_overrides={"iterations": 4})


def sign_test_threshold(pairs: int, alpha: float = SIGNIFICANCE) -> int:
    """Smallest k with P(X >= k) < alpha for X ~ Binomial(pairs, 1/2); pairs + 1 when none is."""
    return next((k for k in range(pairs + 1) if binom.sf(k - 1, pairs, 0.5) < alpha), pairs + 1)


def decision_rule(pairs: int) -> str:
    """The rule, as written into decision.md before any run."""
    k = sign_test_threshold(pairs)
    return (
        "# Decision rule (written before the first run)\n\n"
        "An arm *beats the trivial frontier* on a pair when its `truth_score` there is below 0: it beats every "
        "trivial output (content copy, style copy, waveform mixes w = 0.25 / 0.5 / 0.75, magnitude mix, EQ matching, "
        "each through the same Griffin-Lim) by more than the measures' tolerance on timbre or on notes "
        "(docs/truth.md).\n\n"
        f"An arm *beats a trivial output at this budget* when it beats the frontier on at least {k} of the {pairs} "
        f"held-out pairs: a one-sided sign test against 'no better than the frontier' at p < {SIGNIFICANCE} "
        f"(P(X >= {k}) = {binom.sf(k - 1, pairs, 0.5):.4f} for X ~ Binomial({pairs}, 1/2)). Otherwise it does "
        "not. Each arm and each budget is judged on its own; the verdict names every arm that passes, or none."
        + (f" (With {pairs} pairs no count can reach p < {SIGNIFICANCE}: this plan cannot give a verdict.)"
           if k > pairs else "") + "\n")


def plan_runs(plan: VerdictPlan, pairs: list[SongPair]) -> list[dict[str, Any]]:
    """Every run as a dict: run_id, budget, arm, pair and its settings; cheapest budget first, and within it
    arm by arm (the infinite-filter limit, the cheapest, first), so a partial run judges whole arms."""
    runs = []
    order = sorted(ARMS, key=lambda arm: not math.isinf(ARMS[arm].get("filters", 0)))
    for budget in plan.budgets:
        for arm in order:
            settings = ARMS[arm]
            for pair in pairs:
                runs.append({"run_id": f"{budget}|{arm}|{pair.name}", "budget": budget, "arm": arm,
                             "pair": pair.name, **BUDGETS[budget], **settings, **plan.arm_overrides})
    return runs


def _record_settings(run: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run.items() if k not in ("run_id", "budget", "arm", "pair")}


def audio_path(out_dir: Path, run: dict[str, Any]) -> Path:
    safe = "".join(ch if ch.isalnum() else "-" for ch in f"{run['budget']}_{run['arm']}").strip("-")
    return out_dir / "audio" / safe / f"{run['pair']}.flac"


def write_flac(path: Path, audio: np.ndarray, sample_rate_hz: int) -> None:
    """24-bit FLAC, peak-normalised when it would clip (measures are level-free, so `--rescore` can re-measure it)."""
    import soundfile as sf

    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    with atomic_path(path) as tmp:
        sf.write(str(tmp), audio / peak if peak > 1.0 else audio, sample_rate_hz, format="FLAC", subtype="PCM_24")


_WORKER: dict[str, Any] = {}  # what every run of a process shares: pairs by name, base config, out_dir, references


def start_worker(pairs: list[SongPair], base: TransferConfig, out_dir: Path, references: dict | None = None) -> None:
    """Set what run_one reads (once per process; in-process, `references` is shared with the baselines)."""
    _WORKER.update(pairs={p.name: p for p in pairs}, base=base, out_dir=out_dir,
                   references={} if references is None else references)


def run_one(run: dict[str, Any]) -> dict[str, Any]:
    """One transfer, its audio written beside the table, its truth and fair measures; a failure is a row."""
    pair, out_dir = _WORKER["pairs"][run["pair"]], _WORKER["out_dir"]
    config = _WORKER["base"].replace(**_record_settings(run))
    start = time.perf_counter()
    try:
        spectrograms = load_pair(pair.content, pair.style, config)
        result = run_transfer(spectrograms, config)
        write_flac(audio_path(out_dir, run), result.audio, config.sample_rate_hz)
        truth = reference_for(pair, config, _WORKER["references"]).measures(result.audio)
    except MusicStyleError as err:
        return run | {"state": "failed", "reason": str(err), "seconds": time.perf_counter() - start}
    opt = result.optimization
    return run | {"state": "ok", "reason": "", "final_loss": opt.final_loss, "iterations_run": opt.iterations,
                  "evaluations": opt.evaluations, **result.measures.to_dict(), **truth,
                  "precision": resolve_precision(config.precision, resolve_device(config.device))[0],
                  "seconds": time.perf_counter() - start}


def _label(record: dict[str, Any]) -> str:
    return f"{record['state']} score {record.get('truth_score', float('nan')):+.3f}"


def run_all(runs: list[dict[str, Any]], pairs: list[SongPair], base: TransferConfig, out_dir: Path,
            budget_minutes: float | None = None, references: dict | None = None, workers: int = 1) -> pd.DataFrame:
    """Run what runs.csv lacks (musicstyle.campaign), in `workers` processes, stopping after `budget_minutes`."""
    if workers <= 1:
        start_worker(pairs, base, out_dir, references)
    return campaign.run_all(runs, run_one, out_dir / "runs.csv", workers, budget_minutes,
                            initializer=start_worker if workers > 1 else None,
                            initargs=(pairs, base, out_dir), label=_label,
                            kind=lambda run: f"{run['budget']}|{run['arm']}")


def rescore(frame: pd.DataFrame, pairs: list[SongPair], base: TransferConfig, out_dir: Path,
            references: dict | None = None) -> pd.DataFrame:
    """Every ok run's truth measures again, from its saved audio, with the measures as they are now (a
    retrained timbre model, say); runs.csv is rewritten. The transfers themselves are not run again."""
    import soundfile as sf

    by_name = {p.name: p for p in pairs}
    references = {} if references is None else references
    rows = []
    for row in frame.to_dict("records"):
        if row.get("state") == "ok":
            audio, _ = sf.read(str(audio_path(out_dir, row)), dtype="float64")
            reference = reference_for(by_name[row["pair"]], base, references)  # every arm has the base's audio settings
            row = row | reference.measures(audio)
        rows.append(row)
    out = pd.DataFrame(rows)
    write_csv(out_dir / "runs.csv", out)
    return out


def baselines(pairs: list[SongPair], base: TransferConfig, out_dir: Path, references: dict | None = None,
              again: bool = False) -> pd.DataFrame:
    """baselines.csv: every trivial output's truth measures per pair (kept when present, unless `again`)."""
    csv = out_dir / "baselines.csv"
    if csv.exists() and not again:
        return pd.read_csv(csv)
    rows = []
    for pair in pairs:
        reference = reference_for(pair, base, references)
        for name, audio in reference.trivial.items():
            rows.append({"pair": pair.name, "baseline": name, **reference.measures(audio)})
    frame = pd.DataFrame(rows)
    write_csv(csv, frame)
    return frame


def held_out_pairs(plan: VerdictPlan, corpus_dir: str | None = None) -> list[SongPair]:
    pairs = rendered_pairs(corpus_dir, held_out=True)
    if not pairs:
        raise ConfigError("the rendered corpus has no held-out pairs")
    return pairs if plan.pairs is None else pairs[: plan.pairs]


def write_decision(out_dir: Path, pairs: int) -> str:
    """decision.md, written once before the first run; a resume with another rule is refused."""
    path = out_dir / "decision.md"
    rule = decision_rule(pairs)
    if path.exists():
        if path.read_text() != rule:
            raise ConfigError(f"{path} holds another decision rule than this plan's: start a new --out folder")
        return rule
    write_text(path, rule)
    return rule


def prepare(plan: VerdictPlan, out_dir: Path, seed: int, corpus_dir: str | None = None
            ) -> tuple[list[SongPair], TransferConfig, list[dict[str, Any]]]:
    ensure_writable_folder(out_dir)
    pairs = held_out_pairs(plan, corpus_dir)
    base = make_config(plan.fixed | {"seed": seed})
    write_decision(out_dir, len(pairs))
    return pairs, base, plan_runs(plan, pairs)
