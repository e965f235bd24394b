"""Corpus: built-in pairs, YAML files, two folders, the paper's songs, and the pre-flight check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicstyle.data.corpus import (
    builtin_pairs,
    pairs_from_folders,
    pairs_from_yaml,
    preflight,
    resolve_corpus,
)
from musicstyle.errors import AudioError, ConfigError


def write_tone(path: Path, freq: float, seconds: float = 2.0, rate: int = 8000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate)
    return path


def test_builtin_corpus_has_one_acoustic_to_electronic_pair_per_mood():
    pairs = builtin_pairs()
    assert [p.name for p in pairs] == ["calm", "energetic", "happy", "nostalgic", "tender"]
    for pair in pairs:
        assert "_acoustic_" in pair.content.name and "_electronic_" in pair.style.name
        assert pair.content.parent.name == pair.name and pair.content.exists() and pair.style.exists()
    reverse = resolve_corpus("builtin-reverse")
    assert all("_electronic_" in p.content.name for p in reverse)


def test_yaml_corpus_resolves_paths_from_its_root(tmp_path):
    songs = tmp_path / "songs"
    songs.mkdir()
    write_tone(songs / "a.wav", 220)
    write_tone(songs / "b.wav", 440)
    corpus = tmp_path / "corpus.yaml"
    corpus.write_text("root: songs\nclip_seconds: 1\npairs:\n  - {content: a.wav, style: b.wav, offset_seconds: 0.5}\n"
                      "  - {name: back, content: b.wav, style: a.wav}\n")
    pairs = pairs_from_yaml(corpus)
    assert pairs[0].content == songs / "a.wav" and pairs[0].offset_seconds == 0.5 and pairs[0].clip_seconds == 1.0
    assert pairs[1].name == "back" and pairs[1].offset_seconds is None
    assert preflight(pairs, 0.0) == [2.0, 2.0]


@pytest.mark.parametrize("text, message", [
    ("pairs: []\n", "no pairs"),
    ("pairs:\n  - {content: a.wav}\n", "missing 'style'"),
    ("pairs:\n  - {content: a.wav, style: b.wav, offest_seconds: 1}\n", "unknown key 'offest_seconds'"),
    ("songs: []\n", "unknown corpus key 'songs'"),
    ("clip_seconds: -1\npairs:\n  - {content: a.wav, style: b.wav}\n", "clip_seconds"),
])
def test_bad_corpus_files_name_the_file_and_key(tmp_path, text, message):
    corpus = tmp_path / "corpus.yaml"
    corpus.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        pairs_from_yaml(corpus)
    assert str(corpus) in str(err.value) and "\n" not in str(err.value)


def test_preflight_names_missing_non_audio_and_too_short_files(tmp_path):
    good = write_tone(tmp_path / "good.wav", 300)
    text = tmp_path / "notes.wav"
    text.write_text("not audio at all")
    missing = tmp_path / "missing.wav"
    for bad, message in ((missing, "no such file"), (text, "not a readable audio file")):
        with pytest.raises(AudioError, match=message) as err:
            preflight(resolve_corpus({"pairs": [{"content": str(good), "style": str(bad)}]}), 0.0)
        assert str(bad) in str(err.value) and "style" in str(err.value)
    with pytest.raises(AudioError, match="past the end"):
        preflight(resolve_corpus({"pairs": [{"content": str(good), "style": str(good)}]}), 5.0)
    with pytest.raises(ConfigError, match="empty"):
        preflight([], 0.0)


def test_folders_pair_by_matching_names_else_sorted_order(tmp_path):
    content, style = tmp_path / "content", tmp_path / "style"
    content.mkdir()
    style.mkdir()
    for name, freq in (("b", 200), ("a", 300)):
        write_tone(content / f"{name}.wav", freq)
        write_tone(style / f"{name}.flac", freq * 2)
    pairs = pairs_from_folders(content, style)
    assert [(p.content.stem, p.style.stem) for p in pairs] == [("a", "a"), ("b", "b")]
    (style / "a.flac").rename(style / "z.flac")
    pairs = pairs_from_folders(content, style)
    assert [(p.content.stem, p.style.stem) for p in pairs] == [("a", "b"), ("b", "z")]
    write_tone(content / "c.wav", 500)
    with pytest.raises(ConfigError, match="cannot pair 3 files"):
        pairs_from_folders(content, style)


def test_paper_corpus_needs_the_songs(tmp_path, monkeypatch):
    monkeypatch.delenv("MUSICSTYLE_PAPER_SONGS", raising=False)
    with pytest.raises(ConfigError, match="--paper-dir DIR or .MUSICSTYLE_PAPER_SONGS"):
        resolve_corpus("paper")
    monkeypatch.setenv("MUSICSTYLE_PAPER_SONGS", str(tmp_path / "songs"))
    with pytest.raises(AudioError, match="songs/imperial.mp3"):
        resolve_corpus("paper")
    with pytest.raises(AudioError, match="imperial.mp3"):
        resolve_corpus("paper", paper_dir=str(tmp_path))
