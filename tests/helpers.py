"""Helpers the tests share: generated corpora, tiny sweep configs, reading a study back, waiting on a process."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import soundfile as sf
import torch

from musicstyle.config import make_config

REPO = Path(__file__).resolve().parents[1]  # the project root (sweep.py runs from here)
RATE = 8000
TINY = """
study: {{objective: {objective}, trials: {trials}, seed: 0, startup_trials: 2, n_startup_steps: 1}}
corpus: {corpus}
fixed: {{sample_rate_hz: 8000, n_fft: 256, hop: 128, clip_seconds: 1.0, iterations: {iterations},
        griffin_lim_iters: 4, kernel_width: 5}}
search:
  alpha: {{low: 1.0e-4, high: 1.0, log: true}}
  beta: {{low: 1.0e-2, high: 100.0, log: true}}
  filters: {{choices: [16, 32]}}
  activation: {{choices: [relu, leaky_relu, elu, selu]}}
  lr: {{low: 1.0e-4, high: 1.0e-1, log: true, when: {{optimizer: adam}}}}
"""


def tone(path: Path, freqs: tuple[float, ...], seed: int, seconds: float = 1.2) -> Path:
    t = np.arange(int(seconds * RATE)) / RATE
    rng = np.random.default_rng(seed)
    audio = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in freqs) * (0.6 + 0.4 * np.sin(3 * t))
    sf.write(path, (0.2 * audio + 0.01 * rng.standard_normal(t.size)).astype(np.float32), RATE)
    return path


def make_corpus(tmp_path: Path) -> Path:
    """Three generated pairs (content: low tones, style: high tones) in a corpus YAML."""
    lines = ["pairs:"]
    for i in range(3):
        content = tone(tmp_path / f"content{i}.wav", (200.0 + 50 * i, 400.0), seed=i)
        style = tone(tmp_path / f"style{i}.flac", (900.0, 1500.0 + 100 * i), seed=10 + i)
        lines.append(f"  - {{name: p{i}, content: {content}, style: {style}}}")
    path = tmp_path / "corpus.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def tiny_config(tmp_path: Path, corpus: Path, objective: str = "quality", trials: int = 6,
                iterations: int = 5, name: str = "tiny.yaml") -> Path:
    path = tmp_path / name
    path.write_text(TINY.format(objective=objective, trials=trials, corpus=corpus, iterations=iterations))
    return path


def load(results: Path, study: str) -> optuna.Study:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(results / study / "study.journal")))
    return optuna.load_study(study_name=study, storage=storage)


def counted(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.get_trials() if t.state.is_finished() and "discarded" not in t.user_attrs]


def wait_for(condition, process: subprocess.Popen, timeout: float = 60.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if process.poll() is not None:
            pytest.fail(f"sweep ended early: {process.communicate()}")
        try:
            if condition():
                return
        except Exception:  # the journal may not exist yet
            pass
        time.sleep(0.05)
    process.kill()
    pytest.fail("timed out")


def assert_png(path: Path) -> None:
    """An existing, sizeable, non-blank PNG."""
    import matplotlib.image

    image = matplotlib.image.imread(path)
    assert image.shape[0] >= 200 and image.shape[1] >= 300, path
    assert float(image[..., :3].std()) > 0.05, f"{path} looks blank"


# --- small problems for the step's numerics (tests/test_speed_paths.py, tests/test_fused.py) ---------

SMALL = dict(n_fft=128, hop=32, filters=48, kernel_width=5, frames=40, iterations=15, device="cpu")
BINS = 65  # n_fft 128


def small_config(**changes):
    return make_config(SMALL | changes)


def spectrograms(frames: int = 40, dtype: torch.dtype = torch.float64, seed: int = 0) -> list[torch.Tensor]:
    """Three random (BINS, frames) log-magnitudes: content, style and a point to evaluate at."""
    gen = torch.Generator().manual_seed(seed)
    return [torch.rand(BINS, frames, generator=gen, dtype=dtype) * 3 for _ in range(3)]


def project_step(problem, spec):
    """The project's step as engine/optimize.py runs it: Problem.loss_parts, then backward."""
    x = spec.clone().requires_grad_(True)
    total, _, _ = problem.loss_parts(x)
    total.backward()
    return float(total.detach()), x.grad
