"""A torn journal: the default journal file cut in the middle of a record, as a kill during a write
leaves it. The next run keeps every complete record and finishes the study; a damaged record in the
middle is one line saying what to do, never a traceback."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, counted, load, make_corpus, tiny_config
from musicstyle.sweep.cli import main

QUICK = ["--quiet", "--workers", "1", "--set", "study.paper_rows=false", "--set", "study.prune=false"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    """A finished 3-trial study on the default journal, run by another process (so that a trial its
    torn journal leaves RUNNING belongs to a dead process); returns (config, results folder)."""
    folder = tmp_path_factory.mktemp("torn")
    config = tiny_config(folder, make_corpus(folder), trials=3)
    results = folder / "results"
    subprocess.run([sys.executable, "sweep.py", "--config", str(config), "--results", str(results), *QUICK],
                   cwd=REPO, check=True, capture_output=True, timeout=300)
    return config, results


def copy_study(results: Path, tmp_path: Path) -> Path:
    target = tmp_path / "results"
    shutil.copytree(results, target)
    return target


@pytest.mark.parametrize("where", [0.5, 0.97])
def test_a_torn_last_record_is_cut_and_the_study_finishes(finished, tmp_path, capsys, where):
    config, original = finished
    results = copy_study(original, tmp_path)
    journal = results / "tiny" / "study.journal"
    data = journal.read_bytes()
    cut = int(where * len(data))
    assert data[cut - 1:cut] != b"\n"
    journal.write_bytes(data[:cut])  # a kill in the middle of a write
    kept = {t.number: t.values for t in counted(load(results, "tiny"))}  # what the complete records hold
    assert main(["--config", str(config), "--results", str(results), "--trials", "4", *QUICK]) == 0
    err = capsys.readouterr().err
    assert "torn record" in err and "Traceback" not in err
    study = load(results, "tiny")
    assert len(counted(study)) == 4  # exactly N, the torn trial's work re-run
    assert {t.number: t.values for t in counted(study) if t.number in kept} == kept  # nothing complete lost
    assert journal.read_bytes().startswith(data[:data.rfind(b"\n", 0, cut) + 1])
    torn = list(journal.parent.glob("study.journal.torn-*"))
    assert len(torn) == 1 and torn[0].read_bytes() == data[data.rfind(b"\n", 0, cut) + 1:cut]


def test_a_damaged_middle_record_is_one_line_saying_what_to_do(finished, tmp_path, capsys):
    config, original = finished
    results = copy_study(original, tmp_path)
    journal = results / "tiny" / "study.journal"
    lines = journal.read_bytes().splitlines(keepends=True)
    at = len(lines) // 2  # after the study's creation records
    journal.write_bytes(b"".join(lines[:at]) + b'{"op_code": 5, "trunc\n' + b"".join(lines[at:]))
    args = ["--config", str(config), "--results", str(results), "--trials", "4", *QUICK]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"damaged record at line {at + 1}" in err[0] and "Traceback" not in err[0]
    command = err[0].split("`")[1]  # the advice works as given
    subprocess.run(command, shell=True, cwd=journal.parent, check=True)  # noqa: S602 (the test's own text)
    assert main(args) == 0
    assert len(counted(load(results, "tiny"))) == 4
