"""The one resumable runner (musicstyle.campaign): resume, retry of failures, time budget, worker processes."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from musicstyle import campaign


def square(run: dict) -> dict:
    """A run that fails on odd numbers when asked to (module level, so a spawned worker can call it)."""
    if run.get("fail") and run["x"] % 2:
        return run | {"state": "failed", "reason": "odd", "seconds": 0.0}
    return run | {"state": "ok", "reason": "", "y": run["x"] ** 2, "seconds": 0.0}


def plan(n: int, fail: bool = False) -> list[dict]:
    return [{"run_id": f"x{x}", "x": x, "fail": fail} for x in range(n)]


def test_runs_are_written_and_a_rerun_runs_nothing(tmp_path: Path) -> None:
    csv = tmp_path / "runs.csv"
    calls: list[str] = []

    def counted(run: dict) -> dict:
        calls.append(run["run_id"])
        return square(run)

    frame = campaign.run_all(plan(4), counted, csv)
    assert sorted(frame["y"]) == [0, 1, 4, 9] and len(calls) == 4
    assert pd.read_csv(csv)["y"].tolist() == frame["y"].tolist()
    again = campaign.run_all(plan(4), counted, csv)
    assert len(calls) == 4 and sorted(again["y"]) == [0, 1, 4, 9]


def test_failed_runs_are_recorded_and_retried(tmp_path: Path) -> None:
    csv = tmp_path / "runs.csv"
    first = campaign.run_all(plan(4, fail=True), square, csv)
    assert (first["state"] == "failed").sum() == 2 and set(first.loc[first["state"] == "failed", "reason"]) == {"odd"}
    second = campaign.run_all(plan(4), square, csv)  # the failures run again; the ok runs are kept
    assert (second["state"] == "ok").all() and sorted(second["run_id"]) == ["x0", "x1", "x2", "x3"]


def test_time_budget_stops_cleanly_and_resumes(tmp_path: Path) -> None:
    csv = tmp_path / "runs.csv"
    def slow(run: dict) -> dict:
        time.sleep(0.4)
        return square(run)

    part = campaign.run_all(plan(5), slow, csv, budget_minutes=0.01)  # 0.6 s: no run starts after that
    assert 1 <= len(part) < 5 and len(pd.read_csv(csv)) == len(part)
    rest = campaign.run_all(plan(5), square, csv)
    assert sorted(rest["x"]) == [0, 1, 2, 3, 4]


def test_worker_processes_give_the_same_records(tmp_path: Path) -> None:
    one = campaign.run_all(plan(4), square, tmp_path / "one.csv")
    two = campaign.run_all(plan(4), square, tmp_path / "two.csv", workers=2)
    key = ["run_id", "y"]
    assert one[key].sort_values("run_id").values.tolist() == two[key].sort_values("run_id").values.tolist()


def test_the_eta_times_each_kind_and_says_when_it_is_a_lower_bound() -> None:
    done = [("a", 10.0), ("a", 30.0)]
    assert campaign.remaining_estimate(["a"], done, 1) == "ETA 20 s"
    assert campaign.remaining_estimate(["a", "b"], done, 1).startswith("ETA > 20 s (1 runs")
    assert campaign.remaining_estimate(["a"] * 4, done, 2) == "ETA 40 s"
    assert campaign.remaining_estimate(["b"], done, 1) == "ETA unknown (1 runs of kinds not timed yet)"


def test_rows_outside_the_plan_stay_in_runs_csv(tmp_path: Path) -> None:
    csv = tmp_path / "runs.csv"
    campaign.run_all(plan(3), square, csv)
    smaller = campaign.run_all(plan(3)[:1] + [{"run_id": "new", "x": 5}], square, csv)
    assert sorted(smaller["run_id"]) == ["new", "x0"]
    assert sorted(pd.read_csv(csv)["run_id"]) == ["new", "x0", "x1", "x2"]  # nothing recorded is lost
