"""Corpus of song pairs for a sweep: built-in, a YAML file of paths, two folders, or the paper's songs.

Every pair names a content file, a style file and the clip read from both (offset, seconds).
`preflight` checks every file before any trial: it exists, its header decodes, the offset is inside.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..engine.audio import duration_seconds
from ..errors import AudioError, ConfigError
from ..sweep.config import SweepSettings
from ..util.names import check_name, safe_name
from ..util.values import number, reject_unknown
from .paper_songs import paper_song_paths, paper_songs_dir, songs_needed

PACKAGE_ROOT = "immich-memories-music"  # `root:` value naming the built-in package's tracks folder
MOODS = ("calm", "energetic", "happy", "nostalgic", "tender")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3", ".m4a", ".aiff", ".aif")
PAIR_KEYS = ("name", "content", "style", "offset_seconds", "clip_seconds")
CORPUS_KEYS = ("root", "offset_seconds", "clip_seconds", "pairs")


@dataclass(frozen=True)
class SongPair:
    """One content/style pair; offset and clip length None = the sweep's fixed settings."""

    name: str
    content: Path
    style: Path
    offset_seconds: float | None = None
    clip_seconds: float | None = None
    target: Path | None = None  # the right answer (content's piece on the style's instrument), when known
    score: Path | None = None  # the content's notes as MIDI (the truth's notes reference), when known

    def to_dict(self) -> dict[str, Any]:
        """As recorded in a study; `target` only when set, so studies without one keep their record."""
        data = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}
        for key in ("target", "score"):
            if data[key] is None:
                data.pop(key)
        return data


def package_tracks_dir() -> Path:
    """The tracks folder of the installed `immich-memories-music` package (resolved at run time)."""
    try:
        import immich_memories_music
    except ImportError:
        raise ConfigError("the built-in corpus needs the package immich-memories-music "
                          "(pip install immich-memories-music), or give --corpus FILE") from None
    return Path(immich_memories_music.tracks_dir())


def _suffix_key(path: Path, kind: str) -> str:
    """'happy_acoustic_s411' -> 's411': the part shared by a track's acoustic and electronic versions."""
    return path.stem.split(f"_{kind}_", 1)[-1]


def builtin_pairs(content_kind: str = "acoustic", style_kind: str = "electronic") -> list[SongPair]:
    """One pair per mood from immich-memories-music: an acoustic track as content, the electronic one
    with the same suffix as style (else the first electronic track of the mood)."""
    root = package_tracks_dir()
    pairs = []
    for mood in MOODS:
        contents = sorted((root / mood).glob(f"{mood}_{content_kind}_*"))
        styles = sorted((root / mood).glob(f"{mood}_{style_kind}_*"))
        if not contents or not styles:
            continue
        by_suffix = {_suffix_key(s, style_kind): s for s in styles}
        match = next(((c, by_suffix[_suffix_key(c, content_kind)]) for c in contents
                      if _suffix_key(c, content_kind) in by_suffix), (contents[0], styles[0]))
        pairs.append(SongPair(mood, match[0], match[1]))
    if not pairs:
        raise ConfigError(f"the built-in corpus found no tracks under {root}")
    return pairs


def paper_pairs(paper_dir: str | Path | None) -> list[SongPair]:
    """The base paper's two songs: imperial.mp3 (content) and usa.mp3 (style) in `paper_dir`."""
    paper_dir = paper_songs_dir(paper_dir)
    if paper_dir is None:
        raise songs_needed("--corpus paper")
    content, style = paper_song_paths(paper_dir)
    return [SongPair("paper", content, style)]


def rendered_pairs(folder: str | Path | None = None, pairs: int | None = None,
                   held_out: bool | None = False) -> list[SongPair]:
    """The rendered corpus with targets (musicstyle.data.rendered): rendered into `folder` (default: the cache
    under $MUSICSTYLE_CACHE_DIR or ~/.cache/musicstyle) unless already there.

    held_out: False (default) the tuning pairs 'r..', True the held-out pairs 'h..', None every pair.
    """
    from .rendered import load_manifest, render_corpus

    manifest_path = render_corpus(folder) if pairs is None else render_corpus(folder, pairs=pairs)
    root = manifest_path.parent
    # rendered pieces start on their first note (no fade-in to skip): the clip starts at 0 s in any sweep
    return [SongPair(p["name"], root / p["content"], root / p["style"], offset_seconds=0.0, target=root / p["target"],
                     score=root / p["score"] if p.get("score") else None)
            for p in load_manifest(root)["pairs"] if held_out is None or bool(p.get("held_out")) == held_out]


def rendered_subset(spec: str) -> list[SongPair]:
    """'rendered' (every tuning pair of the rendered corpus) or 'rendered:N' (its first N, for a cheaper sweep).

    The held-out pairs are never among them: they are kept for the verdict (musicstyle truth verdict)."""
    pairs = rendered_pairs()
    if spec == "rendered":
        return pairs
    count = spec.split(":", 1)[1]
    if not count.isdigit() or not 1 <= int(count) <= len(pairs):
        raise ConfigError(f"corpus {spec!r}: give rendered:N with N from 1 to {len(pairs)}")
    return pairs[:int(count)]


def _seconds(value: Any, where: str) -> float | None:
    """Seconds from the corpus file: None (the sweep's setting) or a finite number >= 0."""
    if value is None:
        return None
    seconds = number(value, where)
    if seconds < 0:
        raise ConfigError(f"{where} must be >= 0, got {value!r}")
    return seconds


def _root(value: Any, base: Path) -> Path:
    if value is None:
        return base
    if str(value) == PACKAGE_ROOT:
        return package_tracks_dir()
    root = Path(str(value)).expanduser()
    return root if root.is_absolute() else base / root


def pairs_from_mapping(data: Any, source: str, base: Path) -> list[SongPair]:
    """Pairs from a corpus mapping (`root`, `offset_seconds`, `clip_seconds`, `pairs: [...]`).

    Relative paths are taken from `root`, itself relative to `base` (the YAML file's folder).
    """
    if isinstance(data, list):
        data = {"pairs": data}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a corpus must be a mapping with a 'pairs' list")
    reject_unknown(data, CORPUS_KEYS, "corpus key '{}'", source)
    root = _root(data.get("root"), base)
    offset = _seconds(data.get("offset_seconds"), f"{source}: offset_seconds")
    clip = _seconds(data.get("clip_seconds"), f"{source}: clip_seconds")
    entries = data.get("pairs") or []
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{source}: the corpus has no pairs (give a non-empty 'pairs' list)")
    pairs = []
    for index, entry in enumerate(entries):
        where = f"{source}: pairs[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a mapping with 'content' and 'style'")
        reject_unknown(entry, PAIR_KEYS, "key '{}'", where)
        for key in ("content", "style"):
            if not entry.get(key):
                raise ConfigError(f"{where}: missing '{key}'")
        content, style = (root / Path(str(entry[k])).expanduser() for k in ("content", "style"))
        pair_clip = _seconds(entry.get("clip_seconds", clip), f"{where}: clip_seconds")
        if pair_clip == 0:
            raise ConfigError(f"{where}: clip_seconds must be positive")
        name = (check_name(str(entry["name"]), f"{where}: name") if entry.get("name") is not None
                else safe_name(f"{index}-{content.stem}", f"pair{index}"))
        pairs.append(SongPair(name, content, style,
                              _seconds(entry.get("offset_seconds", offset), f"{where}: offset_seconds"), pair_clip))
    names = [p.name for p in pairs]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: pair names must be unique, got {names}")
    return pairs


def pairs_from_yaml(path: str | Path) -> list[SongPair]:
    """Pairs from a corpus YAML file (see configs/corpus/example.yaml)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"corpus file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    return pairs_from_mapping(data, str(path), path.parent)


def _audio_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise ConfigError(f"not a folder: {folder}")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def pairs_from_folders(content_dir: str | Path, style_dir: str | Path) -> list[SongPair]:
    """Pair the audio files of two folders: by identical file stem when every content file has a
    style file of the same stem, otherwise by sorted order (then both folders must hold as many)."""
    contents, styles = _audio_files(Path(content_dir)), _audio_files(Path(style_dir))
    if not contents or not styles:
        empty = content_dir if not contents else style_dir
        raise ConfigError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in {empty}")
    by_stem = {s.stem: s for s in styles}
    if all(c.stem in by_stem for c in contents):
        matched = [(c, by_stem[c.stem]) for c in contents]
    elif len(contents) == len(styles):
        matched = list(zip(contents, styles))
    else:
        raise ConfigError(f"cannot pair {len(contents)} files in {content_dir} with {len(styles)} in {style_dir}: "
                          "give folders with matching file names or as many files each")
    return [SongPair(safe_name(c.stem, f"pair{i}"), c, s) for i, (c, s) in enumerate(matched)]


def resolve_corpus(
    corpus: Any = None, content_dir: str | None = None, style_dir: str | None = None,
    paper_dir: str | None = None, source: str = "config",
) -> list[SongPair]:
    """The sweep's pairs: `corpus` is 'builtin' (default), 'builtin-reverse', 'paper', 'rendered' (pairs
    with targets, rendered into the cache on first use), a YAML path or a mapping (the config's `corpus`
    section); two folders win over it when given."""
    if content_dir or style_dir:
        if not (content_dir and style_dir):
            raise ConfigError("--content-dir and --style-dir go together")
        return pairs_from_folders(content_dir, style_dir)
    if corpus is None or corpus == "builtin":
        return builtin_pairs()
    if corpus == "builtin-reverse":
        return builtin_pairs("electronic", "acoustic")
    if corpus == "paper":
        return paper_pairs(paper_dir)
    if isinstance(corpus, str) and (corpus == "rendered" or corpus.startswith("rendered:")):
        return rendered_subset(corpus)
    if isinstance(corpus, (dict, list)):
        return pairs_from_mapping(corpus, f"{source}: corpus", Path(source).parent)
    return pairs_from_yaml(corpus)


def resolve_pairs(settings: SweepSettings, corpus: str | None = None, content_dir: str | None = None,
                  style_dir: str | None = None, paper_dir: str | None = None,
                  quarantined: Collection[str] = ()) -> list[SongPair]:
    """The sweep's corpus from the command line or the config (a path there is relative to the config
    file), checked before any trial (`preflight`), except the pairs a resumed study has `quarantined`."""
    spec = corpus if corpus is not None else settings.corpus
    named = ("builtin", "builtin-reverse", "paper", "rendered")
    if isinstance(spec, str) and spec.split(":")[0] not in named and not Path(spec).exists():
        beside = settings.base_dir / spec
        spec = str(beside) if beside.exists() else spec
    pairs = resolve_corpus(spec, content_dir, style_dir, paper_dir, source=str(settings.base_dir / "config"))
    preflight([p for p in pairs if p.name not in quarantined], settings.base_config().offset_seconds)
    return pairs


def preflight(pairs: list[SongPair], default_offset: float) -> list[float]:
    """Check every file before any trial: exists, decodes its header, the clip's offset is inside.

    Returns the shortest of each pair's two durations (s). Raises AudioError naming the file.
    """
    if not pairs:
        raise ConfigError("the corpus is empty")
    shortest = []
    for pair in pairs:
        offset = default_offset if pair.offset_seconds is None else pair.offset_seconds
        lengths = []
        for role, path in (("content", pair.content), ("style", pair.style)):
            try:
                length = duration_seconds(path)
            except AudioError as err:
                raise AudioError(f"pair '{pair.name}' {role}: {err}") from None
            if offset >= length:
                raise AudioError(f"pair '{pair.name}' {role}: offset {offset:g} s is past the end of {path} "
                                 f"({length:.2f} s long)")
            lengths.append(length)
        shortest.append(min(lengths))
    return shortest
