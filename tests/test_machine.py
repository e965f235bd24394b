"""util/machine.py's code version: the commit, and '+dirty' only where code (not a run's results) changed."""

from __future__ import annotations

import subprocess

from musicstyle.util.machine import code_version


def test_code_version_ignores_a_runs_own_results(tmp_path):
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "runs.csv").write_text("a\n1\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start")
    commit = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()
    (tmp_path / "results" / "runs.csv").write_text("a\n1\n2\n")  # a run appended its row
    assert code_version.__wrapped__(tmp_path) == commit
    (tmp_path / "code.py").write_text("x = 2\n")
    assert code_version.__wrapped__(tmp_path) == commit + "+dirty"
    assert code_version.__wrapped__(tmp_path / "missing") == "unknown"
