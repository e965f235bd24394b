"""Audio in: any file soundfile (or librosa's fallback) decodes, folded to mono, resampled, clipped."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import AudioError

SILENCE_PEAK = 1e-5  # a clip whose absolute peak is below this is treated as silent


@contextlib.contextmanager
def _quiet_c_stderr() -> Iterator[None]:
    """Silence what C decoders print straight to file descriptor 2 (mpg123's 'Note: ...' lines on bad
    MP3 data), so a bad file gives our one-line error and nothing else."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _decode(path: Path) -> tuple[np.ndarray, int]:
    """Whole file as (samples, channels) float32 and its rate; AudioError if not audio."""
    try:
        with _quiet_c_stderr():
            data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        return data, int(rate)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as first:
        try:  # formats libsndfile lacks (m4a, ...) through librosa/audioread, if a backend exists
            import librosa

            with warnings.catch_warnings(), _quiet_c_stderr():
                warnings.simplefilter("ignore")
                mono, rate = librosa.load(str(path), sr=None, mono=False)
            mono = np.atleast_2d(mono).T.astype(np.float32)
            return mono, int(rate)
        except Exception:
            reason = str(first).splitlines()[0] if str(first) else type(first).__name__
            if "does not exist" in reason:  # libsndfile's words when its MP3 decoder rejects the data
                reason = "unrecognised or corrupt audio data"
            raise AudioError(f"not a readable audio file: {path} ({reason})") from None


def load_clip(
    path: str | os.PathLike,
    sample_rate_hz: int,
    offset_seconds: float = 0.0,
    clip_seconds: float | None = None,
) -> np.ndarray:
    """Read a clip as mono float32 at `sample_rate_hz`.

    Returns shape (samples,). Raises AudioError (one line, naming the file) when the file is
    missing, not audio, empty, the offset is past its end, or the clip is silent or not finite.
    """
    path = _existing_file(path)
    data, rate = _decode(path)
    if data.shape[0] == 0:
        raise AudioError(f"file has no audio samples: {path}")
    duration = data.shape[0] / rate
    if offset_seconds >= duration:
        raise AudioError(f"offset {offset_seconds:g} s is past the end of {path} ({duration:.3f} s long)")
    start = int(round(offset_seconds * rate))
    stop = data.shape[0] if clip_seconds is None else min(data.shape[0], start + int(round(clip_seconds * rate)))
    mono = data[start:stop].mean(axis=1)
    if not np.all(np.isfinite(mono)):
        raise AudioError(f"audio contains NaN or infinite samples: {path}")
    if rate != sample_rate_hz:
        import librosa

        mono = librosa.resample(mono, orig_sr=rate, target_sr=sample_rate_hz, res_type="soxr_hq")
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if mono.size == 0 or float(np.max(np.abs(mono))) < SILENCE_PEAK:
        raise AudioError(f"clip is silent (peak below {SILENCE_PEAK:g}): {path}")
    return mono


def _existing_file(path: str | os.PathLike) -> Path:
    """`path` as a Path; AudioError when it is missing, a folder or empty."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"no such file: {path}")
    if path.is_dir():
        raise AudioError(f"is a folder, not an audio file: {path}")
    if path.stat().st_size == 0:
        raise AudioError(f"empty file (0 bytes): {path}")
    return path


def duration_seconds(path: str | os.PathLike) -> float:
    """Length of an audio file in seconds, read from its header where possible (cheap check)."""
    path = _existing_file(path)
    try:
        with _quiet_c_stderr():  # mpg123 prints notes on damaged MP3 headers
            info = sf.info(str(path))
        if info.frames <= 0:
            raise AudioError(f"file has no audio samples: {path}")
        return info.frames / info.samplerate
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        data, rate = _decode(path)
        if data.shape[0] == 0:
            raise AudioError(f"file has no audio samples: {path}") from None
        return data.shape[0] / rate


def write_wav(path: str | os.PathLike, audio: np.ndarray, sample_rate_hz: int) -> None:
    """Write a mono float WAV atomically (temporary file in the same folder, then rename)."""
    from ..util.io import atomic_path

    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > 1.0:  # keep the waveform's shape, avoid clipping in 16-bit players
        audio = audio / peak
    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.asarray(audio, dtype=np.float32), sample_rate_hz, format="WAV", subtype="FLOAT")
