"""User-facing configuration records, named and shaped like Ray Tune's.

They are plain dataclasses so that they pickle into the experiment metadata and can be compared on
restore. Validation happens in `validate()`, called by `Tuner` before any work starts, so a user's
mistake is reported with the field's name and never after trials have run.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from numbers import Integral
from typing import Any

import cloudpickle

DEFAULT_STORAGE_PATH = "~/rtune_results"


def _is_int(value: Any) -> bool:
    """An int and not a bool (True is an int to Python, never a count to a user)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_positive_seconds(value: Any) -> bool:
    """A number of seconds > 0 that a clock can add: not NaN (it would never run out), not a bool,
    not an int too large for a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return float(value) > 0
    except OverflowError:
        return False


def _is_seconds(value: Any) -> bool:
    """A number of seconds >= 0 (infinity too: retry for ever), not NaN, not a bool."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return float(value) >= 0
    except OverflowError:
        return False


def _is_one_of(value: Any, allowed: tuple[str, ...]) -> bool:
    """`value in allowed` for strings only: `1 in (True, ...)` and numpy arrays never match."""
    return isinstance(value, str) and value in allowed


@dataclass
class CheckpointConfig:
    """Which trial checkpoints to keep and when class trainables save them."""

    num_to_keep: int | None = None
    checkpoint_score_attribute: str | None = None
    checkpoint_score_order: str = "max"
    checkpoint_frequency: int = 0
    checkpoint_at_end: bool | None = None

    def validate(self) -> None:
        if self.num_to_keep is not None and (not _is_int(self.num_to_keep) or self.num_to_keep < 1):
            raise ValueError(
                "CheckpointConfig.num_to_keep must be None or an int >= 1, "
                f"got {self.num_to_keep!r}"
            )
        if not _is_one_of(self.checkpoint_score_order, ("max", "min")):
            raise ValueError(
                "CheckpointConfig.checkpoint_score_order must be 'max' or 'min', "
                f"got {self.checkpoint_score_order!r}"
            )
        if not _is_int(self.checkpoint_frequency) or self.checkpoint_frequency < 0:
            raise ValueError(
                "CheckpointConfig.checkpoint_frequency must be an int >= 0, "
                f"got {self.checkpoint_frequency!r}"
            )
        if self.checkpoint_score_attribute is not None and (
            not isinstance(self.checkpoint_score_attribute, str)
            or not self.checkpoint_score_attribute
        ):
            raise TypeError(
                "CheckpointConfig.checkpoint_score_attribute must be None or a metric name, "
                f"got {self.checkpoint_score_attribute!r}"
            )
        if self.checkpoint_at_end is not None and not isinstance(self.checkpoint_at_end, bool):
            raise TypeError(
                "CheckpointConfig.checkpoint_at_end must be None, True or False, "
                f"got {self.checkpoint_at_end!r}"
            )


@dataclass
class FailureConfig:
    """How trial failures are retried, and whether one failure ends the run."""

    max_failures: int = 0
    fail_fast: bool | str = False

    def validate(self) -> None:
        if not _is_int(self.max_failures) or self.max_failures < -1:
            raise ValueError(
                f"FailureConfig.max_failures must be an int >= -1, got {self.max_failures!r}"
            )
        if not isinstance(self.fail_fast, bool) and not _is_one_of(self.fail_fast, ("raise",)):
            raise ValueError(
                f"FailureConfig.fail_fast must be True, False or 'raise', got {self.fail_fast!r}"
            )


@dataclass
class RunConfig:
    """Where the experiment lives and when it stops."""

    name: str | None = None
    storage_path: str | None = None
    storage_filesystem: Any = None
    stop: dict | Callable | Any = None
    checkpoint_config: CheckpointConfig = field(default_factory=CheckpointConfig)
    failure_config: FailureConfig = field(default_factory=FailureConfig)
    verbose: int = 1
    callbacks: list | None = None
    # rtune's own: CSV, JSON and TensorBoard files in each trial's directory, as Ray Tune writes
    # by default (rtune/logger/); False: only the callbacks given
    default_loggers: bool = True
    # rtune's own: stored with the experiment, so a restore runs as the run did. None: from the
    # environment (rtune/_settings.py). Defaults are needed: an experiment stored before a field
    # existed unpickles without it and reads the class default.
    storage_retry_s: float | None = None
    max_pending_trials: int | None = None

    def validate(self) -> None:
        if self.name is not None:
            if not isinstance(self.name, str) or not self.name.strip():
                raise ValueError(f"RunConfig.name must be a non-empty string, got {self.name!r}")
            if "/" in self.name or self.name in (".", ".."):
                raise ValueError(
                    f"RunConfig.name {self.name!r} must be a single directory name "
                    "(no '/'); put the parent directory in RunConfig.storage_path"
                )
        if self.storage_path is not None and not isinstance(self.storage_path, (str, os.PathLike)):
            raise TypeError(
                "RunConfig.storage_path must be a path or URI string, "
                f"got {type(self.storage_path).__name__}"
            )
        if self.storage_retry_s is not None and not _is_seconds(self.storage_retry_s):
            raise ValueError(
                "RunConfig.storage_retry_s must be None or a number of seconds >= 0, "
                f"got {self.storage_retry_s!r}"
            )
        if self.max_pending_trials is not None and (
            not _is_int(self.max_pending_trials) or self.max_pending_trials < 1
        ):
            raise ValueError(
                "RunConfig.max_pending_trials must be None or an int >= 1, "
                f"got {self.max_pending_trials!r}"
            )
        if not isinstance(self.default_loggers, bool):
            raise ValueError(
                f"RunConfig.default_loggers must be True or False, got {self.default_loggers!r}"
            )
        self._check_callbacks()
        if self.verbose not in (0, 1, 2, 3):
            raise ValueError(f"RunConfig.verbose must be 0, 1, 2 or 3, got {self.verbose!r}")
        if self.checkpoint_config is None:
            self.checkpoint_config = CheckpointConfig()
        if self.failure_config is None:
            self.failure_config = FailureConfig()
        if not isinstance(self.checkpoint_config, CheckpointConfig):
            raise TypeError(
                "RunConfig.checkpoint_config must be a rtune.CheckpointConfig, "
                f"got {type(self.checkpoint_config).__name__}"
            )
        if not isinstance(self.failure_config, FailureConfig):
            raise TypeError(
                "RunConfig.failure_config must be a rtune.FailureConfig, "
                f"got {type(self.failure_config).__name__}"
            )
        self.checkpoint_config.validate()
        self.failure_config.validate()

    def _check_callbacks(self) -> None:
        """Callbacks are Callback objects that pickle: they run in the controller actor."""
        from rtune.callback import Callback

        if self.callbacks is None:
            return
        if not isinstance(self.callbacks, (list, tuple)):
            raise TypeError(
                f"RunConfig.callbacks must be a list of rtune.Callback objects, "
                f"got {type(self.callbacks).__name__}"
            )
        for index, callback in enumerate(self.callbacks):
            where = f"RunConfig.callbacks[{index}]"
            if isinstance(callback, type):
                raise TypeError(f"{where} is the class {callback.__name__}; pass an instance")
            if not isinstance(callback, Callback):
                raise TypeError(
                    f"{where} ({type(callback).__name__}) is not a rtune.Callback: subclass "
                    "tune.Callback (or tune.logger.LoggerCallback)"
                )
            try:
                cloudpickle.dumps(callback)
            except Exception as exc:
                raise TypeError(
                    f"{where} ({type(callback).__name__}) cannot be pickled, and callbacks run "
                    f"in the controller actor: {type(exc).__name__}: {exc}"
                ) from exc


@dataclass
class TuneConfig:
    """How many trials, in what order and how many at once."""

    metric: str | None = None
    mode: str | None = None
    search_alg: Any = None
    scheduler: Any = None
    num_samples: int = 1
    max_concurrent_trials: int | None = None
    time_budget_s: float | None = None
    reuse_actors: bool = True
    seed: int | None = None
    trial_name_creator: Callable | None = None
    trial_dirname_creator: Callable | None = None

    def validate(self) -> None:
        if isinstance(self.num_samples, bool) or not isinstance(self.num_samples, int):
            raise TypeError(
                f"TuneConfig.num_samples must be an int, got {type(self.num_samples).__name__}"
            )
        if self.num_samples < 1 and self.num_samples != -1:
            raise ValueError(f"TuneConfig.num_samples must be >= 1, got {self.num_samples}")
        if self.metric is not None and (not isinstance(self.metric, str) or not self.metric):
            raise TypeError(
                f"TuneConfig.metric must be None or a metric name (str), got {self.metric!r}"
            )
        if self.mode is not None and not _is_one_of(self.mode, ("min", "max")):
            raise ValueError(f"TuneConfig.mode must be 'min' or 'max', got {self.mode!r}")
        if self.mode is not None and self.metric is None:
            raise ValueError("TuneConfig.mode is set but TuneConfig.metric is not")
        if self.max_concurrent_trials is not None and (
            not _is_int(self.max_concurrent_trials) or self.max_concurrent_trials < 1
        ):
            raise ValueError(
                "TuneConfig.max_concurrent_trials must be None or an int >= 1, "
                f"got {self.max_concurrent_trials!r}"
            )
        if self.time_budget_s is not None:
            if isinstance(self.time_budget_s, datetime.timedelta):
                self.time_budget_s = self.time_budget_s.total_seconds()
            if not _is_positive_seconds(self.time_budget_s):
                raise ValueError(
                    "TuneConfig.time_budget_s must be a positive number, "
                    f"got {self.time_budget_s!r}"
                )
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, Integral)
        ):
            raise TypeError(
                f"TuneConfig.seed must be None or an int, got {type(self.seed).__name__}"
            )
        if self.scheduler is not None:
            from rtune.schedulers import TrialScheduler

            if not isinstance(self.scheduler, TrialScheduler):
                raise TypeError(
                    "TuneConfig.scheduler must be a rtune TrialScheduler, "
                    f"got {type(self.scheduler).__name__}"
                )
        for name in ("trial_name_creator", "trial_dirname_creator"):
            creator = getattr(self, name)
            if creator is not None and not callable(creator):
                raise TypeError(
                    f"TuneConfig.{name} must be None or a function of the trial, "
                    f"got {type(creator).__name__}"
                )
