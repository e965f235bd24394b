"""The `transfer` command: outputs, summary, and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO

SMALL_FLAGS = ["--sample-rate", "8000", "--n-fft", "256", "--hop", "64", "--filters", "64", "--kernel-width", "5",
               "--frames", "100", "--iterations", "15", "--griffin-lim-iters", "5", "--device", "cpu"]


def transfer(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "musicstyle", "transfer", *map(str, args)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)


def test_transfer_writes_wav_png_and_summary(song_pair, tmp_path):
    out, summary = tmp_path / "out" / "result.wav", tmp_path / "s.json"
    done = transfer(*song_pair, "--out", out, "--json", summary, *SMALL_FLAGS, "--activation", "leaky_relu")
    assert done.returncode == 0, done.stderr
    audio, rate = sf.read(out)
    assert rate == 8000 and audio.ndim == 1 and audio.size == 64 * 99 and np.abs(audio).max() > 0
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    data = json.loads(summary.read_text())
    for key in ("final_loss", "content_loss", "style_loss", "content_loss_unweighted", "style_loss_unweighted",
                "initial_loss", "iterations", "evaluations", "optimize_seconds", "seconds_per_evaluation",
                "reconstruct_seconds", "style_distance", "content_distance", "spectral_convergence"):
        assert isinstance(data[key], (int, float)), key
    assert data["final_loss"] < data["initial_loss"]
    assert data["final_loss"] == pytest.approx(data["content_loss"] + data["style_loss"], rel=1e-5)
    assert data["config"]["activation"] == "leaky_relu" and data["config"]["filters"] == 64
    assert "final loss" in done.stdout and "iteration" in done.stderr


def test_transfer_is_deterministic_under_a_seed(song_pair, tmp_path):
    losses = []
    for name in ("a", "b"):
        done = transfer(*song_pair, "--out", tmp_path / f"{name}.wav", "--json", tmp_path / f"{name}.json",
                        *SMALL_FLAGS, "--seed", "7")
        assert done.returncode == 0, done.stderr
        losses.append(json.loads((tmp_path / f"{name}.json").read_text())["final_loss"])
    assert losses[0] == losses[1]
    np.testing.assert_array_equal(sf.read(tmp_path / "a.wav")[0], sf.read(tmp_path / "b.wav")[0])


def _bad_inputs(tmp_path: Path, song_pair) -> dict:
    content, style = song_pair
    noise = tmp_path / "noise.mp3"
    noise.write_bytes(np.random.default_rng(1).bytes(20_000))
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, dtype=np.float32), 8000)
    return {
        "missing file": ([tmp_path / "nope.wav", style], "no such file"),
        "random bytes": ([noise, style], "not a readable audio file"),
        "zero-length file": ([content, empty], "empty file"),
        "silent clip": ([silent, style], "silent"),
        "huge offset": ([content, style, "--offset-seconds", "1e9"], "past the end"),
        "clip shorter than kernel": ([content, style, "--clip-seconds", "0.01"], "fewer than the kernel"),
        "negative alpha": ([content, style, "--alpha", "-1"], "alpha"),
        "zero filters": ([content, style, "--filters", "0"], "filters"),
        "nonsense number": ([content, style, "--beta", "lots"], "beta"),
        "unwritable output": ([content, style, "--out", "/proc/nope/out.wav"], "output"),
    }


@pytest.mark.parametrize("case", ["missing file", "random bytes", "zero-length file", "silent clip", "huge offset",
                                  "clip shorter than kernel", "negative alpha", "zero filters", "nonsense number",
                                  "unwritable output"])
def test_bad_input_is_one_line_exit_2_and_no_output(case, song_pair, tmp_path):
    args, message = _bad_inputs(tmp_path, song_pair)[case]
    out = tmp_path / "out.wav"
    if "--out" not in args:
        args = [*args, "--out", out]
    done = transfer(*args[:2], *SMALL_FLAGS, *args[2:], "--json", tmp_path / "s.json")  # the case's flags win
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], done.stderr
    assert not out.exists() and not (tmp_path / "s.json").exists() and not out.with_suffix(".png").exists()


def test_unknown_activation_is_rejected_by_the_parser(song_pair, tmp_path):
    done = transfer(*song_pair, "--out", tmp_path / "o.wav", "--activation", "swish2")
    assert done.returncode == 2 and "Traceback" not in done.stderr and "activation" in done.stderr
