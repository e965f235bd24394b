"""The joint search for one setup behind the blog's three rows (81.79 / 207.18 / 266.56).

The blog printed three final losses at alpha 1e-3, beta 10 and left the rest open. This module
searches those open details *together* (one setup for all three rows; the weights stay the blog's):

    optimiser and learning rate, iterations, init gain, leaky slope, Gram normalisation, loss
    reduction, filter count, precision and the start.

Objective: the worst |log(measured / printed)| over the three rows (`joint_error`); 0 is a perfect
match, log(1.1) = 0.095 is every row within 10 %.

A normalisation is a constant factor on each loss term (`loss_scales`), so a run with normalisation
(g, r) is the engine's run with weights alpha * content_scale and beta * style_scale, and its final
loss *is* the loss under (g, r). The engine's own convention is Gram / input frames, summed squares.

Budget (multi-fidelity that never throws away a setup that could still win):

- rows run one after another; the worst error so far only grows, so a trial stops as soon as it
  reaches the best finished trial's error (`report` + prune after each row);
- within an L-BFGS row the loss only falls, so once it is below printed * exp(-best) the row can only
  end further off, and it stops there (`BoundReached`);
- `--search-minutes` caps the wall time (Optuna's timeout).

And one heuristic screen, which *can* discard a winner (so its stops are labelled 'screened'): at
SCREEN_ITERATION a row's loss L is known; its final loss has so far always fallen within
[L * r_low, L * r_high], r the final / L ratios of the search's finished rows with the same optimiser
and iteration budget, widened by SCREEN_SLACK (a wide prior, PRIOR_RATIOS, until SCREEN_MIN_ROWS such
rows exist). A row whose whole predicted range lies outside printed * exp(+-best) stops there.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from ..config import TransferConfig
from ..data.paper_songs import PAPER_ROWS, PaperRow
from ..errors import ConfigError
from ..util.io import write_csv
from .runs import Run, run_one, same_run

BLOG_ROWS: tuple[PaperRow, ...] = PAPER_ROWS[1:]
GRAM_NORMS = ("input frames", "output frames", "none", "keras")
REDUCTIONS = ("sum", "half sum", "mean")
SEARCH_PRECISIONS = ("auto", "fp32", "fp64")  # the joint search's choices (a run accepts config.PRECISIONS)
BOUND_MARGIN = 0.02  # bf16 products' loss values are within about 1 %: stop a row only 2 % past the bound
SCREEN_ITERATION = 100  # the heuristic screen looks at a row's loss here (rows of more iterations only)
SCREEN_MIN_ROWS = 3  # finished rows of the same optimiser and budget before their ratios replace the prior
SCREEN_SLACK = 2.0  # the observed final / screen-loss ratios, widened by this factor each way
PRIOR_RATIOS = {"lbfgs": (0.01, 1.0), "adam": (0.01, 2.0)}  # final / screen loss, before any is observed

# The space searched: name -> choices, or (low, high) on a log scale. `lr` only with Adam, `reduction`
# only when the Gram normalisation is not Keras's (which fixes its own).
SPACE: dict[str, Any] = {
    "optimizer": ("lbfgs", "adam"),
    "lr": (1e-3, 1.0),
    "iterations": (300, 1000, 3000),
    "init_gain": (0.5, 2.0),
    "leaky_slope": (0.01, 0.1, 0.2, 0.3),
    "gram_norm": GRAM_NORMS,
    "reduction": REDUCTIONS,
    "filters": (1024, 2048, 4096),
    "precision": SEARCH_PRECISIONS,
    "init": ("noise", "content"),
}


# Readings tried before the search, queued first so that the pruning bounds have a best trial to work
# against from the start: the table as printed (the base paper's optimiser and normalisation), the same
# left to converge, and a Keras-like setup taken as a whole (gain 1, the Keras example's Gram norm, Adam).
KNOWN_READINGS: dict[str, dict[str, Any]] = {
    "as printed": {"optimizer": "lbfgs", "iterations": 300, "init_gain": math.sqrt(2.0), "leaky_slope": 0.3,
                   "gram_norm": "input frames", "reduction": "sum", "filters": 4096, "precision": "auto",
                   "init": "noise"},
    "as printed, converged": {"optimizer": "lbfgs", "iterations": 3000, "init_gain": math.sqrt(2.0),
                              "leaky_slope": 0.3, "gram_norm": "input frames", "reduction": "sum", "filters": 4096,
                              "precision": "auto", "init": "noise"},
    "Keras-like": {"optimizer": "adam", "lr": 0.01, "iterations": 3000, "init_gain": 1.0, "leaky_slope": 0.3,
                   "gram_norm": "keras", "filters": 4096, "precision": "auto", "init": "noise"},
}


def small_space(base: TransferConfig) -> dict[str, Any]:
    """SPACE with the iterations and filter count pinned to `base`'s (a smoke test's tiny runs)."""
    return SPACE | {"iterations": (base.iterations,), "filters": (base.filters,)}


def loss_scales(gram_norm: str, reduction: str, filters: int, input_frames: int, kernel_width: int
                ) -> tuple[float, float]:
    """(content_scale, style_scale) that turn the engine's losses into those of another convention.

    Engine: content = sum (F - C)^2 and style = sum (G - G_s)^2 with G = F F^T / n, F (K filters,
    T = n - width + 1 frames), n input frames. Gram norms: 'input frames' /n, 'output frames' /T,
    'none', 'keras' (sum (F F^T - S S^T)^2 / (4 K^2 T^2), the Keras style-transfer example).
    Reductions: 'sum', 'half sum' (TensorFlow's l2_loss, both terms / 2), 'mean' (over K T and K^2 elements).
    """
    n, k = input_frames, filters
    t = n - kernel_width + 1
    if gram_norm not in GRAM_NORMS or reduction not in REDUCTIONS:
        raise ValueError(f"unknown normalisation {gram_norm!r} / {reduction!r}")
    style = {"input frames": 1.0, "output frames": (n / t) ** 2, "none": float(n) ** 2,
             "keras": n ** 2 / (4.0 * k ** 2 * t ** 2)}[gram_norm]
    if gram_norm == "keras":
        return 1.0, style
    if reduction == "half sum":
        return 0.5, style * 0.5
    if reduction == "mean":
        return 1.0 / (k * t), style / k ** 2
    return 1.0, style


def row_errors(measured: dict[str, float], rows: tuple[PaperRow, ...] = BLOG_ROWS) -> dict[str, float]:
    """|log(measured / printed)| of each row measured so far (inf for a loss that is not positive)."""
    return {r.name: abs(math.log(measured[r.name] / r.paper_loss)) if measured[r.name] > 0 else math.inf
            for r in rows if r.name in measured}


def joint_error(measured: dict[str, float], rows: tuple[PaperRow, ...] = BLOG_ROWS) -> float:
    """max over the rows of |log(measured / printed)|; inf when a row is missing or not positive."""
    errors = row_errors(measured, rows)
    return max(errors.values()) if len(errors) == len(rows) else math.inf


def off_by_factor(error: float) -> float:
    """The joint error as the worst row's factor off (up or down): exp(error); 1.1 = 10 % off."""
    return math.exp(error)


def suggest_setup(trial: optuna.Trial, space: dict[str, Any] = SPACE) -> dict[str, Any]:
    """One setup from `space` (SPACE, possibly narrowed: a one-element tuple fixes a setting)."""
    setup: dict[str, Any] = {"optimizer": trial.suggest_categorical("optimizer", list(space["optimizer"]))}
    if setup["optimizer"] == "adam":
        low, high = space["lr"]
        setup["lr"] = trial.suggest_float("lr", low, high, log=True)
    setup["iterations"] = trial.suggest_categorical("iterations", list(space["iterations"]))
    low, high = space["init_gain"]
    setup["init_gain"] = trial.suggest_float("init_gain", low, high, log=True)
    for name in ("leaky_slope", "gram_norm"):
        setup[name] = trial.suggest_categorical(name, list(space[name]))
    setup["reduction"] = (trial.suggest_categorical("reduction", list(space["reduction"]))
                          if setup["gram_norm"] != "keras" else "sum")
    for name in ("filters", "precision", "init"):
        setup[name] = trial.suggest_categorical(name, list(space[name]))
    return setup


def row_settings(setup: dict[str, Any], row: PaperRow, base: TransferConfig, input_frames: int) -> dict[str, Any]:
    """The TransferConfig settings that run `row` under `setup` (normalisation folded into the weights)."""
    content_scale, style_scale = loss_scales(setup["gram_norm"], setup["reduction"], setup["filters"],
                                             input_frames, base.kernel_width)
    settings = {k: v for k, v in setup.items() if k not in ("gram_norm", "reduction")}
    lr = setup.get("lr", row.lr)  # L-BFGS ignores it; the record keeps the table's
    return settings | {"activation": row.activation, "alpha": row.alpha * content_scale,
                       "beta": row.beta * style_scale, "lr": lr}


def describe_setup(setup: dict[str, Any]) -> str:
    """A setup in one line, for the report: 'L-BFGS, 3000 iterations, gain 1.41, ...'."""
    parts = [("Adam lr " + f"{setup['lr']:.3g}") if setup["optimizer"] == "adam" else "L-BFGS",
             f"{setup['iterations']} iterations", f"init gain {setup['init_gain']:.3g}",
             f"leaky slope {setup['leaky_slope']:g}", f"Gram / {setup['gram_norm']}"
             if setup["gram_norm"] in ("input frames", "output frames") else f"Gram norm {setup['gram_norm']}",
             f"reduction {setup['reduction']}", f"{setup['filters']} filters", f"precision {setup['precision']}",
             f"start from {setup['init']}"]
    return ", ".join(parts)


class RowFailed(Exception):
    """A row of a search trial failed (its reason is in search-runs.csv); the trial is recorded as failed."""


class BoundReached(Exception):
    """An L-BFGS row fell below the loss at which it can no longer beat the best trial."""


def lbfgs_bound(printed: float, best_error: float | None):
    """A progress callback that stops an L-BFGS row once its loss is below printed * exp(-best) (less margin)."""
    if best_error is None or not math.isfinite(best_error):
        return None
    floor = printed * math.exp(-best_error) * (1 - BOUND_MARGIN)

    def check(iteration: int, total: int, loss: float) -> None:
        if loss < floor:
            raise BoundReached(f"loss {loss:.4g} below {floor:.4g} at iteration {iteration}")

    return check


class Screened(Exception):
    """The heuristic screen stopped a row: its predicted final loss cannot come within the best's error."""


def screen_ratios(records: list[dict[str, Any]], optimizer: str, iterations: int) -> tuple[float, float]:
    """(low, high) bounds on final loss / loss at SCREEN_ITERATION for a row of this optimiser and budget:
    the range over the search's finished such rows, widened by SCREEN_SLACK; PRIOR_RATIOS until there
    are SCREEN_MIN_ROWS of them."""
    ratios = [r["final_loss"] / r["loss_at_screen"] for r in records
              if r.get("state") == "ok" and r.get("optimizer") == optimizer and r.get("iterations") == iterations
              and _positive(r.get("loss_at_screen")) and _positive(r.get("final_loss"))]
    if len(ratios) < SCREEN_MIN_ROWS:
        return PRIOR_RATIOS[optimizer]
    return min(ratios) / SCREEN_SLACK, max(ratios) * SCREEN_SLACK


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


class RowWatch:
    """The progress callback of one search row: records its loss at SCREEN_ITERATION, screens it there
    (heuristic: `ratios` = screen_ratios(...)), and applies the L-BFGS bound (sound) at every iteration."""

    def __init__(self, printed: float, best_error: float | None, optimizer: str, ratios: tuple[float, float]):
        self.printed, self.best_error, self.ratios = printed, best_error, ratios
        self.bound = lbfgs_bound(printed, best_error) if optimizer == "lbfgs" else None
        self.loss_at_screen: float | None = None

    def __call__(self, iteration: int, total: int, loss: float) -> None:
        if iteration == SCREEN_ITERATION and total > SCREEN_ITERATION:
            self.loss_at_screen = loss
            if self.best_error is not None and math.isfinite(self.best_error):
                low, high = loss * self.ratios[0], loss * self.ratios[1]
                lowest, highest = self.printed * math.exp(-self.best_error), self.printed * math.exp(self.best_error)
                if low > highest or high < lowest:
                    raise Screened(f"screened at iteration {iteration}: loss {loss:.4g} predicts a final "
                                   f"{low:.4g}-{high:.4g} (ratios {self.ratios[0]:.3g}-{self.ratios[1]:.3g}), "
                                   f"outside {lowest:.4g}-{highest:.4g}")
        if self.bound is not None:
            self.bound(iteration, total, loss)


def open_search(out_dir: str | Path, seed: int = 0) -> optuna.Study | None:
    """The search study in out_dir/search.journal, or None where no search ran."""
    return _study(Path(out_dir), seed) if (Path(out_dir) / "search.journal").exists() else None


def _study(out_dir: Path, seed: int) -> optuna.Study:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(out_dir / "search.journal")))
    existing = optuna.create_study(study_name="blog-setup", storage=storage, load_if_exists=True)
    # a resumed search draws on from seed + trials so far: the same seed again would repeat its first draws
    sampler = optuna.samplers.TPESampler(seed=seed + len(existing.trials), n_startup_trials=10)
    return optuna.load_study(study_name="blog-setup", storage=storage, sampler=sampler)


def _best(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return min(done, key=lambda t: t.value) if done else None


def run_search(pair: Any, out_dir: str | Path, base: TransferConfig, trials: int, minutes: float | None,
               seed: int = 0, space: dict[str, Any] = SPACE, invocation: str = "") -> tuple[optuna.Study, int]:
    """Run the joint search until `trials` trials exist in out_dir/search.journal (or `minutes` pass);
    (the study, trials added).

    Every row run is appended to out_dir/search-runs.csv (with its trial number), stopped or not.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _study(out_dir, seed)
    recorded = study.user_attrs.get("space")
    if recorded is None:
        study.set_user_attr("space", space_text(space))
    elif recorded != space_text(space):
        raise ConfigError(f"{out_dir / 'search.journal'}: the search was started over another space ({recorded}); "
                          "use another --out or the same options")
    csv = out_dir / "search-runs.csv"
    records = pd.read_csv(csv).to_dict("records") if csv.exists() else []
    earlier = pd.read_csv(out_dir / "runs.csv") if (out_dir / "runs.csv").exists() else pd.DataFrame()
    frames = int(pair.content.shape[1])
    start = time.perf_counter()

    def objective(trial: optuna.Trial) -> float:
        setup = suggest_setup(trial, space)
        trial.set_user_attr("setup", describe_setup(setup))
        best = _best(study)
        best_error = best.value if best is not None else None
        measured: dict[str, float] = {}
        order = sorted(BLOG_ROWS, key=lambda r: -(best.user_attrs.get("errors", {}).get(r.name, 0) if best else 0))
        for step, row in enumerate(order):
            run = Run("search", f"trial {trial.number}", row.name, row_settings(setup, row, base, frames), seed,
                      notes={"trial": trial.number, "gram_norm": setup["gram_norm"], "reduction": setup["reduction"],
                             "table_alpha": row.alpha, "table_beta": row.beta})
            watch = RowWatch(row.paper_loss, best_error, setup["optimizer"],
                             screen_ratios(records, setup["optimizer"], setup["iterations"]))
            run_start = time.perf_counter()
            try:
                same = same_run(earlier, base.replace(**run.settings, seed=seed), frames)
                record = (same | {"run_id": run.run_id, "group": "search", "label": run.label, "row": row.name,
                                  **run.notes, "reused_from": same["run_id"]} if same is not None
                          else run_one(run, pair, base, out_dir, invocation, progress=watch))
            except (BoundReached, Screened) as stop:
                record = {"run_id": run.run_id, "group": "search", "label": run.label, "row": row.name,
                          "seed": seed, "trial": trial.number, "optimizer": setup["optimizer"],
                          "iterations": setup["iterations"],
                          "state": "screened" if isinstance(stop, Screened) else "stopped", "reason": str(stop),
                          "seconds": time.perf_counter() - run_start, "invocation": invocation}
            record["loss_at_screen"] = watch.loss_at_screen
            records.append(record)
            write_csv(csv, pd.DataFrame(records))
            if record["state"] == "failed":
                trial.set_user_attr("reason", record["reason"])
                raise RowFailed(f"{row.name} failed: {record['reason']}")
            if record["state"] in ("stopped", "screened"):
                trial.set_user_attr("reason", f"{row.name}: {record['reason']}")
                raise optuna.TrialPruned(record["reason"])
            measured[row.name] = record["final_loss"]
            errors = row_errors(measured)
            trial.set_user_attr("errors", errors)
            worst = max(errors.values())  # the rows so far: a lower bound on the joint error
            trial.report(worst, step)
            if best_error is not None and worst >= best_error and step < len(order) - 1:
                trial.set_user_attr("reason", f"worst error {worst:.3f} after {step + 1} row(s) >= best "
                                              f"{best_error:.3f}")
                raise optuna.TrialPruned()
        return joint_error(measured)

    def progress(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        best = _best(study)
        done = len(study.trials)
        elapsed = time.perf_counter() - start
        print(f"search trial {trial.number} {trial.state.name} "
              + (f"error {trial.value:.3f} " if trial.value is not None else "")
              + f"in {trial.duration.total_seconds() if trial.duration else 0:.0f} s | {done}/{trials}, best "
              + (f"{best.value:.3f} (#{best.number})" if best else "none")
              + f", {elapsed / 60:.1f} min", file=sys.stderr, flush=True)

    before = len(study.trials)
    if not study.trials:  # a new study: the known readings first (those the space holds)
        for name, params in KNOWN_READINGS.items():
            if all(params[k] in space[k] for k in ("iterations", "filters", "precision")):
                study.enqueue_trial(params, user_attrs={"reading": name})
    if trials > before:
        study.optimize(objective, n_trials=trials - before, timeout=minutes * 60 if minutes else None,
                       callbacks=[progress], catch=(RowFailed,))
    return study, len(study.trials) - before


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """One row per search trial: number, state, joint error, worst row off by (factor), setup, why it stopped."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append({"trial": t.number, "reading": t.user_attrs.get("reading", ""), "state": t.state.name,
                     "joint error": t.value,
                     "worst row off by a factor": off_by_factor(t.value) if t.value is not None else None,
                     "setup": t.user_attrs.get("setup", ""), "why stopped": t.user_attrs.get("reason", ""),
                     "seconds": t.duration.total_seconds() if t.duration else None})
    return pd.DataFrame(rows)


def space_text(space: dict[str, Any]) -> str:
    """The searched space in one line, for the report."""
    parts = []
    for name, values in space.items():
        if name in ("lr", "init_gain"):
            parts.append(f"{name} {values[0]:g}-{values[1]:g} (log)" + (" with Adam" if name == "lr" else ""))
        else:
            parts.append(f"{name} {{{', '.join(map(str, values))}}}" + (" (not with Keras's Gram norm)"
                                                                        if name == "reduction" else ""))
    return "; ".join(parts)


def setup_of(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """The setup a finished trial ran (its parameters; Keras's Gram norm implies the sum reduction)."""
    return {"reduction": "sum", **trial.params}
