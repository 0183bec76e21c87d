"""What the driver hands the controller actor to run an experiment (picklable, sent once)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rtune._durable.lease import LeaseRecord
from rtune._durable.storage import Storage
from rtune._durable.trial import Trial
from rtune.search import Searcher
from rtune.stopper import Stopper


@dataclass
class ExperimentSetup:
    """What the driver hands the controller; picklable."""

    storage: Storage
    experiment_name: str
    experiment_uid: str
    trainable_name: str
    trainable_holder: list  # [ObjectRef]: a list, so Ray passes the ref instead of resolving it
    trainable_resources: Any
    searcher: Searcher
    scheduler: Any
    stopper: Stopper | None
    metric: str | None
    mode: str | None
    max_concurrent_trials: int | None
    time_budget_s: float | None
    reuse_actors: bool
    checkpoint_config: Any
    failure_config: Any
    trial_name_creator: Any = None
    trial_dirname_creator: Any = None
    restored_trials: list[Trial] = field(default_factory=list)
    max_trials: int | None = None
    searcher_finished: bool = False
    known_trial_dirs: set = field(default_factory=set)
    state_seq: int = 0
    state_file: int = 0  # which of the two snapshot files the next snapshot replaces
    restored_state_base: int | None = None  # the seq of the snapshot a restore read
    # actors per resource shape that wait for resources beyond what the cluster holds now: the
    # demand an autoscaler sees (RunConfig.max_pending_trials, else RTUNE_MAX_PENDING_TRIALS)
    pending_demand: int = 1
    lease: LeaseRecord | None = None  # taken by the driver (rtune/_durable/lease.py)
    # called with each lifecycle event, off the loop's thread (rtune/_execution/events.py)
    listeners: list = field(default_factory=list)
    # param_space's constants and search-parameter paths, to complete a searcher's suggestions
    # with (rtune/search/suggestions.py); None: its configs are whole (BasicVariantGenerator)
    suggestion_constants: dict | None = None
    suggestion_variables: list = field(default_factory=list)
    # RunConfig.callbacks (the first `user_callbacks`) and the default loggers after them
    # (rtune/_execution/callbacks.py); `callback_setup`: what their `setup()` hook is given
    callbacks: list = field(default_factory=list)
    user_callbacks: int = 0
    callback_setup: dict = field(default_factory=dict)
