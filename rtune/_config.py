"""User-facing configuration records, named and shaped like Ray Tune's.

They are plain dataclasses so that they pickle into the experiment metadata and can be compared on
restore. Validation happens in `validate()`, called by `Tuner` before any work starts, so a user's
mistake is reported with the field's name and never after trials have run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DEFAULT_STORAGE_PATH = "~/rtune_results"


@dataclass
class CheckpointConfig:
    """Which trial checkpoints to keep and when class trainables save them."""

    num_to_keep: int | None = None
    checkpoint_score_attribute: str | None = None
    checkpoint_score_order: str = "max"
    checkpoint_frequency: int = 0
    checkpoint_at_end: bool | None = None

    def validate(self) -> None:
        if self.num_to_keep is not None and (
            not isinstance(self.num_to_keep, int) or self.num_to_keep < 1
        ):
            raise ValueError(
                "CheckpointConfig.num_to_keep must be None or an int >= 1, "
                f"got {self.num_to_keep!r}"
            )
        if self.checkpoint_score_order not in ("max", "min"):
            raise ValueError(
                "CheckpointConfig.checkpoint_score_order must be 'max' or 'min', "
                f"got {self.checkpoint_score_order!r}"
            )
        if not isinstance(self.checkpoint_frequency, int) or self.checkpoint_frequency < 0:
            raise ValueError(
                "CheckpointConfig.checkpoint_frequency must be an int >= 0, "
                f"got {self.checkpoint_frequency!r}"
            )


@dataclass
class FailureConfig:
    """How trial failures are retried, and whether one failure ends the run."""

    max_failures: int = 0
    fail_fast: bool | str = False

    def validate(self) -> None:
        if not isinstance(self.max_failures, int) or self.max_failures < -1:
            raise ValueError(
                f"FailureConfig.max_failures must be an int >= -1, got {self.max_failures!r}"
            )
        if self.fail_fast not in (True, False, "raise"):
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
        if self.verbose not in (0, 1, 2, 3):
            raise ValueError(f"RunConfig.verbose must be 0, 1, 2 or 3, got {self.verbose!r}")
        if self.checkpoint_config is None:
            self.checkpoint_config = CheckpointConfig()
        if self.failure_config is None:
            self.failure_config = FailureConfig()
        self.checkpoint_config.validate()
        self.failure_config.validate()


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
        if self.mode not in (None, "min", "max"):
            raise ValueError(f"TuneConfig.mode must be 'min' or 'max', got {self.mode!r}")
        if self.mode is not None and self.metric is None:
            raise ValueError("TuneConfig.mode is set but TuneConfig.metric is not")
        if self.max_concurrent_trials is not None and (
            not isinstance(self.max_concurrent_trials, int) or self.max_concurrent_trials < 1
        ):
            raise ValueError(
                "TuneConfig.max_concurrent_trials must be None or an int >= 1, "
                f"got {self.max_concurrent_trials!r}"
            )
        if self.time_budget_s is not None:
            if hasattr(self.time_budget_s, "total_seconds"):
                self.time_budget_s = self.time_budget_s.total_seconds()
            if not isinstance(self.time_budget_s, (int, float)) or self.time_budget_s <= 0:
                raise ValueError(
                    "TuneConfig.time_budget_s must be a positive number, "
                    f"got {self.time_budget_s!r}"
                )
