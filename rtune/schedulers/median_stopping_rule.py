"""The median stopping rule (Vizier's, as Ray Tune documents it): a trial whose best result so
far is worse than the median of the other trials' running averages, at the same point in time,
is stopped (or paused, with `hard_stop=False`).

What is compared, at a result of trial T with time `now = result[time_attr]`:
- T's best metric value over all its results so far, this one included;
- the median, over every other trial that has at least one result with `time_attr <= now`, of
  that trial's mean metric value over those results (its running average up to `now`). Trials
  that completed, stopped or failed count: their results are kept for the whole run.
T is checked only once `now >= grace_period` and at least `min_samples_required` other trials
have such results. A result worse than the median (strictly: an equal one goes on) stops T.

`min_time_slice` spaces the checks: after T was checked at time `t`, it is not checked again
before `time_attr` reaches `t + min_time_slice` (0: every result is checked).

With `hard_stop=False` a trial is paused instead; once paused it is never checked again, so when
`choose_trial_to_run` resumes it (pending trials first, then paused ones) it runs to its end, as
Ray Tune documents ("paused trials will be resumed and allowed to run FIFO").

All state is plain data keyed by trial id (results, last check times, the stopped trials), so
`get_state`/`set_state`, stored with the experiment, continue a run with the same decisions.
"""

from __future__ import annotations

import copy
import numbers
import statistics
from typing import Any

from rtune.schedulers.trial_scheduler import Decision, FIFOScheduler, SchedulerNeeds

_MODES = ("min", "max")


def _check_number(name: str, value: Any, minimum: float, integer: bool = False) -> None:
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind) or value < minimum:
        what = "an integer" if integer else "a number"
        raise ValueError(f"MedianStoppingRule: {name} must be {what} >= {minimum}, got {value!r}")


def _check_mode(mode: Any) -> None:
    if mode is not None and mode not in _MODES:
        raise ValueError(f"MedianStoppingRule: mode must be 'min' or 'max', got {mode!r}")


class MedianStoppingRule(FIFOScheduler):
    """Stops trials that do worse than the median of the others (see the module docstring)."""

    def __init__(
        self,
        time_attr: str = "time_total_s",
        metric: str | None = None,
        mode: str | None = None,
        grace_period: float = 60.0,
        min_samples_required: int = 3,
        min_time_slice: float = 0,
        hard_stop: bool = True,
    ):
        if not isinstance(time_attr, str) or not time_attr:
            raise ValueError(f"MedianStoppingRule: time_attr must be a key name, got {time_attr!r}")
        if metric is not None and (not isinstance(metric, str) or not metric):
            raise ValueError(f"MedianStoppingRule: metric must be a key name, got {metric!r}")
        _check_mode(mode)
        _check_number("grace_period", grace_period, 0)
        _check_number("min_samples_required", min_samples_required, 1, integer=True)
        _check_number("min_time_slice", min_time_slice, 0)
        if not isinstance(hard_stop, bool):
            raise ValueError(
                f"MedianStoppingRule: hard_stop must be True or False, got {hard_stop!r}"
            )
        self.time_attr = time_attr
        self.metric = metric
        self.mode = mode
        self.grace_period = grace_period
        self.min_samples_required = min_samples_required
        self.min_time_slice = min_time_slice
        self.hard_stop = hard_stop
        # trial id -> [(time, metric value)], in report order, for every trial of the run
        self.results: dict[str, list[tuple[float, float]]] = {}
        # trial id -> the time of its last check against the median
        self.last_checked: dict[str, float] = {}
        # ids of the trials this rule stopped or paused, in that order
        self.stopped_trials: list[str] = []

    @property
    def needs(self) -> SchedulerNeeds:
        # paused trials come back through choose_trial_to_run; stopped ones never do
        return SchedulerNeeds(
            decides_each_result=True, runs_in_order=self.hard_stop, only_stops=self.hard_stop
        )

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """TuneConfig's metric and mode, unless this rule was given others of its own (then
        False); the same ones again (a restored Tuner) are fine."""
        if (self.metric and metric and metric != self.metric) or (
            self.mode and mode and mode != self.mode
        ):
            return False
        _check_mode(mode)
        self.metric = metric or self.metric
        self.mode = mode or self.mode
        return True

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._check_metric_and_mode()
        self.results.setdefault(trial.trial_id, [])

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> Decision:
        self._check_metric_and_mode()
        trial_id = trial.trial_id
        now, value = self._read(trial, result)
        self.results.setdefault(trial_id, []).append((now, value))
        if trial_id in self.stopped_trials or now < self.grace_period:
            return self.CONTINUE
        last = self.last_checked.get(trial_id)
        if last is not None and now - last < self.min_time_slice:
            return self.CONTINUE
        averages = self._running_averages(now, exclude=trial_id)
        if len(averages) < self.min_samples_required:
            return self.CONTINUE
        self.last_checked[trial_id] = now
        if not self._worse(self._best(trial_id), statistics.median(averages)):
            return self.CONTINUE
        self.stopped_trials.append(trial_id)
        return self.STOP if self.hard_stop else self.PAUSE

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict | None) -> None:
        """Keeps the trial's results for the others' medians; the final result is recorded only
        if `on_trial_result` did not see it already (it usually has: no double counting)."""
        if not result or self.time_attr not in result or self.metric not in result:
            return
        now, value = self._read(trial, result)
        recorded = self.results.setdefault(trial.trial_id, [])
        if not recorded or now > recorded[-1][0]:
            recorded.append((now, value))

    def get_state(self) -> dict:
        return copy.deepcopy(self.__dict__)

    def set_state(self, state: dict) -> None:
        self.__dict__.update(copy.deepcopy(state))

    def debug_string(self) -> str:
        return f"Using MedianStoppingRule: num_stopped={len(self.stopped_trials)}."

    # ---- the rule ----

    def _check_metric_and_mode(self) -> None:
        if not self.metric or self.mode not in _MODES:
            raise ValueError(
                f"MedianStoppingRule has no metric ({self.metric!r}) or mode ({self.mode!r}): "
                "pass them to MedianStoppingRule(...) or to tune.TuneConfig(...)"
            )

    def _read(self, trial: Any, result: dict) -> tuple[float, float]:
        pair = []
        for key in (self.time_attr, self.metric):
            if key not in result:
                raise ValueError(
                    f"MedianStoppingRule: trial {trial.trial_id} reported a result without "
                    f"{key!r} (keys: {sorted(k for k in result if k != 'config')})"
                )
            value = result[key]
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(
                    f"MedianStoppingRule: trial {trial.trial_id} reported {key}={value!r}, "
                    "not a number"
                )
            pair.append(float(value))
        return pair[0], pair[1]

    def _running_averages(self, now: float, exclude: str) -> list[float]:
        """Each other trial's mean metric over its results up to `now` (those that have any)."""
        averages = []
        for trial_id, points in self.results.items():
            if trial_id == exclude:
                continue
            upto = [value for time, value in points if time <= now]
            if upto:
                averages.append(sum(upto) / len(upto))
        return averages

    def _best(self, trial_id: str) -> float:
        values = [value for _, value in self.results[trial_id]]
        return max(values) if self.mode == "max" else min(values)

    def _worse(self, value: float, median: float) -> bool:
        return value < median if self.mode == "max" else value > median
