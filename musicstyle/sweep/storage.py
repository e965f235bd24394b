"""Where the study lives: open (and check) the storage, create or resume the study, queue the
paper's rows first.

The default storage is a journal file under the results folder (several processes on one
machine); an RDB URL (PostgreSQL) serves several machines. SQLite is accepted but locks under
several writers.
"""

from __future__ import annotations

import importlib.util
import random
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage

from ..config import TransferConfig
from ..data.paper_songs import PAPER_ROWS
from ..errors import ConfigError, MusicStyleError
from ..measures import directions, is_multi_objective
from .config import SweepSettings
from .journal import repair_journal
from .plan import SweepPlan

SCHEMA_RACE_ATTEMPTS = 5  # tries to open an RDB storage while other workers create its tables
QUEUED = "queued_params"  # user attr: the parameters a trial was enqueued with (kept for its re-run)


_OPENED: dict[str, optuna.storages.BaseStorage] = {}  # study name -> the storage this process opened it on


class StorageError(MusicStyleError):
    """The study storage cannot be opened, reached or written."""


def mask(url: str) -> str:
    """The URL with any password hidden, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return scrub(make_url(url).render_as_string(hide_password=True), url)
    except Exception:
        return url.split("@")[-1]


def scrub(text: str, url: str | None) -> str:
    """`text` with the password of `url` (as written, and percent-decoded) replaced by ***, for any
    message that might quote the URL (a driver's error)."""
    found = re.match(r"^[\w+.-]+://[^:@/]*:(.*)@", url or "")
    if not found or not found.group(1):
        return text
    for form in sorted({found.group(1), unquote(found.group(1))}, key=len, reverse=True):
        text = text.replace(form, "***")
    return text


def journal_path(results_dir: Path) -> Path:
    return results_dir / "study.journal"


def storage_label(plan: SweepPlan) -> str:
    return mask(plan.storage_url) if plan.storage_url else str(journal_path(plan.results_dir))


def normalise_url(url: str) -> str:
    """postgres:// and a bare postgresql:// get the installed driver (psycopg 3, else psycopg2)."""
    scheme, rest = url.split(":", 1)
    if scheme in ("postgres", "postgresql"):
        driver = "psycopg" if importlib.util.find_spec("psycopg") else "psycopg2"
        return f"postgresql+{driver}:{rest}"
    return url


def open_storage(url: str | None, results_dir: Path) -> optuna.storages.BaseStorage:
    """The study storage: a journal file under the results folder (default), a `journal:PATH`, or
    an RDB URL (sqlite:///..., postgresql://...). Checked reachable; StorageError in one line."""
    if url is None or url.startswith("journal:"):
        path = journal_path(results_dir) if url is None else Path(url[len("journal:"):]).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch(exist_ok=True)
            note = repair_journal(path)
        except OSError as err:
            raise StorageError(f"cannot write the study journal {path}: {err.strerror}") from None
        if note:
            print(note, file=sys.stderr)
        return JournalStorage(JournalFileBackend(str(path)))
    if url.split(":", 1)[0].split("+")[0] not in ("sqlite", "postgresql", "postgres", "mysql"):
        raise StorageError(f"unsupported storage URL {mask(url)!r}: use sqlite:///FILE, postgresql://..., "
                           "mysql://... or journal:FILE")
    url = normalise_url(url)
    engine_kwargs: dict[str, Any] = {"connect_args": {"connect_timeout": 10}} if url.startswith("postgresql") else {}
    for attempt in range(SCHEMA_RACE_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
                optuna.get_all_study_names(storage)
            return storage
        except Exception as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            # workers starting together on an empty database race to create Optuna's tables: the loser
            # sees a duplicate-key or already-exists error, and a second try finds the tables made
            racing = "UniqueViolation" in reason or "already exists" in reason
            if not racing or attempt == SCHEMA_RACE_ATTEMPTS - 1:
                raise StorageError(f"cannot open storage {mask(url)}: {scrub(reason, url)[:300]}") from None
            time.sleep(0.5 + random.random())
    raise AssertionError("unreachable")


def make_sampler(plan: SweepPlan, worker: int) -> optuna.samplers.BaseSampler:
    """Multivariate TPE, seeded per worker; constant_liar keeps parallel workers apart."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=plan.seed + 1000 * worker, multivariate=True, group=True,
                                          constant_liar=True, n_startup_trials=plan.settings.study["startup_trials"])


def make_pruner(plan: SweepPlan) -> optuna.pruners.BasePruner:
    """WilcoxonPruner over the pairs (one value per pair); none for Pareto studies (Optuna cannot)."""
    s = plan.settings.study
    if is_multi_objective(plan.objective) or not s["prune"]:
        return optuna.pruners.NopPruner()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.pruners.WilcoxonPruner(p_threshold=s["p_threshold"], n_startup_steps=s["n_startup_steps"])


def open_study(plan: SweepPlan, worker: int = 0, create: bool = True) -> optuna.Study:
    """Load the study, or create it (recording the config and corpus) when `create`."""
    storage = open_storage(plan.storage_url, plan.results_dir)
    _OPENED[plan.study_name] = storage
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if plan.study_name in optuna.get_all_study_names(storage):
        study = optuna.load_study(study_name=plan.study_name, storage=storage, sampler=make_sampler(plan, worker),
                                  pruner=make_pruner(plan))
        wait_until_ready(study)
        check_same_study(study, plan)
        return study
    if not create:
        raise StorageError(f"no study named '{plan.study_name}' in the storage")
    try:  # exactly one process wins the creation; the others load the study it made
        study = optuna.create_study(study_name=plan.study_name, storage=storage,
                                    directions=directions(plan.objective), sampler=make_sampler(plan, worker),
                                    pruner=make_pruner(plan), load_if_exists=False)
    except optuna.exceptions.DuplicatedStudyError:
        return open_study(plan, worker, create=False)
    study.set_user_attr("objective", plan.objective)
    study.set_user_attr("config", plan.settings.raw)
    study.set_user_attr("config_source", plan.settings.source)
    study.set_user_attr("corpus", [p.to_dict() for p in plan.pairs])
    study.set_user_attr("fixed", plan.settings.base_config().to_dict())
    enqueue_paper_rows(study, plan.settings)
    study.set_user_attr("ready", True)  # set last: workers that lost the creation wait for it
    return study


def wait_until_ready(study: optuna.Study, timeout_seconds: float = 60.0) -> None:
    """Wait while another process is still creating the study (recording its config, queueing the
    paper's rows), so that the rows run first and once. A study with trials is ready."""
    end = time.time() + timeout_seconds
    while "ready" not in study.user_attrs and not study.get_trials(deepcopy=False) and time.time() < end:
        time.sleep(0.2)


def check_same_study(study: optuna.Study, plan: SweepPlan) -> None:
    """A resumed study keeps its objective, corpus and fixed settings (else its trials would not compare)."""
    attrs = study.user_attrs
    hint = "give a new --study name"
    if attrs.get("objective", plan.objective) != plan.objective:
        raise ConfigError(f"study '{plan.study_name}' was created with objective '{attrs['objective']}', not "
                          f"'{plan.objective}': give --objective {attrs['objective']} or a new --study name")
    if "corpus" in attrs and attrs["corpus"] != [p.to_dict() for p in plan.pairs]:
        raise ConfigError(f"study '{plan.study_name}' was created with another corpus "
                          f"({', '.join(p['name'] for p in attrs['corpus'])}): {hint}")
    fixed = plan.settings.base_config().to_dict()
    if fixed.get("precision") == "auto":  # not resolved here (--report-only): what the study resolved it to
        fixed["precision"] = attrs.get("fixed", {}).get("precision", "auto")
    changed = sorted(k for k, v in attrs.get("fixed", fixed).items() if fixed.get(k) != v)
    if changed:
        was = ", ".join(f"{k}={attrs['fixed'][k]}" for k in changed)
        raise ConfigError(f"study '{plan.study_name}' was created with other fixed settings ({was}): {hint}")


def enqueue(study: optuna.Study, params: dict[str, Any], user_attrs: dict[str, Any], once: bool = False) -> None:
    """Queue a trial with fixed `params`, recording them in the user attr QUEUED too, so that a re-run
    of the trial (killed before it suggested them all) can be queued from public trial data.
    `once`: not when a trial with these parameters exists already."""
    study.enqueue_trial(params, user_attrs=user_attrs | {QUEUED: params}, skip_if_exists=once)


def paper_row_params(settings: SweepSettings) -> list[tuple[str, dict[str, Any], float]]:
    """The paper's four rows as parameters of this search space.

    Each row's own settings (activation, alpha, beta, lr) are always kept (a float outside its range
    is still run, with Optuna's warning); a row whose activation the space lacks is left out. Other
    searched settings take the base paper's value when the space has it, else the sampler picks.
    """
    defaults = TransferConfig().to_dict()
    rows = []
    for row in PAPER_ROWS:
        own = {name: value for name, value in row.settings.items() if name in settings.search}
        if not all(settings.search[n].contains(v) or settings.search[n].choices is None for n, v in own.items()):
            print(f"note: the search space has no room for the paper row '{row.name}'; not enqueued",
                  file=sys.stderr)
            continue
        others = {n: defaults[n] for n, d in settings.search.items() if n not in own and d.contains(defaults[n])}
        rows.append((row.name, others | own, row.paper_loss))
    return rows


def enqueue_paper_rows(study: optuna.Study, settings: SweepSettings) -> None:
    """Enqueue the paper's four rows so they run first (by the process that created the study)."""
    if not settings.study["paper_rows"] or study.get_trials(deepcopy=False):
        return
    for label, params, figure in paper_row_params(settings):
        enqueue(study, params, {"paper_row": label, "paper_loss": figure}, once=True)


def mark_trial(study: optuna.Study, number: int, attrs: dict[str, Any]) -> None:
    """Write user attrs onto trial `number` of `study`, which may be another (dead) process's trial.

    Why an adapter: Optuna's Study API writes a trial's user attrs only through the `Trial` that
    `study.ask()` gave this process, and fails a stale trial on its own only in RDB storages with a
    heartbeat, without saying why. The journal storage has no heartbeat, and the sweep marks a
    recovered trial ("discarded": "stale") so it is not counted, on every storage alike. So the
    trial is looked up by number through the storage's public `BaseStorage` methods (the storage
    object this process opened, never `study`'s private one). Raises UpdateFinishedTrialError when
    the trial has finished meanwhile.
    """
    storage = _OPENED[study.study_name]
    key = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study.study_name), number)
    for name, value in attrs.items():
        storage.set_trial_user_attr(key, name, value)
