"""The base paper's result: the `transfer` command with no options on its two songs (minutes on a CPU)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import soundfile as sf

from conftest import REPO
from musicstyle.data.paper_songs import BASE_ROW_RANGE


@pytest.mark.slow
def test_default_transfer_reproduces_the_base_papers_loss(paper_songs, tmp_path):
    out, summary = tmp_path / "out.wav", tmp_path / "s.json"
    done = subprocess.run([sys.executable, "-m", "musicstyle", "transfer", *map(str, paper_songs),
                           "--out", str(out), "--json", str(summary)],
                          capture_output=True, text=True, cwd=REPO, timeout=1800)
    assert done.returncode == 0, done.stderr
    data = json.loads(summary.read_text())
    print(f"paper reproduction: final loss {data['final_loss']:.2f} in {data['optimize_seconds']:.0f} s")
    assert BASE_ROW_RANGE[0] <= data["final_loss"] <= BASE_ROW_RANGE[1]
    assert data["iterations"] >= 100 and not data["float64_fallback"]
    assert sf.info(out).samplerate == 22050 and sf.info(out).frames == 512 * 429
