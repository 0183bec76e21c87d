"""What the driver and the controller actor send each other: the first trials the driver started
(handed to the controller's run), the status the controller answers each poll with, and the
summary its run returns. Typed, so a misspelt field fails where it is read rather than as a
missing key at the end of a long run.

The controller builds these and the driver reads them, so they live here, below both: the
driver imports rtune._execution, never the reverse. They cross Ray by pickle (a status once a
poll, a summary once a run): plain dataclasses of builtins, pickled by reference to this module,
with nothing computed on unpickling.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from rtune._durable.trial import Trial


@dataclass
class FirstTrials:
    """What the driver started before the controller was up (rtune/_driver/first_trials.py):
    its trial actors, and the trials already running on some of them with the poll that awaits
    their news (refs in a dataclass: Ray passes them on, unresolved). Filled in as the driver
    starts them, so not frozen."""

    actors: list
    trials: list[Trial] = field(default_factory=list)
    running: list[tuple[Any, str, Any]] = field(default_factory=list)  # (actor, trial id, poll)
    # what user code raised while the driver made trials: (exception, traceback, where)
    error: tuple[BaseException, str, str] | None = None


@dataclass(frozen=True)
class StatusRow:
    """One trial in the status table, its config and last result copied when the loop published."""

    name: str
    status: str
    config: dict[str, Any]
    last_result: dict[str, Any]


@dataclass(frozen=True)
class Status:
    """The loop's published view of the run. `events` and `warnings` are the journal's lines
    after the indices the poll asked from; empty in the snapshot the loop publishes, filled in by
    the controller's `status()` per call."""

    counts: dict[str, int]  # trials by status
    num_trials: int
    total_trials: int | None  # the searcher's total, where it knows one
    rows: tuple[StatusRow, ...]
    requested: dict[str, float]  # resources the running trials asked for
    elapsed_s: float
    drain_reason: str | None  # why the run is stopping; None while it is not
    controller_pid: int
    scheduler: str  # the scheduler's debug string
    done: bool  # the loop has ended
    events: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def status_before_start() -> Status:
    """What a poll gets before the loop first published: no trials yet, this process's pid."""
    return Status(
        counts={},
        num_trials=0,
        total_trials=None,
        rows=(),
        requested={},
        elapsed_s=0.0,
        drain_reason=None,
        controller_pid=os.getpid(),
        scheduler="",
        done=False,
    )


@dataclass(frozen=True)
class Summary:
    """What the controller's `run()` returns once the loop has ended and the actors are gone.

    `run_stats` stays a dict: it is `Tuner.last_run_stats`, which benchmarks and tests read by
    key (state_write_s, controller_run_s, results_seen, ...)."""

    trials: list[Trial]  # pickled whole: cheaper than state records
    fatal: bytes | None  # the error fit() raises, packed (rtune._durable.state.pack)
    fatal_tb: str | None
    stop_reason: str | None
    run_stats: dict[str, float]
    warnings: list[str]  # all of the run's, from the first
    drain_is_final: bool  # the stop ended the experiment: nothing to resume
    events: list[str]  # all of the run's, from the first
    status: Status  # the final one, printed at the end
    user_objects: dict[str, bytes]  # searcher/scheduler/stopper final state, packed
