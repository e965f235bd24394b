"""The base paper's songs and the table this project reproduces.

The songs are not shipped: they are found through `--paper-dir` or the environment variable
`MUSICSTYLE_PAPER_SONGS` (`fetch-paper-songs` downloads them).
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import AudioError, ConfigError
from ..util.io import atomic_path

SONGS_URL = "https://raw.githubusercontent.com/DmitryUlyanov/neural-style-audio-tf/master/inputs/"
CONTENT_SONG, STYLE_SONG = "imperial.mp3", "usa.mp3"
SONGS = f"{CONTENT_SONG} and {STYLE_SONG}"  # as help texts and messages name them
SONG_SHA256 = {
    CONTENT_SONG: "65ac7b86af2f2b93c88c0cf6bc50a40e6923c1f7ff93b46504abf70552f7cbb2",
    STYLE_SONG: "193f8fafe1c0755472cf20818eb4ac3549076d1fb358bb7370dc1ee8b11bec55",
}
PAPER_SONGS_ENV = "MUSICSTYLE_PAPER_SONGS"


def songs_needed(what: str) -> ConfigError:
    """The error for `what` (a command or option) run without the paper's songs."""
    return ConfigError(f"{what} needs --paper-dir DIR or ${PAPER_SONGS_ENV} (the folder with {SONGS})")


def paper_songs_dir(given: str | Path | None = None) -> Path | None:
    """The folder with the paper's songs: `given` (--paper-dir), else $MUSICSTYLE_PAPER_SONGS, else None."""
    value = given or os.environ.get(PAPER_SONGS_ENV)
    return Path(value) if value else None


@dataclass(frozen=True)
class PaperRow:
    """One row of the blog's table: the settings it names and the final loss it printed."""

    name: str
    activation: str
    alpha: float
    beta: float
    lr: float
    paper_loss: float

    @property
    def settings(self) -> dict[str, float | str]:
        return {"activation": self.activation, "alpha": self.alpha, "beta": self.beta, "lr": self.lr}


# Where the base row's final loss must land at full settings: paper 559, its notebook 565.25, a re-run 547.
BASE_ROW_RANGE = (530.0, 590.0)
BASE_ROW = PaperRow("base paper (ReLU)", "relu", 1e-2, 1.0, 1e-3, 559.0)
PAPER_ROWS = (
    BASE_ROW,
    PaperRow("blog LeakyReLU", "leaky_relu", 1e-3, 10.0, 1e-2, 81.79),
    PaperRow("blog ELU", "elu", 1e-3, 10.0, 1e-2, 207.1794),
    PaperRow("blog SELU", "selu", 1e-3, 10.0, 1e-2, 266.556),
)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def paper_song_paths(folder: str | Path) -> tuple[Path, Path]:
    """(content, style) paths in `folder`; AudioError naming the missing file."""
    folder = Path(folder)
    paths = folder / CONTENT_SONG, folder / STYLE_SONG
    for path in paths:
        if not path.exists():
            raise AudioError(f"no such file: {path} (get the paper's songs with "
                             f"`python -m musicstyle fetch-paper-songs {folder}`)")
    return paths


def verify_songs(folder: str | Path) -> list[str]:
    """Names of the paper's songs in `folder` whose SHA-256 differs from the published one."""
    return [name for name, digest in SONG_SHA256.items() if sha256(Path(folder) / name) != digest]


def fetch_songs(folder: str | Path, base_url: str = SONGS_URL, timeout_seconds: float = 60) -> list[Path]:
    """Download the two songs from the base paper's public repository and check their SHA-256.

    A file whose checksum does not match is not kept (AudioError). Files already present and
    correct are not downloaded again.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, digest in SONG_SHA256.items():
        path = folder / name
        paths.append(path)
        if path.exists() and sha256(path) == digest:
            continue
        try:
            with urllib.request.urlopen(base_url + name, timeout=timeout_seconds) as response:
                data = response.read()
        except OSError as err:
            raise AudioError(f"cannot download {base_url + name}: {err}") from None
        got = hashlib.sha256(data).hexdigest()
        if got != digest:
            raise AudioError(f"checksum mismatch for {base_url + name}: sha256 {got}, expected {digest}")
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    return paths
