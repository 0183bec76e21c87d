"""The messages between the controller and its trial actors.

The controller sends a `Poll` (acknowledgements with a stop decision for the trials an actor
holds, and new trials to queue); the actor answers with a `TrialNews` per trial that has news.
A trial's results travel as the user's own dicts (with the fields rtune fills in, as Ray Tune's);
what rtune adds about them (a checkpoint committed with a result, or between two) travels beside
them as `CheckpointNote`s, so no key of rtune's is ever put into a user's result.

Plain dataclasses: a poll's reply may carry thousands of results, and a dict per result pickles
in half the time of an object per result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from rtune._durable.storage import Storage

# How a trial's launch ended, as its actor saw it.
FINISHED = "finished"  # the trainable returned (or met its stop criteria)
STOPPED = "stopped"  # it stopped at a stop decision or a drain
SKIPPED = "skipped"  # dropped before it began (taken back, or a drain reached it queued)
ERROR = "error"  # the user's code raised: `error` holds the traceback
STORAGE_ERROR = "storage_error"  # storage failed through its retries: not the trial's fault
Outcome = Literal["finished", "stopped", "skipped", "error", "storage_error"]

# How a trial is asked to stop: at its next iteration boundary with a checkpoint there (class
# trainables) and its last result recorded ("drain"), or with the result in flight dropped, as
# a run's end does in Ray Tune ("finish").
DRAIN = "drain"
FINISH = "finish"
StopMode = Literal["drain", "finish"]


@dataclass
class TrialSpec:
    """Everything a trial actor needs to run one trial; built by the controller's intake."""

    trial_id: str
    trial_name: str
    trial_relpath: str
    experiment_name: str
    experiment_tag: str
    config: dict
    storage: Storage | None  # set by the trial actor, which holds the experiment's Storage
    epoch: int = 0
    restore_checkpoint: str | None = None
    restore_iteration: int = 0
    restore_time_total: float = 0.0
    local_stop: dict | None = None
    ack_window: int = 1
    # > 0: the controller's decisions on results only ever stop a trial, so it need not wait
    # for each: it runs on while its oldest unacknowledged result is younger than this (and
    # fewer than ack_window are unacknowledged). A stop decided on a result it ran past cuts
    # it back to that result (rtune/_execution/decisions.py).
    ack_lead_s: float = 0.0
    checkpoint_frequency: int = 0
    checkpoint_at_end: bool = False
    resources: dict = field(default_factory=dict)


@dataclass
class CheckpointNote:
    """A checkpoint the trial committed. `after`: how many of the batch's results came before
    it; `with_result`: committed with `results[after - 1]`, else taken between iterations (a
    class trainable asked to stop), after its last result was reported."""

    relpath: str
    training_iteration: int
    time_total_s: float
    with_result: bool
    after: int = 0


@dataclass
class TrialNews:
    """What a trial actor sends about one trial with a poll's reply."""

    results: list[dict] = field(default_factory=list)
    checkpoints: list[CheckpointNote] = field(default_factory=list)
    outcome: Outcome | None = None  # None: it runs on
    error: str | None = None


@dataclass
class Poll:
    """What the controller sends with each poll: for each trial the actor holds, whether to
    stop (None: go on; every result fetched so far is acknowledged), and trials to queue."""

    acks: dict[str, StopMode | None] = field(default_factory=dict)
    trials: list[TrialSpec] = field(default_factory=list)
