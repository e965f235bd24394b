"""The fidelity check's plan and analysis (musicstyle.sweep.fidelity): the settings it draws, and the
agreement figures on rankings whose answer is known."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from musicstyle.sweep.config import load_settings
from musicstyle.sweep.fidelity import KEEP, TOP, agreement, plan_runs, rankings


def test_plan_draws_each_setting_once_per_fidelity_seed_and_pair() -> None:
    settings = load_settings("configs/default.yaml", ["confirm.seeds=2"])
    pairs = [SimpleNamespace(name="r00"), SimpleNamespace(name="r01")]
    runs = plan_runs(settings, pairs, trials=4, seed=0)
    assert len(runs) == 4 * (1 + 2) * 2 and len({r["run_id"] for r in runs}) == len(runs)
    per_setting = pd.DataFrame(runs).groupby("trial")
    assert all(part[list(settings.search.keys() & part.columns)].nunique(dropna=False).max() == 1
               for _, part in per_setting)  # one setting's runs share its parameters
    assert plan_runs(settings, pairs, trials=4, seed=0) == runs  # seeded
    alphas = {r["alpha"] for r in runs}
    assert len(alphas) == 4 and all(1e-4 <= a <= 1.0 for a in alphas)


def frame(screen: list[float], full: list[float]) -> pd.DataFrame:
    rows = []
    for trial, (s, f) in enumerate(zip(screen, full)):
        for fidelity, value in (("screen", s), ("full", f)):
            rows.append({"trial": trial, "fidelity": fidelity, "state": "ok", "truth_score": value,
                         "alpha": 1e-2, "beta": 10.0 ** trial})
    return pd.DataFrame(rows)


def test_agreement_on_known_rankings() -> None:
    full = list(np.linspace(-0.3, 0.5, 24))
    same = agreement(rankings(frame([f * 2 + 1 for f in full], full), "truth_score"))
    assert same["rho"] > 0.999 and same["rho best"] > 0.999 and same["passes"] and same["kept"] == KEEP
    reversed_ = agreement(rankings(frame([-f for f in full], full), "truth_score"))
    assert reversed_["rho"] < -0.999 and not reversed_["passes"] and reversed_["kept"] == 0
    # the full fidelity's best three pushed to the edge of the screen's best TOP (at most one stays): fails
    screen = list(full)
    for i in range(KEEP):
        screen[i] = full[TOP + i] + 1e-3
    assert not agreement(rankings(frame(screen, full), "truth_score"))["passes"]
    assert same["trend rho"] > 0.999  # beta / alpha rises with the trial number, as the full score does
    few = agreement(rankings(frame(full[:10], full[:10]), "truth_score"))
    assert few["kept"] == KEEP and not few["passes"]  # 10 settings: every one is in the best 10


def test_the_check_refuses_a_bad_promotion_fraction_in_one_line(tmp_path) -> None:
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "benchmark/fidelity_check.py", "--set", "confirm.promote=1.5", "--out",
                             str(tmp_path / "check")], cwd=repo, capture_output=True, text=True, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "confirm.promote" in lines[0], result.stderr
    assert not (tmp_path / "check").exists()
