"""The sweep config: YAML search space, --set overrides, conditional dimensions, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from musicstyle.config import TransferConfig
from musicstyle.errors import ConfigError
from musicstyle.sweep.config import Dimension, apply_override, load_settings, parse_settings
from musicstyle.sweep.storage import paper_row_params

DEFAULT = str(Path(__file__).resolve().parents[1] / "configs" / "default.yaml")


SPACE = {  # a search space of this test's own, so that tuning configs/default.yaml breaks nothing here
    "study": {"objective": "quality", "trials": 20},
    "fixed": {"clip_seconds": 4.0, "iterations": 50},
    "search": {"alpha": {"low": 1e-4, "high": 1.0, "log": True}, "beta": {"low": 1e-2, "high": 100.0, "log": True},
               "filters": {"choices": [1024, 2048, 4096]},
               "activation": {"choices": ["relu", "leaky_relu", "elu", "selu"]},
               "lr": {"low": 1e-4, "high": 1e-1, "log": True, "when": {"optimizer": "adam"}},
               "optimizer": {"choices": ["lbfgs", "adam"], "enabled": False}},
}


def space(**changes) -> object:
    return parse_settings(SPACE | changes, "space.yaml")


def test_default_config_loads_and_leaves_the_rest_to_transfer_config():
    """configs/default.yaml is valid; what it does not set keeps TransferConfig's default, and what it
    switches off is not searched."""
    import yaml

    settings = load_settings(DEFAULT)
    raw = yaml.safe_load(Path(DEFAULT).read_text())
    config, defaults = settings.base_config().to_dict(), TransferConfig().to_dict()
    for name, value in defaults.items():
        if name not in raw.get("fixed", {}):
            assert config[name] == value, name
    enabled = {n for n, d in raw["search"].items() if d.get("enabled", True) is not False}
    assert set(settings.search) == enabled
    from musicstyle.measures import OBJECTIVES

    assert settings.objective in OBJECTIVES and settings.study["trials"] >= 1


def test_set_overrides_dotted_keys_and_reads_yaml_numbers():
    settings = load_settings(DEFAULT, ["search.alpha.low=1e-3", "fixed.iterations=7",
                                       "search.optimizer.enabled=true", "study.objective=pareto"])
    assert settings.search["alpha"].low == pytest.approx(1e-3)
    assert settings.base_config().iterations == 7
    assert settings.search["optimizer"].choices == ("lbfgs", "adam")
    assert settings.objective == "pareto"
    assert "(with --set)" in settings.source


@pytest.mark.parametrize("override, message", [
    ("search.alpah.low=1", "search.alpah: unknown setting 'alpah'"),
    ("search.alpha.low=10", "low \\(10\\) must be below high"),
    ("search.alpha.low=-1", "log-scale range needs low > 0"),
    ("search.alpha.lo=1", "search.alpha: unknown key 'lo'"),
    ("search.activation.choices=[relu, swish]", "must be one of"),
    ("search.activation.choices=[]", "non-empty list"),
    ("fixed.bogus=1", "unknown setting 'fixed.bogus'"),
    ("fixed.alpha=0.1", "'alpha' is both fixed and searched"),
    ("fixed.seed=3", "study.seed"),
    ("study.trials=0", "study.trials must be >= 1"),
    ("study.colour=red", "unknown key 'study.colour'"),
    ("sweep.trials=3", "unknown section 'sweep'"),
])
def test_bad_entries_are_one_line_naming_file_and_key(override, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_settings(DEFAULT, [override])
    assert DEFAULT in str(err.value) or "--set" in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("search: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad)


class FakeTrial:
    """Records what a sampler would be asked, answering the first choice or the low end."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def suggest_categorical(self, name, choices):
        self.asked.append(name)
        return choices[-1]

    def suggest_float(self, name, low, high, log=False):
        self.asked.append(name)
        return low

    def suggest_int(self, name, low, high, step=1, log=False):
        self.asked.append(name)
        return low


def test_learning_rate_is_searched_only_for_adam():
    from musicstyle.sweep.objective import suggest_params

    settings = space()
    trial = FakeTrial()
    params = suggest_params(trial, settings)
    assert "lr" not in params and "lr" not in trial.asked  # optimizer fixed to lbfgs
    settings = space(search=SPACE["search"] | {"optimizer": {"choices": ["lbfgs", "adam"]}})
    trial = FakeTrial()
    params = suggest_params(trial, settings)
    assert params["optimizer"] == "adam" and params["lr"] == pytest.approx(1e-4)
    assert trial.asked.index("optimizer") < trial.asked.index("lr")
    assert settings.config_for(params).lr == pytest.approx(1e-4)


def test_paper_rows_fit_the_space_or_are_left_out():
    rows = paper_row_params(space())
    assert [r[0] for r in rows] == ["base paper (ReLU)", "blog LeakyReLU", "blog ELU", "blog SELU"]
    assert rows[0][1] == {"alpha": 1e-2, "beta": 1.0, "filters": 4096, "activation": "relu", "lr": 1e-3}
    assert rows[1][1]["activation"] == "leaky_relu" and rows[1][1]["alpha"] == 1e-3 and rows[1][1]["beta"] == 10
    narrow = space(search=SPACE["search"] | {"activation": {"choices": ["relu", "elu"]}, "filters": {"choices": [64]}})
    rows = paper_row_params(narrow)
    assert [r[0] for r in rows] == ["base paper (ReLU)", "blog ELU"]
    assert "filters" not in rows[0][1]  # 4096 is not a choice: the sampler picks


def test_dimension_parsing_of_ints_and_steps():
    settings = parse_settings({"search": {"kernel_width": {"low": 3, "high": 11, "step": 2}}}, "x.yaml")
    assert settings.search["kernel_width"] == Dimension("kernel_width", 3, 11, False, 2)
    with pytest.raises(ConfigError, match="integer"):
        parse_settings({"search": {"kernel_width": {"low": 3.5, "high": 11}}}, "x.yaml")


def test_apply_override_creates_sections():
    data: dict = {}
    apply_override(data, "fixed.iterations=5")
    apply_override(data, "corpus=paper")
    assert data == {"fixed": {"iterations": 5}, "corpus": "paper"}
    with pytest.raises(ConfigError, match="key=value"):
        apply_override(data, "fixed.iterations")


def test_default_yaml_states_the_study_defaults():
    """configs/default.yaml documents every study default; its values are the code's (sweep/config.py)."""
    import yaml

    from musicstyle.sweep.config import STUDY_DEFAULTS

    study = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "default.yaml").read_text())["study"]
    assert study == STUDY_DEFAULTS


def test_default_yaml_states_the_confirmation_defaults():
    """configs/default.yaml spells out the confirm section: the code's defaults (sweep/config.py), switched on."""
    import yaml

    from musicstyle.sweep.config import CONFIRM_DEFAULTS

    written = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "default.yaml").read_text())["confirm"]
    assert written == CONFIRM_DEFAULTS | {"enabled": True}
