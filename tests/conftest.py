"""Shared test fixtures: generated audio, the paper's songs where $MUSICSTYLE_PAPER_SONGS names them,
bf16 forced on any CPU, and a throwaway PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musicstyle.data.paper_songs import paper_songs_dir
from musicstyle.data.tones import tone_mix  # noqa: F401 (the tests import it from here)

REPO = Path(__file__).resolve().parents[1]
PAPER_SONGS = paper_songs_dir()  # $MUSICSTYLE_PAPER_SONGS, or None: the songs are never in the project


@pytest.fixture
def song_pair(tmp_path: Path) -> tuple[Path, Path]:
    """Two generated 1.5 s clips: a 'content' (stereo WAV, 16 kHz) and a 'style' (mono FLAC, 8 kHz)."""
    content = tmp_path / "content.wav"
    style = tmp_path / "style.flac"
    mono = tone_mix(1.5, 16000, (220.0, 330.0, 440.0), seed=1)
    sf.write(content, np.stack([mono, 0.5 * mono], axis=1), 16000)
    sf.write(style, tone_mix(1.5, 8000, (150.0, 600.0, 1200.0), seed=2), 8000)
    return content, style


@pytest.fixture
def paper_songs() -> tuple[Path, Path]:
    """The base paper's content and style songs from $MUSICSTYLE_PAPER_SONGS (skip where unset or absent)."""
    if PAPER_SONGS is None:
        pytest.skip("MUSICSTYLE_PAPER_SONGS is not set (the folder with the paper's imperial.mp3 and usa.mp3; "
                    "`python -m musicstyle fetch-paper-songs DIR` downloads them)")
    content, style = PAPER_SONGS / "imperial.mp3", PAPER_SONGS / "usa.mp3"
    if not (content.exists() and style.exists()):
        pytest.skip(f"the paper's songs are not in MUSICSTYLE_PAPER_SONGS={PAPER_SONGS}")
    return content, style


@pytest.fixture
def bf16_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs asked for in bf16 get bfloat16 products even where they are slow (no AVX-512 BF16 / AMX),
    so that the bf16 path's numerics are tested on every CPU."""
    import musicstyle.engine.problem

    monkeypatch.setattr(musicstyle.engine.problem, "bf16_supported", lambda device: True)


def _postgres_bin() -> Path | None:
    """The folder of PostgreSQL's server programs (Debian's layout first), or None."""
    import shutil

    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True)
    for folder in candidates:
        if (folder / "initdb").exists():
            return folder
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


@pytest.fixture(scope="session")
def postgres_url(postgres_server):
    """A throwaway PostgreSQL server on loopback for the session, as an SQLAlchemy URL."""
    return postgres_server.url


@pytest.fixture(scope="session")
def postgres_server():
    """The throwaway PostgreSQL server: `url`, and `pg_ctl(action, *options)` to stop, start or restart
    it (None for an existing server).

    Uses MUSICSTYLE_TEST_POSTGRES_URL when set (an existing server); else starts its own with
    Debian's PostgreSQL (installed by .ci/run), as the `postgres` user when running as root.
    """
    import os
    import socket
    import subprocess
    from types import SimpleNamespace

    if os.environ.get("MUSICSTYLE_TEST_POSTGRES_URL"):
        yield SimpleNamespace(url=os.environ["MUSICSTYLE_TEST_POSTGRES_URL"], pg_ctl=None)
        return
    pg_bin = _postgres_bin()
    if pg_bin is None:
        pytest.skip("PostgreSQL is not installed (.ci/run installs Debian's postgresql package)")
    import shutil
    import tempfile

    data = Path(tempfile.mkdtemp(prefix="musicstyle-pg-"))  # not under pytest's 0700 folder: postgres must reach it
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        subprocess.run(["chown", "-R", "postgres:", str(data)], check=True)
    run = lambda *args: subprocess.run([*as_user, *map(str, args)], check=True, capture_output=True)  # noqa: E731
    run(pg_bin / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c fsync=off"

    def pg_ctl(action: str, *extra: str) -> None:
        run(pg_bin / "pg_ctl", "-D", data, "-w", "-l", data / "server.log", "-o", options, *extra, action)

    pg_ctl("start")
    try:
        run(pg_bin / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "postgres", "musicstyle_test")
        yield SimpleNamespace(url=f"postgresql+psycopg2://postgres@127.0.0.1:{port}/musicstyle_test", pg_ctl=pg_ctl)
    finally:
        subprocess.run([*as_user, str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(data, ignore_errors=True)
