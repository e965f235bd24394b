"""What a sweep run is: the settings, the corpus, where the study lives and how many trials."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..data.corpus import SongPair
from .config import SweepSettings


@dataclass
class SweepPlan:
    """Everything a worker process needs (picklable, so spawned workers get it whole)."""

    settings: SweepSettings
    pairs: list[SongPair]
    study_name: str
    results_dir: Path
    storage_url: str | None
    trials: int
    workers: int = 1
    quiet: bool = False

    @property
    def seed(self) -> int:
        return self.settings.study["seed"]

    @property
    def objective(self) -> str:
        return self.settings.objective


def loss_objective_warning(settings: SweepSettings) -> str | None:
    """The loss objective with alpha/beta searched favours small weights; say so before the sweep."""
    if settings.objective == "loss" and {"alpha", "beta"} & set(settings.search):
        return ("warning: --objective loss with alpha/beta searched rewards small weights (the total loss "
                "scales with them); prefer --objective quality or fix alpha and beta")
    return None
