"""The truth subcommands end to end on tiny plans: `truth score` (and its bad input), `truth sanity --quick`,
`truth verdict --quick` (the rule written before the runs, resuming, the verdict paragraph)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

pytest.importorskip("fluidsynth", exc_type=ImportError)

from musicstyle.cli import main  # noqa: E402
from musicstyle.data.corpus import rendered_pairs  # noqa: E402


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three 3 s clips of one rendered pair, and its score."""
    folder = tmp_path_factory.mktemp("score")
    first = rendered_pairs(folder / "corpus", pairs=1)[0]
    manifest = json.loads((first.target.parent / "manifest.json").read_text())["pairs"][0]
    out = {}
    for name, path in (("content", first.content), ("style", first.style), ("target", first.target)):
        audio, rate = sf.read(str(path))
        out[name] = folder / f"{name}.wav"
        sf.write(str(out[name]), audio[: 3 * rate], rate)
    out["score"] = first.target.parent / manifest["score"]
    return out


def score(capsys: pytest.CaptureFixture, output: Path, pair: dict[str, Path], *extra: str) -> tuple[int, str, str]:
    code = main(["truth", "score", str(output), "--content", str(pair["content"]), "--style", str(pair["style"]),
                 "--target", str(pair["target"]), "--griffin-lim-iters", "20", *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_truth_score_ranks_the_target_above_the_content(capsys: pytest.CaptureFixture, pair: dict[str, Path]
                                                       ) -> None:
    code, out, _ = score(capsys, pair["target"], pair, "--score", str(pair["score"]))
    target = json.loads(out)
    assert code == 0 and target["notes_reference"] == "score" and target["score"] == target["truth_score"]
    code, out, _ = score(capsys, pair["content"], pair)
    content = json.loads(out)
    assert code == 0 and content["notes_reference"] == "target transcription"
    assert target["score"] < 0 <= content["score"]  # the answer beats every trivial output; a copy does not
    assert target["truth_timbre"] < 0.5 < content["truth_timbre"]
    assert set(content["frontier"]) >= {"content copy", "style copy", "magnitude mix", "EQ matching"}


def test_truth_score_bad_input_is_one_line(capsys: pytest.CaptureFixture, pair: dict[str, Path],
                                           tmp_path: Path) -> None:
    rate = sf.info(str(pair["target"])).samplerate
    (tmp_path / "text.wav").write_text("not audio")
    sf.write(str(tmp_path / "silent.wav"), np.zeros(rate * 2), rate)
    sf.write(str(tmp_path / "rate.wav"), np.random.default_rng(0).standard_normal(16000 * 2) * 0.1, 16000)
    sf.write(str(tmp_path / "long.wav"), np.random.default_rng(0).standard_normal(rate * 5) * 0.1, rate)
    cases = {"missing.wav": "no such file", "text.wav": "not a readable audio file", "silent.wav": "silent",
             "rate.wav": "sample rate", "long.wav": "shorter than the output"}
    for name, message in cases.items():
        code, out, err = score(capsys, tmp_path / name, pair)
        assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err, (name, err)
        assert out == ""


def test_sanity_quick_suite(tmp_path: Path) -> None:
    assert main(["truth", "sanity", "--quick", "--out", str(tmp_path)]) == 0
    frame = pd.read_csv(tmp_path / "sanity-quick.csv")
    assert set(frame["pair"].str[0]) == {"r", "h"} and frame["case"].nunique() == 16
    for measure in ("truth_timbre", "truth_notes", "truth_score"):  # each sees what it must, ignores the rest
        required = frame[frame[f"{measure}_pass"].notna()]
        assert required[f"{measure}_pass"].astype(bool).mean() >= 0.9, measure
    by_case = frame.set_index(["pair", "case"])
    for name in frame["pair"].unique():
        assert by_case.loc[(name, "content copy"), "truth_timbre"] > 0.5
        assert by_case.loc[(name, "EQ-matched content"), "truth_timbre"] > 0.5  # an EQ is not an instrument
        assert by_case.loc[(name, "target +1 semitone"), "truth_notes"] > 0.5
        assert by_case.loc[(name, "target + white 20 dB"), "truth_artefacts_db"] > by_case.loc[
            (name, "target GL500"), "truth_artefacts_db"] + 10
    report = (tmp_path / "sanity-quick.md").read_text()
    assert "## Pass rates per measure" in report and "cores" in report


def test_verdict_quick_writes_its_rule_first_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from musicstyle.truth import verdict

    out = tmp_path / "verdict"
    seen: list[bool] = []
    real = verdict.run_one

    def spy(*args, **kwargs):
        seen.append((out / "decision.md").is_file())  # the rule is on disk before any run
        return real(*args, **kwargs)

    monkeypatch.setattr(verdict, "run_one", spy)
    assert main(["truth", "verdict", "--quick", "--out", str(out)]) == 0
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 2 * len(verdict.ARMS) and (runs["state"] == "ok").all() and all(seen)
    assert all(verdict.audio_path(out, r).is_file() for r in runs.to_dict("records"))
    text = (out / "verdict.md").read_text()
    assert text.splitlines()[2].startswith("**") and "## Decision rule" in text and "EQ matching" in text
    before = (out / "runs.csv").read_bytes()
    seen.clear()
    assert main(["truth", "verdict", "--quick", "--out", str(out)]) == 0  # resumes: nothing left to run
    assert seen == [] and (out / "runs.csv").read_bytes() == before
    stale = pd.read_csv(out / "runs.csv").assign(truth_score=99.0)  # as if measured by another model
    stale.to_csv(out / "runs.csv", index=False)
    assert main(["truth", "verdict", "--quick", "--out", str(out), "--rescore"]) == 0
    rescored = pd.read_csv(out / "runs.csv").set_index("run_id").loc[runs["run_id"]]
    assert seen == [] and np.allclose(rescored["truth_score"], runs["truth_score"], atol=0.02)  # from the saved audio
    (out / "decision.md").write_text("another rule\n")
    assert main(["truth", "verdict", "--quick", "--out", str(out)]) == 2  # a changed rule is refused


def test_sign_test_threshold() -> None:
    from musicstyle.truth.verdict import sign_test_threshold

    assert sign_test_threshold(12) == 10 and sign_test_threshold(14) == 11 and sign_test_threshold(2) == 3
