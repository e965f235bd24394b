"""The names every run records, and the sweep's objectives: one registry each.

A measure is a number a transfer yields per song pair (`TransferResult.summary()` keys). An
objective names the measures Optuna minimises; adding one (e.g. a ground-truth distance) is one
entry in `OBJECTIVES`, and the config check, the command line, the trial table and the objective
function all read it from here.
"""

from __future__ import annotations

# per pair, from TransferResult.summary(); a trial's figure is the mean over its pairs
MEASURES = ("final_loss", "content_loss", "style_loss", "content_loss_unweighted", "style_loss_unweighted",
            "style_distance", "content_distance", "spectral_convergence", "quality_score", "iterations",
            "evaluations", "optimize_seconds", "reconstruct_seconds")

# per pair whose corpus knows the right answer (a target): musicstyle.truth's axes, reported figures and score
TRUTH_MEASURES = ("truth_timbre", "truth_notes", "truth_log_odds", "truth_artefacts_db", "truth_lsd_db",
                  "truth_margin", "truth_score")

# every per-pair measure a trial averages over its pairs
PAIR_MEASURES = (*MEASURES, *TRUTH_MEASURES)

# per trial, in the sweep's tables: the pair means plus the trial's own bookkeeping
TRIAL_MEASURES = (*MEASURES[:MEASURES.index("optimize_seconds")], *TRUTH_MEASURES, "pairs_done", "runtime_seconds",
                  "seconds_per_iteration", "peak_memory_mb", "peak_memory_delta_mb")

# objective name -> the measures it minimises (one: a single-objective study; two or more: Pareto)
OBJECTIVES: dict[str, tuple[str, ...]] = {
    "quality": ("quality_score",),
    "loss": ("final_loss",),
    "pareto": ("content_distance", "style_distance"),
    "truth": ("truth_score",),  # minus the margin over the trivial frontier; needs targets (docs/truth.md)
}

# objectives whose measures exist only where every pair has a target
NEEDS_TARGETS = tuple(name for name, measures in OBJECTIVES.items() if set(measures) & set(TRUTH_MEASURES))


def objective_measures(objective: str) -> list[str]:
    """The measures `objective` minimises, in Optuna's value order."""
    return list(OBJECTIVES[objective])


def directions(objective: str) -> list[str]:
    """Optuna's study directions for `objective`: every measure is minimised."""
    return ["minimize"] * len(OBJECTIVES[objective])


def is_multi_objective(objective: str) -> bool:
    return len(OBJECTIVES[objective]) > 1
