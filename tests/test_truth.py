"""The rendered corpus and the ground-truth measures: deterministic renders, the measures' fixed points,
the baselines' order, and the validation command end to end (its --quick plan)."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("fluidsynth", exc_type=ImportError)

from musicstyle.config import make_config  # noqa: E402
from musicstyle.data.baselines import score_baselines  # noqa: E402
from musicstyle.data.corpus import SongPair, rendered_pairs  # noqa: E402
from musicstyle.data.rendered import INSTRUMENTS, PIECES, plan_pairs, render_corpus, render_piece  # noqa: E402
from musicstyle.engine.audio import load_clip  # noqa: E402
from musicstyle.engine.transfer import load_pair  # noqa: E402
from musicstyle.errors import ConfigError  # noqa: E402
from musicstyle.truth.measures import (  # noqa: E402
    MARGIN_TOLERANCE,
    frontier_margin,
    reference_for,
    through_griffin_lim,
    truth_measures,
)

CONFIG = make_config({"clip_seconds": 1.5, "griffin_lim_iters": 8, "n_fft": 1024, "hop": 256, "device": "cpu"})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[SongPair]:
    return rendered_pairs(tmp_path_factory.mktemp("rendered"), pairs=3)


def test_default_plan_meets_the_corpus_spec() -> None:
    from collections import Counter

    from musicstyle.data.rendered import HELD_OUT_PER_TARGET, PAIRS_PER_TARGET, RENDER_SECONDS

    pairs = plan_pairs()
    programs = {p.content_program for p in pairs} | {p.style_program for p in pairs}
    assert len(pairs) >= 48 and len(PIECES) >= 8 and RENDER_SECONDS >= 10.5  # 430 frames at hop 512 fit whole
    assert len({INSTRUMENTS[p][1] for p in programs}) >= 6
    assert set(Counter(p.style_program for p in pairs).values()) == {PAIRS_PER_TARGET}  # stratified by target
    assert set(Counter(p.style_program for p in pairs if p.held_out).values()) == {HELD_OUT_PER_TARGET}
    assert all(len({p.content_piece, p.style_piece, p.other_piece}) == 3 for p in pairs)
    assert all(p.content_program != p.style_program for p in pairs)
    assert len({(p.content_piece, p.style_piece, p.content_program, p.style_program) for p in pairs}) == len(pairs)
    assert [p.held_out for p in pairs] == sorted(p.held_out for p in pairs)  # tuning pairs first
    assert plan_pairs(seed=1) != pairs and plan_pairs() == pairs


def test_rendering_is_deterministic(tmp_path: Path, corpus: list[SongPair]) -> None:
    again = Path(render_corpus(tmp_path / "again", pairs=3)).parent
    first = json.loads((corpus[0].target.parent / "manifest.json").read_text())
    second = json.loads((again / "manifest.json").read_text())
    assert first["files_sha256"] == second["files_sha256"]
    for name in first["files_sha256"]:
        assert (again / name).read_bytes() == (corpus[0].target.parent / name).read_bytes()
    assert first["licences"] and first["seed"] == 0 and len(first["pairs"]) == 3
    assert first["seconds"] >= 10.5 and all(p["score"].endswith(".mid") for p in first["pairs"])


def test_default_cache_folder_names_the_length(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from musicstyle.data.rendered import RENDER_SECONDS

    monkeypatch.setenv("MUSICSTYLE_CACHE_DIR", str(tmp_path))
    manifest = render_corpus(pairs=1)
    assert manifest.parent.name.endswith(f"-{RENDER_SECONDS:g}s")  # a corpus of another length is another folder
    assert json.loads(manifest.read_text())["seconds"] == RENDER_SECONDS


def test_score_file_holds_the_rendered_notes(corpus: list[SongPair]) -> None:
    from musicstyle.data.rendered import piece_notes, read_score

    manifest = json.loads((corpus[0].target.parent / "manifest.json").read_text())["pairs"][0]
    notes = read_score(corpus[0].target.parent / manifest["score"])
    expected = sorted(piece_notes(manifest["content_piece"]))
    assert [n[0] for n in notes] == [n[0] for n in expected]
    assert np.allclose([n[1] for n in notes], [n[1] for n in expected], atol=0.01)


def test_target_and_content_copy_are_the_fixed_points(tmp_path: Path, corpus: list[SongPair]) -> None:
    pair = corpus[0]
    manifest = json.loads((pair.target.parent / "manifest.json").read_text())["pairs"][0]
    rerendered = tmp_path / "target_again.wav"
    render_piece(manifest["content_piece"], manifest["style_program"], rerendered)
    cache: dict = {}
    reference = reference_for(pair, CONFIG, cache)
    frames = min(1 + len(load_clip(p, CONFIG.sample_rate_hz, 0, 1.5)) // CONFIG.hop
                 for p in (pair.content, pair.style, pair.target))
    clip = load_clip(rerendered, CONFIG.sample_rate_hz, 0, CONFIG.clip_seconds)
    target = truth_measures(through_griffin_lim(clip, frames, CONFIG), pair, CONFIG, cache)
    assert target["truth_notes"] == pytest.approx(0.0, abs=1e-6)  # the oracle itself (float32 WAV round trip)
    assert target["truth_timbre"] < 0.5 and target["truth_score"] < 0  # the right instrument; beats the frontier
    content = load_clip(pair.content, CONFIG.sample_rate_hz, 0, CONFIG.clip_seconds)
    copy = truth_measures(through_griffin_lim(content, frames, CONFIG), pair, CONFIG, cache)
    assert copy["truth_timbre"] > 0.5 and copy["truth_notes"] < 0.5  # wrong instrument, right notes
    # on the frontier (no margin at all), and nearer the wrong instrument than the midpoint allows
    assert copy["truth_score"] == pytest.approx(max(MARGIN_TOLERANCE, copy["truth_timbre"] - 0.5))
    assert len(cache) == 1 and reference_for(pair, CONFIG, cache) is reference


@given(st.lists(st.tuples(st.floats(-2, 2), st.floats(-2, 2)), min_size=1, max_size=8))
def test_no_trivial_output_beats_its_own_frontier(frontier: list[tuple[float, float]]) -> None:
    for point in frontier:
        assert frontier_margin(point, frontier) <= -MARGIN_TOLERANCE + 1e-12
    best = (min(0, *(t for t, _ in frontier)) - 1, min(0, *(n for _, n in frontier)) - 1)  # better than all
    assert frontier_margin(best, frontier) > 0


@given(st.floats(0, 1), st.floats(-0.5, 1.5))
def test_an_output_nearer_a_wrong_answer_never_beats_the_frontier(timbre: float, notes: float) -> None:
    far = [(1.0, 1.0)]  # a frontier that every output near the target beats
    margin = frontier_margin((timbre, notes), far)
    if timbre >= 0.5 or notes >= 0.5:
        assert margin <= 0  # the midpoints: nearer the wrong instrument or the wrong notes
    elif timbre < 0.4 and notes < 0.4:
        assert margin > 0


def test_reference_from_the_sweeps_clips_reads_only_the_target(corpus: list[SongPair],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import musicstyle.truth.measures as measures

    pair = corpus[1]
    spectrograms = load_pair(pair.content, pair.style, CONFIG)
    expected = reference_for(pair, CONFIG)
    read: list[Path] = []
    monkeypatch.setattr(measures, "load_clip", lambda path, *a: read.append(Path(path)) or load_clip(path, *a))
    again = reference_for(pair, CONFIG, clips=(spectrograms.content_audio, spectrograms.style_audio))
    assert read == [pair.target]
    assert again.frontier == expected.frontier and np.array_equal(again.reference, expected.reference)


def test_baselines_in_order_on_timbre(corpus: list[SongPair]) -> None:
    for pair in corpus:
        spectrograms = load_pair(pair.content, pair.style, CONFIG)
        target = load_clip(pair.target, CONFIG.sample_rate_hz, 0, CONFIG.clip_seconds)
        rows = {r["baseline"]: r for r in score_baselines(spectrograms, CONFIG, reference_for(pair, CONFIG), target)}
        timbre = {name: row["truth_timbre"] for name, row in rows.items()}
        assert timbre["oracle"] < 0.5 < timbre["content copy"], (pair.name, timbre)
        assert rows["content copy"]["content_distance"] < rows["style copy"]["content_distance"]
        assert all(rows[name]["truth_score"] >= MARGIN_TOLERANCE - 1e-9 for name in rows if name != "oracle")


def test_eq_matching_moves_the_content_spectrum_to_the_style() -> None:
    from musicstyle.data.baselines import eq_gain

    rng = np.random.default_rng(0)
    content = np.abs(rng.standard_normal((65, 40))) * np.linspace(2, 0.1, 65)[:, None]
    style = np.abs(rng.standard_normal((65, 40))) * np.linspace(0.1, 2, 65)[:, None]
    gain = eq_gain(content, style)
    matched = np.mean((content * gain[:, None]) ** 2, axis=1)
    before = np.abs(np.log(np.mean(content ** 2, axis=1) / np.mean(style ** 2, axis=1))).mean()
    after = np.abs(np.log(matched / np.mean(style ** 2, axis=1))).mean()
    assert after < before / 3


def test_truth_needs_a_target() -> None:
    with pytest.raises(ConfigError, match="no target"):
        truth_measures(np.zeros(100), SongPair("x", Path("a.wav"), Path("b.wav")), CONFIG)
    assert "target" not in SongPair("x", Path("a.wav"), Path("b.wav")).to_dict()
    assert SongPair("x", Path("a"), Path("b"), target=Path("t")).to_dict()["target"] == "t"


def test_missing_fluidsynth_library_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from musicstyle.data import rendered

    real_import = builtins.__import__

    def no_library(name, *args, **kwargs):
        if name == "fluidsynth":
            raise ImportError("Couldn't find the FluidSynth library.")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_library)
    with pytest.raises(ConfigError, match="apt-get install libfluidsynth3"):
        rendered._fluidsynth()


def test_corpus_render_cli(tmp_path: Path) -> None:
    from musicstyle.cli import main

    assert main(["corpus", "render", str(tmp_path / "c"), "--pairs", "2"]) == 0
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert len(manifest["pairs"]) == 2 and all((tmp_path / "c" / f).is_file() for f in manifest["files_sha256"])


@pytest.mark.slow  # about 30 s on an idle 2-core CPU (the --quick plan: 11 tiny transfers, 2 pairs)
def test_validation_quick_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pandas as pd

    from musicstyle.cli import main

    monkeypatch.setenv("MUSICSTYLE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MUSICSTYLE_PAPER_SONGS", raising=False)
    out = tmp_path / "truth"
    assert main(["truth", "--quick", "--out", str(out)]) == 0
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 11 and (runs["state"] == "ok").all()
    assert {"truth_score", "quality_score", "final_loss"} <= set(runs.columns)
    report = (out / "report.md").read_text()
    for heading in ("## Baselines", "## Validation", "## The paper's four rows"):
        assert heading in report
    for name in ("validation_scatter.png", "baselines.png", "baselines.csv", "ablation.csv"):
        assert (out / name).stat().st_size > 0
    before = (out / "runs.csv").read_bytes()
    assert main(["truth", "--quick", "--out", str(out)]) == 0  # resumes: nothing to run again
    assert (out / "runs.csv").read_bytes() == before
    assert len(json.loads((out / "timings.json").read_text())) == 2


def test_truth_sweep_end_to_end(tmp_path: Path) -> None:
    """`sweep.py --corpus rendered:N --objective truth`: three trials minimise the distance to the targets."""
    import subprocess
    import sys

    import pandas as pd

    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "sweep.py", "--config", "configs/smoke.yaml", "--corpus", "rendered:2",
                           "--objective", "truth", "--trials", "3", "--workers", "1", "--results", str(tmp_path),
                           "--study", "truth", "--quiet"], cwd=repo, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    trials = pd.read_csv(tmp_path / "truth" / "trials.csv")
    assert len(trials) == 3 and (trials["state"] == "COMPLETE").all()
    assert np.allclose(trials["objective_truth_score"], trials["truth_score"])
    pairs = pd.read_csv(tmp_path / "truth" / "pairs.csv")
    assert pairs["target"].notna().all() and pairs["truth_score"].between(-1, 10).all()
    results = (tmp_path / "truth" / "results.md").read_text()
    assert "truth_score" in results
    baselines = pd.read_csv(tmp_path / "truth" / "baselines.csv")  # what a trial has to beat, beside it
    assert {"content copy", "style copy", "magnitude mix", "oracle"} <= set(baselines["baseline"])
    assert baselines.set_index("baseline").loc["oracle", "truth_score"] < 0  # the right answer beats the frontier
    assert (baselines.set_index("baseline").drop(index="oracle")["truth_score"] > 0).all()  # no trivial output does
    best = trials["truth_score"].min()
    floor = baselines[baselines["baseline"] != "oracle"].sort_values("truth_score").iloc[0]
    verdict = "beats" if best < floor["truth_score"] else "does not beat"
    assert "## Trivial baselines" in results and f"{verdict} the best trivial baseline, {floor['baseline']}" in results


def test_truth_objective_needs_targets(tmp_path: Path) -> None:
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "sweep.py", "--config", "configs/smoke.yaml", "--objective", "truth",
                           "--results", str(tmp_path)], cwd=repo, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "needs a target" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "smoke" / "study.journal").exists()


def test_envelope_motion_features_ignore_a_fixed_eq_and_see_attack_against_sustain() -> None:
    """The timbre features' envelope part (truth/timbre.py) is the instrument's, not the EQ's."""
    from musicstyle.truth.timbre import BAND_GROUPS, MEL_BANDS, MFCCS, timbre_features

    rate = 22050
    t = np.arange(int(rate * 0.5)) / rate

    def tone(f0: float) -> np.ndarray:  # 30 harmonics at 1/k: every band has partials
        return sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 31) if k * f0 < rate / 2)

    notes = (220, 330, 262, 392, 294, 247)
    plucked = np.concatenate([tone(f) * np.exp(-8 * t) for f in notes])
    bowed = np.concatenate([tone(f) * np.minimum(1, t / 0.15) for f in notes])
    spectrum = np.fft.rfft(plucked)
    tilt = 10 ** (3 * np.log2(np.maximum(np.fft.rfftfreq(len(plucked), 1 / rate), 50.0) / 1000.0) / 20)
    tilted = np.fft.irfft(spectrum * tilt, len(plucked))
    motion = slice(2 * MEL_BANDS + 2 * MFCCS, 2 * MEL_BANDS + 2 * MFCCS + 3 * BAND_GROUPS)
    a, b, c = (timbre_features(y)[motion] for y in (plucked, tilted, bowed))
    assert np.abs(a - b).mean() < 0.25 * np.abs(a - c).mean()


def test_soft_labels_make_a_mixture_neither_instrument() -> None:
    """fit's sample weights (truth/timbre_train.py): a point halfway between two classes, labelled half and
    half, gets about equal probabilities; mixture_share_error reads them back."""
    from musicstyle.truth.timbre_train import fit, mixture_share_error

    rng = np.random.default_rng(0)
    a, b, c = (rng.normal(centre, 0.3, (40, 2)) for centre in ([-2, 0], [2, 0], [0, 3]))
    mixed = rng.normal([0, 0], 0.3, (20, 2))
    features = np.concatenate([a, b, c, np.repeat(mixed, 2, axis=0)])
    programs = np.array([0] * 40 + [40] * 40 + [73] * 40 + [0, 40] * 20)
    weights = np.array([1.0] * 120 + [0.5, 0.5] * 20)
    data = {"features": features, "program": programs, "weight": weights,
            "kind": np.array(["augmented"] * 120 + ["mixture"] * 40)}
    soft = fit(features, programs, 1.0, weights)
    hard = fit(features[:120], programs[:120], 1.0)
    everything = np.ones(len(programs), bool)
    assert mixture_share_error(soft, data, everything) < 0.15
    assert mixture_share_error(soft, data, everything) < mixture_share_error(hard, data, everything)
    assert np.exp(soft.log_probabilities(a[0]))[0] > 0.9  # one-instrument examples stay sure
