"""The paper-comparison report on a reduced budget, resuming, and fetching the songs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import REPO, tone_mix
from musicstyle.data.paper_songs import PAPER_ROWS, SONG_SHA256, fetch_songs, verify_songs
from musicstyle.paper.finalists import finalists_table
from musicstyle.paper.listen import LIMIT_ROWS
from musicstyle.paper.runs import plan_runs

REDUCED = ["--quick", "--iterations", "3", "--griffin-lim-iters", "2", "--filters", "128", "--frames", "60",
           "--device", "cpu", "--converge-iterations", "20"]
# the end-to-end run's joint search: 3 trials, 2 seeds each; its best in two other precisions
SEARCH = ["--search", "3", "--finalist-seeds", "2", "--precision-check", "fp32,fp64"]


def reproduce(out: Path, paper_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "musicstyle", "reproduce", "--paper-dir", str(paper_dir),
                           "--out", str(out), *REDUCED, *extra], capture_output=True, text=True, cwd=REPO,
                          timeout=900)


def test_full_plan_covers_rows_ablation_converged_and_limit():
    runs = plan_runs(seeds=3, limit_seeds=1, converged_seeds=2, converge_iterations=3000)
    groups = {g: [r for r in runs if r.group == g] for g in ("rows", "ablation", "converged", "limit")}
    assert len(groups["rows"]) == 4 * 3
    assert len(groups["ablation"]) == 4 * 3  # the 8 cells less the 4 that are rows
    assert len(groups["converged"]) == 8 * 2 and len(groups["limit"]) == 8
    assert all(r.settings["iterations"] == 3000 and r.settings["optimizer"] == "lbfgs" for r in groups["converged"])
    assert len({r.run_id for r in runs}) == len(runs)


@pytest.fixture
def synthetic_paper_dir(tmp_path: Path) -> Path:
    """Generated stand-ins for the paper's two songs (3 s MP3s under their names), so that `reproduce`
    and its report run end to end where the real songs are absent."""
    import soundfile as sf

    folder = tmp_path / "synthetic-songs"
    folder.mkdir()
    sf.write(folder / "imperial.mp3", tone_mix(3.0, 22050, (196.0, 294.0, 392.0), seed=3), 22050)
    sf.write(folder / "usa.mp3", tone_mix(3.0, 22050, (330.0, 880.0, 1760.0), seed=4), 22050)
    return folder


@pytest.fixture(params=["synthetic", "paper"])
def songs_dir(request) -> Path:
    """The folder `reproduce --paper-dir` reads: generated songs (always), the paper's (where present)."""
    if request.param == "synthetic":
        return request.getfixturevalue("synthetic_paper_dir")
    return request.getfixturevalue("paper_songs")[0].parent


def test_reduced_reproduction_writes_the_report_and_resumes(songs_dir, tmp_path):
    out = tmp_path / "paper"
    done = reproduce(out, songs_dir, *SEARCH)
    assert done.returncode == 0, done.stderr
    runs = pd.read_csv(out / "runs.csv")
    assert set(runs["row"].dropna()) >= {r.name for r in PAPER_ROWS}
    assert (runs["state"] == "ok").all() and runs["quality_score"].between(0, 10).all()
    report = (out / "report.md").read_text()
    for heading in ("## Verdict", "## What reproduces", "## The table's four rows as printed",
                    "## Activation and weights", "## One setup for the blog's three rows", "## Converged",
                    "## Infinitely many filters",
                    "## What each phase cost", "python -m musicstyle reproduce"):
        assert heading in report
    for column in ("machine", "device", "precision_used", "code_version", "invocation"):  # every row labelled
        assert runs[column].notna().all() and (runs[column].astype(str) != "").all(), column
    assert runs["invocation"].nunique() == 1 and "baseline: content copy" in report
    search = pd.read_csv(out / "search-runs.csv")  # every row a search trial ran, stopped early or not
    assert set(search["trial"]) == set(range(3)) and set(search["state"]) <= {"ok", "stopped", "failed"}
    finalists = runs[runs["group"] == "finalists"]
    assert len(finalists) == 3 * 2 * finalists["label"].nunique() and finalists["label"].nunique() >= 1
    phases = pd.read_csv(out / "phases.csv")
    assert list(phases["phase"]) == ["rows and ablation", "converged", "limit", "joint search", "finalists",
                                     "precision check"]
    checks = runs[runs["group"] == "precision check"]  # the setup the verdict names, in the other precision(s)
    best = finalists_table(runs).loc[0, "setup"]
    assert len(checks) >= 3 and {f"trial {int(t)}" for t in checks["trial"]} == {best}
    for row in PAPER_ROWS:
        assert f"| {row.name}" in report
    for png in ("loss_by_activation.png", "quality_by_activation.png", "base_row_spectrograms.png"):
        with Image.open(out / png) as image:
            assert image.size[0] > 400 and np.unique(np.asarray(image.convert("L"))).size > 20
    html = (out / "report.html").read_text()  # the listening report: the four rows' audio, seed 0
    kept = runs[runs["audio"].notna()]  # the rows, the limit cell and the best finalist's three rows, at seed 0
    assert sorted(kept[kept["group"] == "rows"]["row"]) == sorted(r.name for r in PAPER_ROWS)
    assert (kept["seed"] == 0).all() and set(kept["group"]) == {"rows", "limit", "finalists"}
    assert len(kept[kept["group"] == "finalists"]) == 3 and kept["audio"].is_unique
    for audio in kept["audio"]:
        assert (out / audio).read_bytes()[:4] == b"OggS" and f'src="{audio}"' in html
    assert html.count("<audio") == 3 * len(kept) and 'src="listen/content.ogg"' in html
    again = reproduce(out, songs_dir, "--workers", "2", *SEARCH)
    assert again.returncode == 0 and "run 1/" not in again.stderr  # everything was already done
    assert "search trial" not in again.stderr and len(pd.read_csv(out / "phases.csv")) == len(phases)
    assert len(pd.read_csv(out / "runs.csv")) == len(runs)
    (out / "report.md").unlink()
    rebuilt = subprocess.run([sys.executable, "-m", "musicstyle", "reproduce", "--paper-dir", str(songs_dir),
                              "--out", str(out), "--report-only", *REDUCED[1:]], capture_output=True, text=True,
                             cwd=REPO, timeout=600)
    assert rebuilt.returncode == 0 and "run 1/" not in rebuilt.stderr, rebuilt.stderr
    text = (out / "report.md").read_text()
    assert "## Verdict" in text and "Runs made by: `python -m musicstyle reproduce" in text and "--search 3" in text


def test_listen_keeps_the_rows_audio_apart_with_limit_players(songs_dir, tmp_path):
    out = tmp_path / "paper"
    done = subprocess.run([sys.executable, "-m", "musicstyle", "reproduce", "--out", str(out), "--listen",
                           "--paper-dir", str(songs_dir), *REDUCED[1:]], capture_output=True, text=True, cwd=REPO,
                           timeout=900)
    assert done.returncode == 0, done.stderr
    assert not (out / "runs.csv").exists()  # the comparison's own runs are untouched
    listened = pd.read_csv(out / "listen" / "runs.csv")
    assert sorted(listened["row"].dropna()) == sorted(r.name for r in PAPER_ROWS) and (listened["state"] == "ok").all()
    limit = listened[listened["filters"] == np.inf]  # the base row and the blog's LeakyReLU in the limit
    assert sorted(limit["label"]) == sorted(f"{name}, filters inf" for name in LIMIT_ROWS)
    assert set(limit["precision_used"]) == {"fp32"} and limit["quality_score"].between(0, 10).all()
    assert (listened.loc[listened["filters"] != np.inf, "filters"] == 128).all()  # the rest at --filters 128
    html = (out / "report.html").read_text()
    assert html.count("<audio") == 3 * (len(PAPER_ROWS) + len(LIMIT_ROWS)) and "listen/runs.csv" in html
    for audio in limit["audio"]:
        assert (out / "listen" / audio).read_bytes()[:4] == b"OggS" and f'src="listen/{audio}"' in html
    assert html.count("filters = inf") == len(LIMIT_ROWS)  # each limit player names its filters


def test_reproduce_without_songs_is_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MUSICSTYLE_PAPER_SONGS"}
    done = subprocess.run([sys.executable, "-m", "musicstyle", "reproduce", "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, env=env)
    assert done.returncode == 2 and "MUSICSTYLE_PAPER_SONGS" in done.stderr and "Traceback" not in done.stderr


def test_missing_songs_are_one_line(tmp_path):
    done = reproduce(tmp_path / "out", tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "no such file" in done.stderr and "fetch-paper-songs" in done.stderr


def test_fetch_checks_sha256(paper_songs, tmp_path):
    folder = paper_songs[0].parent
    paths = fetch_songs(tmp_path / "songs", base_url=folder.as_uri() + "/")
    assert [p.name for p in paths] == list(SONG_SHA256) and verify_songs(tmp_path / "songs") == []
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "imperial.mp3").write_bytes(b"not the song")
    (fake / "usa.mp3").write_bytes(paper_songs[1].read_bytes())
    done = subprocess.run([sys.executable, "-m", "musicstyle", "fetch-paper-songs", str(tmp_path / "got"),
                           "--url", fake.as_uri() + "/"], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 2 and "checksum mismatch" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "got" / "imperial.mp3").exists()


def test_song_check_names_songs_that_are_not_the_papers(synthetic_paper_dir, tmp_path):
    """The checksum check on generated stand-ins: both named as mismatches, and fetching them refuses."""
    assert sorted(verify_songs(synthetic_paper_dir)) == sorted(SONG_SHA256)
    done = subprocess.run([sys.executable, "-m", "musicstyle", "fetch-paper-songs", str(tmp_path / "got"),
                           "--url", synthetic_paper_dir.as_uri() + "/"], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 2 and "checksum mismatch" in done.stderr and "Traceback" not in done.stderr
    assert not any((tmp_path / "got").glob("*.mp3"))
