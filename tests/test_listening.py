"""The listening report: built from a real smoke sweep, then opened in headless Chromium."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from musicstyle.reports.listening import fmt, write_ogg, write_sweep_listening_report

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
K = 3


@pytest.fixture(scope="module")
def sweep_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A four-trial smoke sweep (the paper's four rows) and its listening report."""
    root = tmp_path_factory.mktemp("sweep")
    subprocess.run([sys.executable, "sweep.py", "--config", "configs/smoke.yaml", "--results", str(root),
                    "--trials", "5", "--set", "fixed.iterations=4", "--workers", "1", "--quiet"],
                   cwd=REPO, check=True, capture_output=True, timeout=300,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    folder = root / "smoke"
    assert (folder / "report.html").exists()  # the sweep writes it itself; rebuilt here with this test's K
    write_sweep_listening_report(folder, k=K)
    return folder


def best_from_csv(folder: Path) -> pd.DataFrame:
    """The k best trials computed from trials.csv here, independently of the report's code."""
    trials = pd.read_csv(folder / "trials.csv")
    done = trials[(trials["state"] == "COMPLETE") & trials["discarded"].isna()]
    return done.sort_values("objective_quality_score").head(K)


def test_report_files_and_size(sweep_results: Path) -> None:
    html = (sweep_results / "report.html").read_text()
    assert "<audio" in html and 'id="best-trials"' in html
    for name in ("trials.csv", "pairs.csv"):
        assert name in html or (sweep_results / name).exists()
    listen = sweep_results / "listen"
    oggs = list(listen.rglob("*.ogg"))
    assert oggs and all(p.read_bytes()[:4] == b"OggS" for p in oggs)
    total = sum(p.stat().st_size for p in listen.rglob("*") if p.is_file())
    assert total < 10 * 2**20
    table = html.split('id="best-trials"', 1)[1].split("</table>", 1)[0]
    shown = [int(n) for n in re.findall(r"<tr>\s*<td>(\d+)</td>", table)]
    assert shown == list(best_from_csv(sweep_results)["trial"])


def test_the_sweep_attaches_kept_outputs_to_their_trials(sweep_results: Path) -> None:
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(sweep_results / "study.journal")))
    study = optuna.load_study(study_name="smoke", storage=storage)
    kept = sorted(int(p.name.split("_")[1]) for p in (sweep_results / "best").glob("trial_*"))
    assert kept, "no trial kept its outputs"
    for number in kept:  # each kept trial (a new best or a paper row) carries its WAVs and PNGs
        names = {m.filename for m in optuna.artifacts.get_all_artifact_meta(study.trials[number], storage=storage)}
        wavs = {p.name for p in (sweep_results / "best" / f"trial_{number:04d}").glob("*.wav")}
        assert wavs and wavs <= names and any(n.endswith("_spectrograms.png") for n in names)


def test_ogg_round_trip(tmp_path: Path) -> None:
    import soundfile as sf

    t = np.arange(16000) / 16000
    write_ogg(tmp_path / "a.ogg", 0.5 * np.sin(2 * np.pi * 440 * t), 16000)
    audio, rate = sf.read(tmp_path / "a.ogg")
    assert rate == 16000 and abs(len(audio) - 16000) < 100
    assert 0.3 < np.max(np.abs(audio)) < 0.7


def open_in_chromium(page_path: Path, screenshot: Path, table: str = "") -> dict:
    """Load a report in headless Chromium: console errors, every <audio> and <img>, a table's cells."""
    if not Path(CHROMIUM).exists():
        pytest.skip("headless Chromium is not installed (`apt-get install chromium`; .ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in requirements-dev.txt")
    seen: dict = {"errors": []}
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: seen["errors"].append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: seen["errors"].append(str(e)))
            page.on("requestfailed", lambda r: seen["errors"].append(f"failed: {r.url}"))
            page.goto(page_path.as_uri(), wait_until="load")
            page.wait_for_function(
                "() => [...document.querySelectorAll('audio')].every(a => a.readyState >= 1 || a.error)",
                timeout=15000)
            seen["audio"] = page.eval_on_selector_all(
                "audio", "els => els.map(a => ({src: a.currentSrc, duration: a.duration, "
                         "error: a.error && a.error.code}))")
            seen["images"] = page.eval_on_selector_all(
                "img", "els => els.map(i => ({src: i.currentSrc, width: i.naturalWidth}))")
            if table:
                seen["rows"] = page.eval_on_selector_all(
                    f"#{table} tbody tr", "trs => trs.map(tr => [...tr.cells].map(c => c.textContent.trim()))")
                seen["header"] = page.eval_on_selector_all(f"#{table} thead th",
                                                           "ths => ths.map(th => th.textContent.trim())")
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert not seen["errors"], seen["errors"]
    assert seen["audio"], "no <audio> element on the page"
    for a in seen["audio"]:
        assert a["error"] is None and a["duration"] > 0 and math.isfinite(a["duration"]), a
    assert seen["images"] and all(i["width"] > 0 for i in seen["images"]), seen["images"]
    assert screenshot.stat().st_size > 10_000
    return seen


def test_report_in_chromium(sweep_results: Path, tmp_path: Path) -> None:
    seen = open_in_chromium(sweep_results / "report.html", tmp_path / "report.png", table="best-trials")
    roles = {Path(a["src"]).stem.split("_")[1] for a in seen["audio"] if "/clips/" in a["src"]}
    assert {"content", "style"} <= roles
    expected = best_from_csv(sweep_results)
    assert len(seen["rows"]) == len(expected)
    for cells, (_, row) in zip(seen["rows"], expected.iterrows()):
        for name, cell in zip(seen["header"], cells):
            value = row[name]
            if isinstance(value, float) and math.isnan(value):
                assert cell == "", (name, cell)
            else:
                assert cell == fmt(value), (name, cell, value)


def test_committed_paper_report_plays(tmp_path: Path) -> None:
    page = REPO / "results" / "paper" / "report.html"
    seen = open_in_chromium(page, tmp_path / "paper.png")
    kept = []  # every run that kept its audio: the comparison's own, and any of `reproduce --listen`
    for runs in (page.parent / "runs.csv", page.parent / "listen" / "runs.csv"):
        if runs.exists():
            frame = pd.read_csv(runs)
            kept += list(frame["audio"].dropna()) if "audio" in frame else []
    outputs = [a for a in seen["audio"] if "/audio/" in a["src"]]
    assert kept and sorted(Path(a["src"]).name for a in outputs) == sorted(Path(p).name for p in kept)
    served = [*(page.parent / "listen").rglob("*"), *(page.parent / "audio").glob("*.ogg"),
              *(page.parent / "audio").glob("*.png")]  # what the page loads (the .npz only redraw the PNGs)
    assert page.stat().st_size + sum(f.stat().st_size for f in served if f.is_file()) < 10 * 2**20


def test_a_pair_with_a_target_gets_its_player(sweep_results: Path, tmp_path: Path) -> None:
    folder = tmp_path / "smoke"
    shutil.copytree(sweep_results, folder, ignore=shutil.ignore_patterns("listen", "report.html"))
    pairs = pd.read_csv(folder / "pairs.csv")
    pairs["target"] = pairs["style"]  # any readable file stands in for a rendered target here
    pairs.to_csv(folder / "pairs.csv", index=False)
    html = write_sweep_listening_report(folder, k=1).read_text()
    targets = sorted((folder / "listen" / "clips").glob("*_target_*"))
    assert {p.suffix for p in targets} == {".ogg", ".png"}
    assert html.count("<b>target</b>") == html.count("<b>content</b>") > 0


def test_clip_settings_prefer_pairs_csv_columns() -> None:
    from musicstyle.reports.listening import clip_settings

    configs = {3: {"offset_seconds": 5.0, "clip_seconds": 4.0, "sample_rate_hz": 22050, "n_fft": 2048, "hop": 512}}
    own = pd.Series({"trial": 3, "offset_seconds": 1.5, "clip_seconds": float("nan"), "sample_rate_hz": 16000,
                     "n_fft": 512, "hop": 256})
    assert clip_settings(own, configs) == {"offset_seconds": 1.5, "clip_seconds": None, "sample_rate_hz": 16000,
                                           "n_fft": 512, "hop": 256}
    assert clip_settings(pd.Series({"trial": 3}), configs) == configs[3]
    assert clip_settings(pd.Series({"trial": 4}), configs) is None


def test_empty_results_give_a_page(tmp_path: Path) -> None:
    pd.DataFrame(columns=["trial", "state", "objective_quality_score", "discarded"]).to_csv(
        tmp_path / "trials.csv", index=False)
    pd.DataFrame(columns=["trial", "pair"]).to_csv(tmp_path / "pairs.csv", index=False)
    (tmp_path / "listen" / "trial_0001").mkdir(parents=True)
    (tmp_path / "listen" / "trial_0001" / "old.ogg").write_bytes(b"OggS")  # an earlier report's file
    html = write_sweep_listening_report(tmp_path).read_text()
    assert 'id="best-trials"' in html and "<audio" not in html
    assert not (tmp_path / "listen" / "trial_0001" / "old.ogg").exists()
