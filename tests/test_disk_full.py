"""A full disk or a read-only results folder mid-sweep, injected at the write calls of musicstyle/util/io.py
(an OSError from the final rename, as ENOSPC, or from creating the temporary file, as EROFS).

Expected: one line, exit status 2; the study's stored trials intact; no partial or temporary file
under the results folder; the run with space again resumes, re-runs the cut-short trial and ends
at exactly N."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

import musicstyle.util.io
from helpers import counted, load, make_corpus, tiny_config
from musicstyle.sweep.cli import main


def fill_disk_after(monkeypatch, results: Path, code: int, at: str, counted_trials: int) -> list[int]:
    """From the moment the study has `counted_trials` counted trials, every write of util/io.py fails with
    `code` at step `at` ("replace": the temporary file was written; "create": it cannot be made)."""
    failures: list[int] = []

    def full() -> bool:
        journal = results / "tiny" / "study.journal"
        return journal.exists() and len(counted(load(results, "tiny"))) >= counted_trials

    def replace(src, dst):
        if full():
            failures.append(code)
            raise OSError(code, os.strerror(code))
        return os.replace(src, dst)

    def mkstemp(*args, **kwargs):
        if full():
            failures.append(code)
            raise OSError(code, os.strerror(code))
        return tempfile.mkstemp(*args, **kwargs)

    class FailingOs:  # util/io.py's `os`, with a rename that fails once the disk is full
        def __getattr__(self, name):
            return replace if name == "replace" else getattr(os, name)

    if at == "replace":
        monkeypatch.setattr(musicstyle.util.io, "os", FailingOs())
    else:
        monkeypatch.setattr(musicstyle.util.io, "tempfile", SimpleNamespace(mkstemp=mkstemp))
    return failures


@pytest.mark.parametrize("code, at", [(errno.ENOSPC, "replace"), (errno.EROFS, "create")])
def test_a_full_disk_mid_sweep_is_one_line_and_a_later_run_finishes(tmp_path, monkeypatch, capsys, code, at):
    config = tiny_config(tmp_path, make_corpus(tmp_path), trials=4)  # the paper's 4 rows: each keeps its WAVs
    results = tmp_path / "results"
    args = ["--config", str(config), "--results", str(results), "--quiet", "--workers", "1",
            "--set", "study.prune=false"]
    with monkeypatch.context() as patch:
        failures = fill_disk_after(patch, results, code, at, counted_trials=2)
        assert main(args) == 2
    assert failures, "the injected fault never fired"
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    assert err[-1].startswith("error: cannot write ") and os.strerror(code) in err[-1] and "resume" in err[-1]
    assert not [p for p in results.rglob("*") if ".tmp" in p.name]  # no temporary file left
    for wav in results.rglob("*.wav"):  # every output present is whole
        assert sf.info(wav).frames > 0
    for npz in results.rglob("*.npz"):
        assert len(np.load(npz).files) > 0
    before = {t.number: t.values for t in counted(load(results, "tiny"))}
    assert len(before) == 2
    cut_short = [t for t in load(results, "tiny").trials if t.user_attrs.get("discarded") == "interrupted"]
    assert len(cut_short) == 1 and "could not be written" in cut_short[0].user_attrs["fail_reason"]

    assert main(args) == 0  # space again: resume
    study = load(results, "tiny")
    assert len(counted(study)) == 4
    assert {t.number: t.values for t in counted(study) if t.number in before} == before
    assert [t for t in study.trials if t.user_attrs.get("retry_of") == cut_short[0].number]
    rows = sorted(t.user_attrs["paper_row"] for t in counted(study))
    assert len(rows) == len(set(rows)) == 4  # the paper rows once each
    assert (results / "tiny" / "results.md").exists() and (results / "tiny" / "trials.csv").exists()
