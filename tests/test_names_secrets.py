"""Names and secrets: a study or pair name never writes outside the results folder, a storage
password never reaches output, results files or the study's attributes, YAML is only safe-loaded,
and no user string reaches a shell."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from helpers import REPO, make_corpus, tiny_config
from musicstyle.data.corpus import pairs_from_folders, pairs_from_mapping
from musicstyle.errors import ConfigError
from musicstyle.sweep.cli import main
from musicstyle.sweep.storage import mask, scrub
from musicstyle.util.names import check_name, inside, is_safe_name, safe_name

BAD_NAMES = ["../escape", "..", ".", "", "/etc/cron.d/x", "a/b", "a\\b", "~root", "x\ny", "-rf", ".hidden",
             "a..b", "ü", "name with space", "$(touch pwned)", "`id`", "a;b", "x" * 101, "a\x00b"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_unsafe_names_are_refused(name):
    assert not is_safe_name(name)
    with pytest.raises(ConfigError) as err:
        check_name(name, "--study name")
    assert "\n" not in str(err.value)
    assert is_safe_name(safe_name(name))  # a name made from a file's stem is always safe


def test_safe_names_pass_and_inside_refuses_a_way_out(tmp_path):
    for name in ("run-1", "paper", "calm_2.v3", "A9"):
        assert check_name(name, "name") == name
    assert inside(tmp_path, "p1.wav") == tmp_path / "p1.wav"
    for name in ("../x.wav", "/tmp/x.wav", "a/../../x.wav"):
        with pytest.raises(ConfigError):
            inside(tmp_path, name)


@pytest.mark.parametrize("study", ["../escape", "/tmp/abs"])
def test_a_study_name_cannot_leave_the_results_folder(tmp_path, study):
    corpus = make_corpus(tmp_path)
    results = tmp_path / "box" / "results"
    done = subprocess.run([sys.executable, "sweep.py", "--config", str(tiny_config(tmp_path, corpus)), "--results",
                           str(results), "--study", study, "--quiet"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "--study name" in done.stderr
    assert not (tmp_path / "box").exists() and not (tmp_path / "escape").exists()
    assert not Path("/tmp/abs").exists() and not (REPO / "pwned").exists()


@pytest.mark.parametrize("name", ["../../evil", "/tmp/evil", "sub/dir", "..", "x\ny"])
def test_a_pair_name_cannot_become_a_path(tmp_path, name):
    with pytest.raises(ConfigError, match="name may hold"):
        pairs_from_mapping({"pairs": [{"name": name, "content": "a.wav", "style": "b.wav"}]}, "corpus.yaml", tmp_path)


def test_pair_names_made_from_file_names_are_safe(tmp_path):
    for folder in ("c", "s"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "..évil name;rm.wav").write_bytes(b"x")
    pairs = pairs_from_folders(tmp_path / "c", tmp_path / "s")
    pairs += pairs_from_mapping({"pairs": [{"content": "../$(id) ü.wav", "style": "b.wav"}]}, "corpus.yaml", tmp_path)
    assert all(is_safe_name(p.name) for p in pairs), [p.name for p in pairs]


SECRET = "s3cr3t-PW_x9"


def test_a_password_is_hidden_in_storage_messages(tmp_path, capsys):
    """Storage errors (also a driver's own words) and the storage label never quote the password."""
    config = str(tiny_config(tmp_path, make_corpus(tmp_path)))
    for url in (f"postgresql://user:{SECRET}@127.0.0.1:9/db", f"postgresql://user:{SECRET}@127.0.0.1:notaport/db",
                f"postgressql://user:{SECRET}@127.0.0.1/db"):
        assert main(["--config", config, "--results", str(tmp_path / "r"), "--storage", url]) == 2
        out = capsys.readouterr()
        assert SECRET not in out.out + out.err and "storage" in out.err, out.err
    assert SECRET not in scrub(f"could not parse postgresql://u:{SECRET}@h/db", f"postgresql://u:{SECRET}@h/db")
    assert SECRET not in mask(f"postgresql://u:{SECRET}@h/db")


def test_a_password_reaches_no_output_file_or_study_attribute(postgres_url, tmp_path):
    """A tiny sweep on PostgreSQL with a password in the URL (the test server trusts any password): the
    password is in no line printed, no file under the results folder and no study or trial attribute."""
    corpus = make_corpus(tmp_path)
    url = postgres_url.replace("postgres@", f"postgres:{SECRET}@", 1)
    results = tmp_path / "results"
    done = subprocess.run([sys.executable, "sweep.py", "--config", str(tiny_config(tmp_path, corpus, trials=1)),
                           "--results", str(results), "--storage", url, "--study", "secret", "--set",
                           "study.paper_rows=false"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert SECRET not in done.stdout + done.stderr and "***" in done.stderr  # the storage line is masked
    for path in results.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    study = optuna.load_study(study_name="secret", storage=postgres_url)
    stored = [study.user_attrs] + [[t.user_attrs, t.system_attrs, t.params] for t in study.trials]
    assert SECRET not in json.dumps(stored, default=str)


def test_yaml_tags_that_run_code_are_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"
    config = tmp_path / "evil.yaml"
    config.write_text(f"study: !!python/object/apply:os.system ['touch {marker}']\n")
    corpus = tmp_path / "evil-corpus.yaml"
    corpus.write_text(f"pairs: !!python/object/apply:os.system ['touch {marker}']\n")
    for args in (["--config", str(config)], ["--config", str(tiny_config(tmp_path, make_corpus(tmp_path))),
                                              "--corpus", str(corpus)]):
        assert main([*args, "--results", str(tmp_path / "r")]) == 2
        assert "not valid YAML" in capsys.readouterr().err
    assert not marker.exists()


def _calls(root: Path):
    for path in [*root.glob("musicstyle/**/*.py"), *root.glob("benchmark/*.py"), root / "sweep.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                yield path, node


def test_yaml_is_only_safe_loaded_and_nothing_runs_a_shell():
    """Source scan: yaml is used only through safe_load/safe_dump; no shell=True, os.system or os.popen,
    and every subprocess gets an argument list (no command string a user's text could be spliced into)."""
    for path, node in _calls(REPO):
        func = ast.unparse(node.func)
        where = f"{path.relative_to(REPO)}:{node.lineno}: {ast.unparse(node)[:80]}"
        if func.startswith("yaml."):
            assert func in ("yaml.safe_load", "yaml.safe_dump"), where
        assert func not in ("os.system", "os.popen", "os.execl", "os.spawnl"), where
        assert not any(k.arg == "shell" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
                       for k in node.keywords), where
        if func.startswith("subprocess.") and node.args:
            assert not isinstance(node.args[0], (ast.Constant, ast.JoinedStr, ast.BinOp)), where
