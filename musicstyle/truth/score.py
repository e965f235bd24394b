"""`python -m musicstyle truth score OUTPUT --content C --style S --target T [--score MIDI]`: the truth
measures of anyone's audio, printed as JSON; `score` is the number the sweep minimises (lower is better,
below 0 beats every trivial output of the pair).

The four files must share one sample rate, and the content, style and target must each be at least as long
as the output (less one STFT hop): the clip measured is the output's length from each file's start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..config import TransferConfig, make_config
from ..engine.audio import load_clip
from ..errors import AudioError


def native_rate(path: Path) -> int:
    """A file's own sample rate (Hz); AudioError naming a file that is missing or not audio."""
    import soundfile as sf

    if not path.is_file():
        raise AudioError(f"no such file: {path}")
    try:
        return int(sf.info(str(path)).samplerate)
    except Exception:  # soundfile cannot read the header: let librosa try (mp3, m4a)
        pass
    try:
        import warnings

        import librosa

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # librosa's audioread fallback warns before it fails
            return int(librosa.get_samplerate(str(path)))
    except Exception:
        raise AudioError(f"{path}: not a readable audio file") from None


def score_output(output: str | Path, content: str | Path, style: str | Path, target: str | Path,
                 score: str | Path | None = None, griffin_lim_iters: int = 500, seed: int = 0) -> dict[str, Any]:
    """The truth measures of `output` against its pair (module docstring), with the pair's trivial frontier."""
    from ..data.rendered import read_score
    from .measures import truth_reference

    paths = {"output": Path(output), "content": Path(content), "style": Path(style), "target": Path(target)}
    rates = {name: native_rate(path) for name, path in paths.items()}
    if len(set(rates.values())) > 1:
        odd = next(n for n in paths if rates[n] != rates["output"])
        raise AudioError(f"{paths[odd]}: sample rate {rates[odd]} Hz, but the output {paths['output']} is "
                         f"{rates['output']} Hz: give every file at one rate")
    config: TransferConfig = make_config({"sample_rate_hz": rates["output"], "griffin_lim_iters": griffin_lim_iters,
                                          "seed": seed})
    audio = load_clip(paths["output"], config.sample_rate_hz, 0.0, None)
    seconds = len(audio) / config.sample_rate_hz
    clips = {}
    for name in ("content", "style", "target"):
        clip = load_clip(paths[name], config.sample_rate_hz, 0.0, None)
        if len(clip) + config.hop < len(audio):
            raise AudioError(f"{paths[name]} is {len(clip) / config.sample_rate_hz:.2f} s long, shorter than the "
                             f"output {paths['output']} ({seconds:.2f} s): give clips at least as long as the output")
        clips[name] = clip[: len(audio)]
    frames = 1 + len(audio) // config.hop
    notes = read_score(score) if score is not None else None
    reference = truth_reference(clips["content"], clips["style"], clips["target"], frames, config, notes)
    measures = reference.measures(np.asarray(audio, dtype=np.float64))
    return {"score": measures["truth_score"], **measures,
            "frontier": {name: {"truth_timbre": t, "truth_notes": n} for name, (t, n) in reference.frontier.items()},
            "griffin_lim_iters": griffin_lim_iters, "seed": seed, "sample_rate_hz": config.sample_rate_hz,
            "notes_reference": "score" if notes is not None else "target transcription"}
