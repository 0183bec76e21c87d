"""Trial schedulers and the decision contract: strategy objects that only return decisions; the
engine acts on them.

A scheduler answers each result of a trial with a decision:
- `CONTINUE`: the trial goes on;
- `STOP`: it ends now (TERMINATED, with this result as its last);
- `PAUSE`: it stops at its next iteration boundary, with a checkpoint there (class trainables;
  a function trainable resumes from the last checkpoint it reported), and waits PAUSED until
  `choose_trial_to_run` picks it again;
- an `Exploit`: it stops like a PAUSE and starts again from a committed checkpoint of another
  trial, with a new config (population-based training). The engine keeps that checkpoint
  (against the donor's retention) until the trial has committed one of its own.
`choose_trial_to_run` picks among the waiting trials: pending ones first in line, then the
trials this scheduler paused. The methods take Ray Tune's arguments (`tune_controller`, `trial`),
so a scheduler written for Ray Tune runs unchanged; the trials are views of the engine's records
(`rtune/_execution/views.py`) that may be kept in the scheduler's state.

What a scheduler needs of the engine is declared in `needs`, not read from its type, so a
wrapper keeps the fast paths of what it wraps: a scheduler that does not decide each result
lets trials run ahead of the controller's acknowledgements, and one that runs trials in order
lets short trials be queued on busy actors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cloudpickle


@dataclass(frozen=True)
class Exploit:
    """Start the trial again from `donor`'s committed checkpoint (`checkpoint`: its path, as in
    the donor's checkpoint records; None for the donor's latest when this is decided), with
    `config`. `log`: write it to the experiment's PBT policy files (`pbt_policy_<trial>.txt`,
    `pbt_global.txt`), which `PopulationBasedTrainingReplay` reads; the experiment state records
    every exploit in any case."""

    donor: str
    config: dict = field(default_factory=dict)
    checkpoint: str | None = None
    log: bool = True


Decision = str | Exploit  # CONTINUE, STOP, PAUSE, or an Exploit


@dataclass(frozen=True)
class SchedulerNeeds:
    """What a scheduler needs of the engine.

    `decides_each_result`: each result is decided before its trial goes on (a trial never runs
    ahead of the controller's answer). `runs_in_order`: `choose_trial_to_run` always picks the
    first waiting trial, so trials may be handed to actors ahead of time in that order.
    `only_stops`: its decisions are CONTINUE or STOP, never PAUSE or an Exploit, so a trial may
    run a few milliseconds past a result before hearing its decision, and a STOP cuts it back
    to that result (results on, with the same ends, without a round trip each)."""

    decides_each_result: bool = True
    runs_in_order: bool = False
    only_stops: bool = False


class TrialScheduler:
    """Ray Tune's scheduler interface: the engine calls these with `tune_controller` (the run:
    `get_trials()`) and `trial` (a trial's `trial_id`, `config`, `status`, `last_result`,
    `checkpoint`). The base class schedules first in, first out."""

    CONTINUE = "CONTINUE"
    PAUSE = "PAUSE"
    STOP = "STOP"

    @property
    def needs(self) -> SchedulerNeeds:
        """By default read from what a subclass overrides: one that answers results decides
        each; one that chooses trials may not run them in order. Declare it to do better."""
        cls = type(self)
        return SchedulerNeeds(
            decides_each_result=cls.on_trial_result is not TrialScheduler.on_trial_result,
            runs_in_order=cls.choose_trial_to_run is TrialScheduler.choose_trial_to_run,
        )

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        pass

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> Decision:
        return self.CONTINUE

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict | None) -> None:
        pass

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        pass

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        pass

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        """The trial to start next (a pending one first, then one this scheduler paused); None
        to start none now."""
        trials = tune_controller.get_trials()
        for status in ("PENDING", "PAUSED"):
            for trial in trials:
                if trial.status == status:
                    return trial
        return None

    def get_state(self) -> dict:
        """Everything to continue later; stored with the experiment state at every write."""
        return dict(self.__dict__)

    def set_state(self, state: dict) -> None:
        self.__dict__.update(state)

    def save(self, checkpoint_path: str) -> None:
        """Ray Tune's way to keep a scheduler: its state, pickled to a file."""
        with open(checkpoint_path, "wb") as out:
            cloudpickle.dump(self.get_state(), out)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as src:
            self.set_state(cloudpickle.load(src))

    def debug_string(self) -> str:
        return f"Using {type(self).__name__.replace('Scheduler', '')} scheduling algorithm."


class FIFOScheduler(TrialScheduler):
    """First in, first out: trials run in the order the searcher created them, to completion."""

    def debug_string(self) -> str:
        return "Using FIFO scheduling algorithm."


def check_mode(owner: str, mode: Any) -> None:
    if mode is not None and mode not in ("min", "max"):
        raise ValueError(f"{owner}: mode must be 'min' or 'max', got {mode!r}")


def take_metric_and_mode(scheduler: Any, metric: str | None, mode: str | None) -> bool:
    """TuneConfig's metric and mode into a scheduler's `_metric` / `_mode` where its constructor
    gave none; False where one is set already and differs (Ray Tune's answer to a conflict; the
    same ones again, as a restored Tuner passes them, are fine)."""
    check_mode(type(scheduler).__name__, mode)
    if (scheduler._metric and metric and metric != scheduler._metric) or (
        scheduler._mode and mode and mode != scheduler._mode
    ):
        return False
    scheduler._metric = scheduler._metric or metric
    scheduler._mode = scheduler._mode or mode
    return True
