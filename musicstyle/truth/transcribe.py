"""Which notes sound in an audio, whatever the instrument: Spotify's Basic Pitch (Bittner et al., ICASSP 2022),
its published ONNX model run by onnxruntime.

Basic Pitch is a small network trained to transcribe many instruments to the same 88 piano keys, so a
note played by a flute and by an organ reads alike: what the notes axis needs, where a chroma carries the
instrument's overtones. The model file and its licence (Apache 2.0) sit in basic_pitch/ beside this
module, copied unchanged from the basic-pitch 0.4.0 wheel; this module repeats its windowing
(basic_pitch.inference) so that the package and its TensorFlow dependency are not needed.

    note_activations(audio)   (samples,) at 22050 Hz -> (88, frames) note probabilities, 86 frames per second
    piano_roll(notes, frames) the score's notes (MIDI pitch, start s, end s) -> (88, frames) 0/1 on that grid
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

RATE_HZ = 22050
HOP = 256
FRAMES_PER_SECOND = RATE_HZ // HOP  # 86, as Basic Pitch rounds it
LOWEST_MIDI = 21  # A0, the first of the 88 keys
KEYS = 88
_WINDOW = 2 * RATE_HZ - HOP  # the model's input length in samples
_OVERLAP_FRAMES = 30
_MODEL = Path(__file__).with_name("basic_pitch") / "nmp.onnx"


def frame_count(samples: int) -> int:
    """Frames note_activations gives for `samples` samples at RATE_HZ."""
    return samples * FRAMES_PER_SECOND // RATE_HZ


@cache
def _session():
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # measures run inside 1-thread workers
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(_MODEL), options, providers=["CPUExecutionProvider"])


def note_activations(audio: np.ndarray) -> np.ndarray:
    """(samples,) at RATE_HZ -> (88, frames) Basic Pitch note probabilities in [0, 1], frames = samples // HOP."""
    overlap = _OVERLAP_FRAMES * HOP
    step = _WINDOW - overlap
    padded = np.concatenate([np.zeros(overlap // 2, np.float32), np.asarray(audio, np.float32)])
    starts = range(0, len(padded), step)
    windows = np.stack([np.pad(padded[s:s + _WINDOW], (0, max(0, _WINDOW - len(padded[s:s + _WINDOW]))))
                        for s in starts])[:, :, None]
    session = _session()
    note = session.run(["StatefulPartitionedCall:1"], {"serving_default_input_2:0": windows})[0]
    half = _OVERLAP_FRAMES // 2
    note = note[:, half:-half, :].reshape(-1, KEYS)
    return note[: frame_count(len(audio))].T.astype(np.float64)


def piano_roll(notes: list[tuple[int, float, float]], frames: int) -> np.ndarray:
    """Notes (MIDI pitch, start s, end s) -> (88, frames) 0/1: which keys sound at each frame's time."""
    roll = np.zeros((KEYS, frames))
    times = np.arange(frames) / FRAMES_PER_SECOND
    for pitch, start, end in notes:
        if LOWEST_MIDI <= pitch < LOWEST_MIDI + KEYS:
            roll[pitch - LOWEST_MIDI, (times >= start) & (times < end)] = 1.0
    return roll
