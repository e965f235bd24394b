"""Fuzzed input (Hypothesis): generated sweep configs, corpus files and broken audio of every format.

Each case must either be accepted or raise the one-line MusicStyleError that `run_cli` prints with
exit status 2; any other exception is a bug. The parsing functions are called directly (1000+
cases in seconds); a few cases go through `sweep.py` to check the exit status, the single line and
that no results folder is left behind. Generation is derandomized so CI sees the same cases.
"""

from __future__ import annotations

import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import REPO, make_corpus, tiny_config
from musicstyle.config import FIELDS
from musicstyle.data.corpus import CORPUS_KEYS, PAIR_KEYS, pairs_from_mapping, preflight
from musicstyle.engine.audio import duration_seconds, load_clip
from musicstyle.errors import MusicStyleError
from musicstyle.sweep.config import DIMENSION_KEYS, SECTIONS, STUDY_DEFAULTS, load_settings, parse_settings

FUZZ = settings(derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# scalars a hand-written YAML file may hold: wrong types, huge and negative numbers, NaN, unicode
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-10**30, 10**30), st.sampled_from([0, 1, -1, 2, 10**12, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([float("nan"), float("inf"), -0.0, 1e-300]),
    st.text(max_size=12), st.sampled_from(["many", "1e-3", "nan", "relu", "adam", "true", "none", "", "ü∂漢字"]))
KEYS = st.text(max_size=6) | st.integers(-2, 2)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
                      max_leaves=8)


def keyed(known: tuple[str, ...] | list[str], values=VALUES) -> st.SearchStrategy:
    """Mappings over mostly known keys plus the odd unknown one, each key maybe missing."""
    keys = st.one_of(st.sampled_from(list(known)), st.text(max_size=8), st.integers(-2, 2), st.none())
    return st.dictionaries(keys, values, max_size=6)


DIMENSIONS = st.one_of(
    keyed(DIMENSION_KEYS),
    st.fixed_dictionaries({"low": SCALARS, "high": SCALARS}, optional={"log": SCALARS, "step": SCALARS}),
    st.fixed_dictionaries({"choices": st.lists(SCALARS, max_size=4)}, optional={"when": VALUES}),
    VALUES)
CONFIGS = st.one_of(
    st.fixed_dictionaries({}, optional={
        "study": st.one_of(keyed(tuple(STUDY_DEFAULTS)), VALUES),
        "fixed": st.one_of(keyed(tuple(FIELDS), SCALARS), VALUES),
        "search": st.one_of(st.dictionaries(st.one_of(st.sampled_from(list(FIELDS)), st.text(max_size=6)),
                                            DIMENSIONS, max_size=4), VALUES),
        "corpus": VALUES}),
    keyed(SECTIONS),
    VALUES)


def accepted_or_one_line(call, *args):
    """The call's result, or None after checking it raised a one-line MusicStyleError."""
    try:
        return call(*args)
    except MusicStyleError as err:
        text = str(err)
        assert text and "\n" not in text, repr(text)
        return None


@settings(FUZZ, max_examples=450)
@given(CONFIGS)
def test_generated_sweep_configs_are_accepted_or_one_line(data):
    parsed = accepted_or_one_line(parse_settings, data, "fuzz.yaml")
    if parsed is not None:  # an accepted config builds its run settings, and every searched value is finite
        parsed.base_config()
        assert 1 <= parsed.study["trials"] and math.isfinite(parsed.study["stale_after_seconds"])
        for dimension in parsed.search.values():
            if dimension.choices is None:
                assert math.isfinite(dimension.low) and math.isfinite(dimension.high) and dimension.low < dimension.high


BAD_STUDY_VALUES = st.sampled_from(["many", None, -3, 0, 1.5, float("nan"), float("inf"), [], {}, "ü", True, 10**400])


@settings(FUZZ, max_examples=120)
@given(key=st.sampled_from(["trials", "seed", "startup_trials", "n_startup_steps"]), bad=BAD_STUDY_VALUES,
       good=st.integers(1, 50))
def test_a_bad_file_value_is_rejected_whatever_overrides_it(tmp_path_factory, key, bad, good):
    """`study: {trials: many}` with `--trials 1`: the override does not hide the file's bad value."""
    if key != "trials" and isinstance(bad, int) and not isinstance(bad, bool) and bad >= 0:
        return  # a valid value for this key
    folder = tmp_path_factory.mktemp("cfg")
    path = folder / "bad.yaml"
    path.write_text(yaml.safe_dump({"study": {key: bad}}) if not isinstance(bad, float) or math.isfinite(bad)
                    else f"study: {{{key}: {'.nan' if math.isnan(bad) else '.inf'}}}\n")
    with pytest.raises(MusicStyleError) as err:
        load_settings(path, [f"study.{key}={good}"])
    assert f"study.{key}" in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


@settings(FUZZ, max_examples=120)
@given(st.text(max_size=200))
def test_generated_yaml_text_is_accepted_or_one_line(text):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.yaml"
        path.write_text(text, encoding="utf-8")
        accepted_or_one_line(load_settings, path)


@pytest.fixture(scope="module")
def real_wav() -> str:
    folder = Path(tempfile.mkdtemp(prefix="fuzz-audio-"))
    path = folder / "ok.wav"
    sf.write(path, (0.2 * np.sin(np.arange(4000) / 5)).astype(np.float32), 8000)
    return str(path)


PATHS = st.one_of(st.text(max_size=20), st.sampled_from(["../../etc/passwd", "/nonexistent/a.wav", "~/x.flac", "",
                                                          ".", "/", "漢字.mp3", "a\x00b.wav", "REAL"]), SCALARS)
PAIRS = st.one_of(st.fixed_dictionaries({"content": PATHS, "style": PATHS},
                                        optional={"name": SCALARS, "offset_seconds": SCALARS,
                                                  "clip_seconds": SCALARS}),
                  keyed(PAIR_KEYS), VALUES)
CORPORA = st.one_of(st.fixed_dictionaries({"pairs": st.one_of(st.lists(PAIRS, max_size=3), VALUES)},
                                          optional={"root": PATHS, "offset_seconds": SCALARS,
                                                    "clip_seconds": SCALARS}),
                    keyed(CORPUS_KEYS), st.lists(PAIRS, max_size=3), VALUES)


def _real(value, wav: str):
    if value == "REAL":
        return wav
    if isinstance(value, dict):
        return {k: _real(v, wav) for k, v in value.items()}
    if isinstance(value, list):
        return [_real(v, wav) for v in value]
    return value


@settings(FUZZ, max_examples=350)
@given(CORPORA, st.floats(0, 5) | st.just(float("nan")))
def test_generated_corpus_files_are_accepted_or_one_line(real_wav, data, offset):
    data = _real(data, real_wav)
    pairs = accepted_or_one_line(pairs_from_mapping, data, "corpus.yaml", Path(tempfile.gettempdir()))
    if pairs is not None:
        assert pairs and all(p.name for p in pairs)
        if math.isfinite(offset):
            accepted_or_one_line(preflight, pairs, offset)


def _valid_clips() -> dict[str, bytes]:
    """A short tone in each format the sweep reads with libsndfile: wav, flac, ogg (vorbis), mp3."""
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(3200) / 8000)).astype(np.float32)
    clips = {}
    with tempfile.TemporaryDirectory() as folder:
        for suffix in ("wav", "flac", "ogg", "mp3"):
            path = Path(folder) / f"tone.{suffix}"
            sf.write(path, tone, 8000)
            clips[suffix] = path.read_bytes()
    return clips


CLIPS = _valid_clips()
DAMAGE = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("flip"), st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=1, max_size=8)),
    st.tuples(st.just("splice"), st.floats(0, 1), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("header"), st.binary(max_size=48)))


def damaged(data: bytes, damage: tuple) -> bytes:
    kind = damage[0]
    if kind == "truncate":
        return data[:int(damage[1] * len(data))]
    if kind == "flip":
        out = bytearray(data)
        for where, byte in damage[1]:
            out[min(int(where * len(out)), len(out) - 1)] = byte
        return bytes(out)
    if kind == "splice":
        at = int(damage[1] * len(data))
        return data[:at] + damage[2] + data[at + len(damage[2]):]
    return damage[1] + data[len(damage[1]):]


@pytest.mark.parametrize("suffix", list(CLIPS))
@settings(FUZZ, max_examples=60)
@given(damage=DAMAGE)
def test_truncated_or_corrupt_audio_is_read_or_one_line(suffix, damage):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"broken.{suffix}"
        path.write_bytes(damaged(CLIPS[suffix], damage))
        length = accepted_or_one_line(duration_seconds, path)
        assert length is None or length >= 0
        clip = accepted_or_one_line(load_clip, path, 8000, 0.0, 0.2)
        if clip is not None:
            assert clip.ndim == 1 and clip.size and np.isfinite(clip).all()


def _sweep(args: list[str], results: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "sweep.py", "--results", str(results), "--quiet", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


def test_bad_configs_and_corpora_through_the_command_line(tmp_path):
    """Through `sweep.py`: exit 2, one line, no traceback and no results folder left behind."""
    corpus = make_corpus(tmp_path)
    config = tiny_config(tmp_path, corpus)
    many = tmp_path / "many.yaml"
    many.write_text(config.read_text().replace("trials: 6", "trials: many"))
    nan = tmp_path / "nan.yaml"
    nan.write_text(config.read_text().replace("iterations: 5", "iterations: .nan"))
    missing = tmp_path / "missing.yaml"
    missing.write_text("pairs:\n  - {content: /nonexistent/ü.wav, style: nowhere.flac}\n")
    broken = tmp_path / "broken.mp3"
    broken.write_bytes(CLIPS["mp3"][:300])
    corrupt = tmp_path / "corrupt.yaml"
    corrupt.write_text(f"pairs:\n  - {{content: {broken}, style: {broken}}}\n")
    cases = [(["--config", str(many), "--trials", "1"], "study.trials"),
             (["--config", str(nan)], "iterations"),
             (["--config", str(config), "--corpus", str(missing)], "no such file"),
             (["--config", str(config), "--corpus", str(corrupt)], str(broken))]
    for args, message in cases:
        results = tmp_path / "results"
        done = _sweep(args, results)
        assert done.returncode == 2 and "Traceback" not in done.stderr, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, done.stderr)
        assert not results.exists() or not any(results.iterdir()), (args, list(results.rglob("*")))
