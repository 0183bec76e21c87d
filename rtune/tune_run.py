"""`tune.run(...)`: Ray Tune's older entry point, for the scripts and examples still written
against it. It makes the `Tuner` those arguments describe, fits it (or restores the experiment
it names), and returns an `ExperimentAnalysis` of the result.

Arguments that would change what runs but rtune does not honour yet (`progress_reporter`,
`sync_config`, `export_formats`, `log_to_file`, ...) are refused by name rather than ignored.
"""

from __future__ import annotations

from typing import Any

from rtune import _settings
from rtune._config import (
    DEFAULT_STORAGE_PATH,
    CheckpointConfig,
    FailureConfig,
    RunConfig,
    TuneConfig,
)
from rtune._execution.resources import with_resources
from rtune.analysis import ExperimentAnalysis
from rtune.error import TuneError

_NOT_YET = (
    "progress_reporter",
    "log_to_file",
    "sync_config",
    "export_formats",
    "resume_config",
    "chdir_to_trial_dir",
)
_RESUME = (None, False, True, "AUTO", "LOCAL", "REMOTE", "ERRORED_ONLY", "AUTO+ERRORED")


def run(
    run_or_experiment: Any,
    *,
    name: str | None = None,
    metric: str | None = None,
    mode: str | None = None,
    stop: Any = None,
    time_budget_s: float | None = None,
    config: dict | None = None,
    resources_per_trial: Any = None,
    num_samples: int = 1,
    storage_path: str | None = None,
    storage_filesystem: Any = None,
    search_alg: Any = None,
    scheduler: Any = None,
    checkpoint_config: CheckpointConfig | None = None,
    verbose: int | None = None,
    trial_name_creator: Any = None,
    trial_dirname_creator: Any = None,
    max_failures: int = 0,
    fail_fast: bool | str = False,
    restore: str | None = None,
    resume: bool | str | None = None,
    reuse_actors: bool | None = None,
    raise_on_failed_trial: bool = True,
    callbacks: list | None = None,
    max_concurrent_trials: int | None = None,
    keep_checkpoints_num: int | None = None,
    checkpoint_score_attr: str | None = None,
    checkpoint_freq: int = 0,
    checkpoint_at_end: bool = False,
    local_dir: str | None = None,
    **unsupported: Any,
) -> ExperimentAnalysis:
    from rtune.tuner import Tuner

    _refuse(unsupported)
    if resume not in _RESUME:
        raise ValueError(f"tune.run: resume must be one of {_RESUME}, got {resume!r}")
    storage_path = storage_path or local_dir
    trainable = run_or_experiment
    if resources_per_trial is not None:
        trainable = with_resources(trainable, resources_per_trial)
    if checkpoint_config is None:
        order = "min" if (checkpoint_score_attr or "").startswith("min-") else "max"
        checkpoint_config = CheckpointConfig(
            num_to_keep=keep_checkpoints_num,
            checkpoint_score_attribute=(checkpoint_score_attr or "").removeprefix("min-") or None,
            checkpoint_score_order=order,
            checkpoint_frequency=checkpoint_freq,
            checkpoint_at_end=checkpoint_at_end,
        )
    existing = restore or _existing(storage_path, name, storage_filesystem, resume)
    if existing:
        errored = resume in ("ERRORED_ONLY", "AUTO+ERRORED")
        tuner = Tuner.restore(
            existing,
            trainable=trainable,
            resume_unfinished=resume != "ERRORED_ONLY",
            resume_errored=errored,
            storage_filesystem=storage_filesystem,
        )
    else:
        tuner = Tuner(
            trainable,
            param_space=config or {},
            tune_config=TuneConfig(
                metric=metric,
                mode=mode,
                search_alg=search_alg,
                scheduler=scheduler,
                num_samples=num_samples,
                max_concurrent_trials=max_concurrent_trials,
                time_budget_s=time_budget_s,
                reuse_actors=True if reuse_actors is None else reuse_actors,
                trial_name_creator=trial_name_creator,
                trial_dirname_creator=trial_dirname_creator,
            ),
            run_config=RunConfig(
                name=name,
                storage_path=storage_path,
                storage_filesystem=storage_filesystem,
                stop=stop,
                checkpoint_config=checkpoint_config,
                failure_config=FailureConfig(max_failures=max_failures, fail_fast=fail_fast),
                callbacks=callbacks,
                verbose=1 if verbose is None else verbose,
            ),
        )
    grid = tuner.fit()
    analysis = ExperimentAnalysis(
        grid.experiment_path,
        storage_filesystem=storage_filesystem,
        default_metric=metric,
        default_mode=mode,
    )
    failed = [t for t in analysis.trials if t.status == "ERROR"]
    if failed and raise_on_failed_trial:
        raise TuneError(f"Trials did not complete: {', '.join(str(t) for t in failed)}")
    return analysis


def _refuse(unsupported: dict) -> None:
    for key in unsupported:
        if key in _NOT_YET:
            raise NotImplementedError(f"tune.run({key}=...) is not supported by rtune yet")
        raise TypeError(f"tune.run() got an unexpected keyword argument {key!r}")


def _existing(
    storage_path: str | None, name: str | None, filesystem: Any, resume: Any
) -> str | None:
    """The experiment `resume` continues: `storage_path/name` where it exists (AUTO and the
    others start a new one where it does not; True insists on one)."""
    if resume in (None, False):
        return None
    if not name:
        raise ValueError("tune.run(resume=...) needs the experiment's name")
    from rtune._durable.storage import Storage

    base = storage_path or _settings.storage_path() or DEFAULT_STORAGE_PATH
    storage = Storage.at(base, filesystem).child(name)
    if storage.exists("tuner.pkl"):
        return storage.uri()
    if resume is True:
        raise ValueError(f"tune.run(resume=True): there is no experiment at {storage.uri()}")
    return None
