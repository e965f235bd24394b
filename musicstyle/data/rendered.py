"""A rendered corpus whose right answers are known: the same score played by two instruments.

Each pair is content = piece P on instrument A, style = piece Q on instrument B (Q != P, B != A), and
target = P on B, the answer a perfect timbre transfer would give; `other` = a third piece R on B (the
right instrument with the wrong notes, a control for the truth measures' sanity suite), and the content
piece's score as a MIDI file (what the notes measure compares against). Pieces are public-domain Bach
chorales shipped with music21 (all four voices, at one fixed tempo); instruments are General MIDI
programs of pretty_midi's SoundFont (TimGM6mb.sf2, GPL-2), played by FluidSynth (libfluidsynth3, through
pyfluidsynth) with reverb and chorus off. The pairs are drawn from `seed`; rendering the same seed
gives the same WAV bytes, and `render_corpus` skips files already rendered.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError

# Chorales from music21's corpus (public domain), named by their corpus path.
PIECES = ("bach/bwv66.6", "bach/bwv269", "bach/bwv347", "bach/bwv153.1", "bach/bwv86.6", "bach/bwv267",
          "bach/bwv281", "bach/bwv295", "bach/bwv371", "bach/bwv40.8")
# General MIDI programs (0-based), one or two per family.
INSTRUMENTS = {
    0: ("Acoustic Grand Piano", "keyboard"),
    40: ("Violin", "bowed strings"),
    56: ("Trumpet", "brass"),
    71: ("Clarinet", "reed"),
    73: ("Flute", "flute"),
    24: ("Acoustic Guitar (nylon)", "plucked"),
    19: ("Church Organ", "organ"),
}
SAMPLE_RATE_HZ = 22050
TEMPO_BPM = 100.0  # every piece at one tempo: a quarter note lasts 0.6 s
RENDER_SECONDS = 12.0  # each rendering's length: >= 10.5 s, so a 430-frame clip (the paper's 10 s) fits whole
PAIRS_PER_TARGET = 7  # pairs per target instrument (the style's program): 7 programs x 7 = 49 pairs
HELD_OUT_PER_TARGET = 2  # of those, held out of every tuning step (sweeps, measure design): 14 pairs 'h..'
PAIRS = PAIRS_PER_TARGET * len(INSTRUMENTS)
SEED = 0
VELOCITY = 90
LICENCES = {
    "scores": "Bach chorales from the music21 corpus: public domain (music21 itself is BSD-3-Clause)",
    "soundfont": "TimGM6mb.sf2 shipped with pretty_midi: GPL-2.0 (Tim Brechbill)",
    "synthesizer": "FluidSynth (libfluidsynth3, LGPL-2.1) through pyfluidsynth (LGPL-2.1)",
}


@dataclass(frozen=True)
class RenderedPair:
    """One pair's renderings (file names inside the corpus folder) and what they hold."""

    name: str
    content_piece: str
    style_piece: str
    content_program: int
    style_program: int
    other_piece: str = ""  # a third piece, played on the style's program: right instrument, wrong notes
    held_out: bool = False  # kept out of every tuning step

    def files(self) -> dict[str, str]:
        names = {"content": render_name(self.content_piece, self.content_program),
                 "style": render_name(self.style_piece, self.style_program),
                 "target": render_name(self.content_piece, self.style_program),
                 "score": score_name(self.content_piece)}
        if self.other_piece:
            names["other"] = render_name(self.other_piece, self.style_program)
        return names


def render_name(piece: str, program: int) -> str:
    return f"{piece.replace('/', '-').replace('.', '_')}__gm{program:03d}.wav"


def score_name(piece: str) -> str:
    """The MIDI file of a piece's first RENDER_SECONDS, as rendered (the notes measure's reference)."""
    return f"{piece.replace('/', '-').replace('.', '_')}.mid"


def default_cache_dir() -> Path:
    """$MUSICSTYLE_CACHE_DIR, else ~/.cache/musicstyle."""
    root = os.environ.get("MUSICSTYLE_CACHE_DIR")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "musicstyle"


def plan_pairs(seed: int = SEED, pairs: int = PAIRS, pieces: tuple[str, ...] = PIECES,
               programs: tuple[int, ...] = tuple(INSTRUMENTS)) -> list[RenderedPair]:
    """The first `pairs` of a plan stratified by target instrument, drawn from `seed`.

    Every program is the style (and so the target's instrument) of PAIRS_PER_TARGET pairs, whose content
    programs cycle through the other programs; pieces P != Q != R are drawn at random for each. The first
    HELD_OUT_PER_TARGET pairs of each target program are held out ('h00'...); the rest ('r00'...) come
    first, ordered so that any prefix spans the target instruments evenly.
    """
    if len(pieces) < 3 or len(programs) < 2:
        raise ConfigError("a rendered corpus needs at least three pieces and two instruments")
    rng = np.random.default_rng(seed)
    seen: set[tuple] = set()
    by_target: list[list[tuple]] = []
    for b in programs:
        others = [a for a in programs if a != b]
        contents = [others[int(i)] for i in rng.permutation(len(others))]
        drawn = []
        for k in range(PAIRS_PER_TARGET):
            a = contents[k % len(contents)]
            while True:
                p, q, r = (pieces[int(i)] for i in rng.choice(len(pieces), size=3, replace=False))
                if (p, q, a, b) not in seen:
                    break
            seen.add((p, q, a, b))
            drawn.append((p, q, a, b, r))
        by_target.append(drawn)
    held = [d for drawn in by_target for d in drawn[:HELD_OUT_PER_TARGET]]
    tuning = [drawn[k] for k in range(HELD_OUT_PER_TARGET, PAIRS_PER_TARGET) for drawn in by_target]
    planned = [RenderedPair(f"r{i:02d}", p, q, a, b, r) for i, (p, q, a, b, r) in enumerate(tuning)]
    planned += [RenderedPair(f"h{i:02d}", p, q, a, b, r, held_out=True) for i, (p, q, a, b, r) in enumerate(held)]
    return planned[:pairs]


def soundfont_path() -> Path:
    """pretty_midi's bundled General MIDI SoundFont."""
    try:
        import pretty_midi
    except ImportError:
        raise ConfigError("rendering needs the Python package pretty_midi (pip install -r requirements.txt)") from None
    path = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
    if not path.is_file():
        raise ConfigError(f"pretty_midi's SoundFont is missing: {path}")
    return path


def _fluidsynth() -> Any:
    """The pyfluidsynth module; a one-line ConfigError naming the Debian package when libfluidsynth is absent."""
    try:
        import fluidsynth
    except ImportError as err:
        if "fluidsynth" in str(err).lower() and "no module" in str(err).lower():
            raise ConfigError("rendering needs the Python package pyfluidsynth "
                              "(pip install -r requirements.txt)") from None
        raise ConfigError("rendering needs the FluidSynth library: apt-get install libfluidsynth3") from None
    except OSError:
        raise ConfigError("rendering needs the FluidSynth library: apt-get install libfluidsynth3") from None
    if not hasattr(fluidsynth, "Synth"):
        raise ConfigError("rendering needs the FluidSynth library: apt-get install libfluidsynth3")
    return fluidsynth


def piece_notes(piece: str, seconds: float = RENDER_SECONDS) -> list[tuple[int, float, float]]:
    """(MIDI pitch, start s, end s) of every note of a music21 corpus piece starting before `seconds`,
    all parts together, at TEMPO_BPM (ties merged by music21's stripTies)."""
    try:
        from music21 import corpus
    except ImportError:
        raise ConfigError("rendering needs the Python package music21 (pip install -r requirements.txt)") from None
    score = corpus.parse(piece).stripTies()
    quarter = 60.0 / TEMPO_BPM
    notes = []
    for element in score.flatten().notes:
        start = float(element.offset) * quarter
        if start >= seconds:
            continue
        end = min(start + float(element.quarterLength) * quarter, seconds)
        for pitch in element.pitches:
            notes.append((int(pitch.midi), start, end))
    if not notes:
        raise ConfigError(f"piece {piece} has no notes in its first {seconds:g} s")
    return sorted(notes, key=lambda n: (n[1], n[0], n[2]))


def render_notes(notes: list[tuple[int, float, float]], program: int, seconds: float = RENDER_SECONDS,
                 sample_rate_hz: int = SAMPLE_RATE_HZ, soundfont: Path | None = None) -> np.ndarray:
    """Play `notes` on General MIDI `program` with FluidSynth: -> (round(seconds * rate),) float32, peak 0.5.

    Events are sent at their exact sample positions; reverb and chorus are off so the rendering is dry.
    """
    fluidsynth = _fluidsynth()
    synth = fluidsynth.Synth(samplerate=float(sample_rate_hz), gain=0.5)
    for key, value in (("synth.reverb.active", 0), ("synth.chorus.active", 0)):
        synth.setting(key, value)
    try:
        sfid = synth.sfload(str(soundfont or soundfont_path()))
        synth.program_select(0, sfid, 0, program)
        events = sorted([(round(s * sample_rate_hz), 1, p) for p, s, _ in notes]
                        + [(round(e * sample_rate_hz), 0, p) for p, _, e in notes])  # offs before ons at a time
        total = round(seconds * sample_rate_hz)
        chunks, position = [], 0
        for at, on, pitch in events + [(total, -1, 0)]:
            at = min(at, total)
            if at > position:
                chunks.append(synth.get_samples(at - position))
                position = at
            if on == 1:
                synth.noteon(0, pitch, VELOCITY)
            elif on == 0:
                synth.noteoff(0, pitch)
    finally:
        synth.delete()
    stereo = np.concatenate(chunks).astype(np.float32).reshape(-1, 2) / 32768.0
    mono = stereo.mean(axis=1)
    peak = float(np.abs(mono).max())
    if peak < 1e-5:
        raise ConfigError(f"FluidSynth rendered silence for program {program}")
    return (mono * (0.5 / peak)).astype(np.float32)


def render_piece(piece: str, program: int, path: Path) -> None:
    """Render one piece on one program to a 16-bit PCM WAV (atomic write; same inputs, same bytes)."""
    import soundfile as sf

    from ..util.io import atomic_path

    audio = render_notes(piece_notes(piece), program)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), audio, SAMPLE_RATE_HZ, format="WAV", subtype="PCM_16")


def write_score(notes: list[tuple[int, float, float]], path: Path) -> None:
    """Notes (MIDI pitch, start s, end s) as a one-track MIDI file (atomic write)."""
    import pretty_midi

    from ..util.io import atomic_path

    midi = pretty_midi.PrettyMIDI(initial_tempo=TEMPO_BPM)
    track = pretty_midi.Instrument(program=0)
    track.notes = [pretty_midi.Note(velocity=VELOCITY, pitch=p, start=s, end=e) for p, s, e in notes]
    midi.instruments.append(track)
    with atomic_path(path) as tmp:
        midi.write(str(tmp))


def read_score(path: str | Path) -> list[tuple[int, float, float]]:
    """(MIDI pitch, start s, end s) of every note in a MIDI file, drums left out; a ConfigError names a bad file."""
    import pretty_midi

    try:
        midi = pretty_midi.PrettyMIDI(str(path))
    except FileNotFoundError:
        raise ConfigError(f"score file not found: {path}") from None
    except Exception as err:  # mido / pretty_midi raise many kinds on a file that is not MIDI
        raise ConfigError(f"{path}: not a readable MIDI file ({type(err).__name__})") from None
    notes = sorted((n.pitch, float(n.start), float(n.end)) for i in midi.instruments if not i.is_drum for n in i.notes)
    if not notes:
        raise ConfigError(f"{path}: the MIDI file has no notes")
    return notes


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def render_corpus(folder: str | Path | None = None, seed: int = SEED, pairs: int = PAIRS,
                  pieces: tuple[str, ...] = PIECES, programs: tuple[int, ...] = tuple(INSTRUMENTS)) -> Path:
    """Render the pairs planned from `seed` into `folder` (default: the cache) and write manifest.json.

    Files already present are not rendered again. Returns the manifest's path.
    """
    folder = Path(folder) if folder else default_cache_dir() / (
        f"rendered-seed{seed}-pairs{pairs}-{RENDER_SECONDS:g}s")  # the length is part of what was rendered
    folder.mkdir(parents=True, exist_ok=True)
    planned = plan_pairs(seed, pairs, pieces, programs)
    needed = sorted({(piece, program) for p in planned for piece, program in (
        (p.content_piece, p.content_program), (p.style_piece, p.style_program), (p.content_piece, p.style_program),
        (p.other_piece, p.style_program))})
    files = {}
    for piece, program in needed:
        path = folder / render_name(piece, program)
        if not path.is_file():
            render_piece(piece, program, path)
        files[path.name] = sha256_file(path)
    for piece in sorted({p.content_piece for p in planned}):
        path = folder / score_name(piece)
        if not path.is_file():
            write_score(piece_notes(piece), path)
        files[path.name] = sha256_file(path)
    manifest = {
        "seed": seed, "sample_rate_hz": SAMPLE_RATE_HZ, "tempo_bpm": TEMPO_BPM, "seconds": RENDER_SECONDS,
        "velocity": VELOCITY, "pieces": sorted({p for p, _ in needed}),
        "programs": {str(k): {"name": INSTRUMENTS[k][0], "family": INSTRUMENTS[k][1]}
                     for k in sorted({g for _, g in needed}) if k in INSTRUMENTS},
        "licences": LICENCES, "files_sha256": files,
        "pairs": [{"name": p.name, "content_piece": p.content_piece, "style_piece": p.style_piece,
                   "other_piece": p.other_piece, "content_program": p.content_program,
                   "style_program": p.style_program, "held_out": p.held_out, **p.files()}
                  for p in planned],
    }
    from ..util.io import write_json

    path = folder / "manifest.json"
    write_json(path, manifest)
    return path


def load_manifest(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise ConfigError(f"no rendered corpus manifest: {path} (render it with `python -m musicstyle corpus render`)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err.msg})") from None
