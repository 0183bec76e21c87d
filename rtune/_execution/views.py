"""What a scheduler is handed: Ray Tune's `trial` and `tune_controller` arguments, as views of the
engine's own records.

A scheduler written for Ray Tune keeps trials in its state (HyperBand's brackets hold them, ASHA
keys on them), and that state is stored with the experiment. So a view is one object per trial id
in a process (schedulers compare and hash them by identity), reads the trial's record live, and
pickles as its trial id alone: unpickled elsewhere (the state a restore reads, the scheduler sent
to the controller actor) it is that process's view of the same trial, bound to the record there.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from rtune._durable import trial as T
from rtune._durable.trial import Trial
from rtune.checkpoint import Checkpoint

_VIEWS: weakref.WeakValueDictionary[str, TrialView] = weakref.WeakValueDictionary()


class TrialView:
    """A trial, with the fields Ray Tune documents for schedulers."""

    __slots__ = ("trial_id", "_record", "_storage", "__weakref__")

    PENDING, RUNNING, PAUSED = T.PENDING, T.RUNNING, T.PAUSED
    TERMINATED, ERROR = T.TERMINATED, T.ERROR

    def __init__(self, trial_id: str):
        self.trial_id = trial_id
        self._record: Trial | None = None
        self._storage: Any = None

    def __reduce__(self) -> tuple:
        return (view_for, (self.trial_id,))

    def __repr__(self) -> str:
        return self.trial_name if self._record is not None else self.trial_id

    __str__ = __repr__

    @property
    def record(self) -> Trial:
        if self._record is None:
            raise RuntimeError(
                f"trial {self.trial_id} is not part of the run in this process: a scheduler's "
                "saved trials are usable once the run that holds them starts"
            )
        return self._record

    @property
    def trial_name(self) -> str:
        return self.record.trial_name

    @property
    def config(self) -> dict:
        return self.record.config

    @property
    def status(self) -> str:
        return self.record.status

    @property
    def last_result(self) -> dict:
        return self.record.last_result

    @property
    def experiment_tag(self) -> str:
        return self.record.experiment_tag

    @property
    def checkpoint(self) -> Checkpoint | None:
        """The trial's newest committed checkpoint, where it would resume from."""
        entry = self.record.latest_checkpoint
        if entry is None or self._storage is None:
            return None
        return Checkpoint(self._storage.path(entry["path"]), self._storage.filesystem)


def view_for(trial_id: str) -> TrialView:
    """This process's view of the trial (made unbound if the run has not bound it yet)."""
    view = _VIEWS.get(trial_id)
    if view is None:
        view = _VIEWS[trial_id] = TrialView(trial_id)
    return view


def view_of(trial: Trial, storage: Any = None) -> TrialView:
    """The view of a record, bound to it (a record replaced by a restore's rebinds)."""
    view = view_for(trial.trial_id)
    view._record = trial
    if storage is not None:
        view._storage = storage
    return view


class ControllerView:
    """Ray Tune's `tune_controller` argument: the run's trials, as views; and `stop_trial`,
    which asks for a trial's end, and `exploit_trial` (rtune's), which has a waiting trial take
    another's checkpoint (where `on_stop` / `on_exploit` are given: the calls that decide on
    results, completions and errors), carried out by the engine once the scheduler's call
    returns."""

    def __init__(
        self,
        trials: dict[str, Trial],
        storage: Any = None,
        on_stop: Callable[[str], None] | None = None,
        on_exploit: Callable[[str, Any], None] | None = None,
    ):
        self._trials = trials
        self._storage = storage
        self._on_stop = on_stop
        self._on_exploit = on_exploit

    def get_trials(self) -> list[TrialView]:
        return [view_of(trial, self._storage) for trial in self._trials.values()]

    def get_live_trials(self) -> list[TrialView]:
        """The trials that have not ended (PENDING, RUNNING, PAUSED)."""
        return [
            view_of(trial, self._storage)
            for trial in self._trials.values()
            if trial.status in T.UNFINISHED
        ]

    def stop_trial(self, trial: TrialView) -> None:
        """End `trial` (Ray Tune's): a running one stops at the result it is at, as at a STOP;
        a paused or pending one ends where it waits. Asked now, done when this call returns."""
        if self._on_stop is None:
            raise RuntimeError(
                "tune_controller.stop_trial() can be called from on_trial_result, "
                "on_trial_complete and on_trial_error only"
            )
        self._on_stop(trial.trial_id)

    def exploit_trial(self, trial: TrialView, exploit: Any) -> None:
        """Have `trial`, which waits (paused or pending), take `exploit`'s donor checkpoint and
        config now, as a running trial does when its result is answered with the `Exploit`:
        how synchronous PBT exploits the population it paused. Recorded when this call returns;
        the trial resumes from there when it is chosen to run."""
        if self._on_exploit is None:
            raise RuntimeError(
                "tune_controller.exploit_trial() can be called from on_trial_result, "
                "on_trial_complete and on_trial_error only"
            )
        self._on_exploit(trial.trial_id, exploit)

    def get_trial(self, trial_id: str) -> TrialView | None:
        trial = self._trials.get(trial_id)
        return None if trial is None else view_of(trial, self._storage)
