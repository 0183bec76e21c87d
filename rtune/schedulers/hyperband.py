"""Synchronous HyperBand (Li et al., "Hyperband: A Novel Bandit-Based Approach to Hyperparameter
Optimization"), with Ray Tune's `HyperBandScheduler` arguments and bracket layout.

Layout: with `S = round(log(max_t) / log(eta)) + 1` (eta: `reduction_factor`), a band holds
brackets `s = 0 .. S-1`; bracket `s` takes up to `n0 = ceil(S / (s + 1) * eta**s)` trials and first
runs them to `r0 = int(max_t * eta**-s)` (a bracket with `r0 == 0` is skipped). Trials fill the
current bracket as they are added; a full bracket opens the next one, a full band the next band.

Each bracket is successive halving, synchronously: a trial reaching the bracket's milestone is
PAUSEd until every live trial of the bracket has reached it. Then the best `n = ceil(n / eta)`
(by their last results) go on to the next milestone `min(milestone * eta, max_t)` and the rest
stop. After `s` halvings the survivors run to the last milestone, where they stop
(`stop_last_trials`; without it they run on until the trainable or a stopper ends them).

How decisions reach paused trials, within the scheduler contract (`trial_scheduler.py`):
- the trial whose result completes a milestone gets its own answer (CONTINUE or STOP);
- a paused winner is un-paused: `choose_trial_to_run` picks it (it resumes from its checkpoint);
- a paused loser is ended where it waits, through `tune_controller.stop_trial`, as in Ray Tune
  (the engine carries it out when the call returns, in the same state write as the halving);
Differences from Ray Tune, each so a run cannot stall or overrun:
- at the last milestone a trial is stopped at once, not paused until its bracket-mates arrive
  (the same final iteration, without the wait);
- a trial leaving its bracket (completed, errored) lets the others' halving happen at any stage
  (Ray Tune only before the bracket's first halving, so paused trials could wait forever);
- a PENDING trial that has reached its milestone (a paused trial, restored) is not chosen until
  its bracket is halved, so it resumes where the uninterrupted run would have resumed it;
- a result without `time_attr` or the metric is not decided on and warned about once, as
  Ray Tune's docstring and rtune's ASHA say (Ray Tune's code raises a KeyError there).

State is plain data keyed by trial id (brackets hold ids, never trial objects), so
`get_state()`/`set_state()` continue a run mid-bracket with the same decisions.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any

from rtune._values import is_number
from rtune.schedulers.trial_scheduler import (
    Decision,
    FIFOScheduler,
    SchedulerNeeds,
    check_mode,
    take_metric_and_mode,
)

_PENDING, _PAUSED = "PENDING", "PAUSED"


class _Bracket:
    """One bracket's successive halving: which trials are live, what each reached, the
    milestone they are run to now."""

    def __init__(self, s: int, n0: int, r0: int, max_t: float, eta: float, stop_last: bool):
        self.s = s
        self.n = n0  # the most live trials at this stage (a full bracket has this many)
        self.milestone = r0
        self.halvings_left = s
        self.max_t = max_t
        self.eta = eta
        self.stop_last = stop_last
        # trial id -> (time, sign-adjusted metric) of its last result; None before its first
        self.live: dict[str, tuple[float, float] | None] = {}
        self.added: list[str] = []  # every trial it ever held, in order
        self.to_unpause: set[str] = set()  # paused winners, to be chosen again
        self.progress = 0.0
        self.total_work = _total_work(n0, r0, s, max_t, eta)

    def filled(self) -> bool:
        return len(self.live) == self.n

    def add(self, trial_id: str) -> None:
        self.live[trial_id] = None
        self.added.append(trial_id)

    def record(self, trial_id: str, time: float, value: float) -> None:
        last = self.live[trial_id]
        self.progress += time - (0 if last is None else last[0])
        self.live[trial_id] = (time, value)
        self.to_unpause.discard(trial_id)

    def runs_on(self, trial_id: str) -> bool:
        """Below the milestone (or past the last stage without `stop_last_trials`)."""
        if self.halvings_left == 0 and not self.stop_last:
            return True
        last = self.live[trial_id]
        return last is None or last[0] < self.milestone

    def all_reached(self) -> bool:
        return not any(self.runs_on(trial_id) for trial_id in self.live)

    def finished(self) -> bool:
        return self.stop_last and self.halvings_left == 0 and self.all_reached()

    def halve(self) -> tuple[list[str], list[str]]:
        """The next stage: the best `n / eta` of the live trials (winners, best last) and the
        rest. Equal values rank by the order trials were added, later ones higher."""
        self.halvings_left -= 1
        self.n = math.ceil(self.n / self.eta)
        self.milestone = int(min(self.milestone * self.eta, self.max_t))
        ranked = sorted(self.live, key=lambda trial_id: self.live[trial_id][1])
        return ranked[-self.n :], ranked[: -self.n]

    def completion(self) -> float:
        if self.finished():
            return 1.0
        return min(self.progress / self.total_work, 1.0)

    def __repr__(self) -> str:
        return (
            f"Bracket(Max Size (n)={self.n}, Milestone (r)={self.milestone}, "
            f"completed={self.completion():.1%}): {len(self.live)} live of {len(self.added)}"
        )


class HyperBandScheduler(FIFOScheduler):
    """Synchronous HyperBand, as Ray Tune's `HyperBandScheduler` (see the module docstring)."""

    def __init__(
        self,
        time_attr: str = "training_iteration",
        metric: str | None = None,
        mode: str | None = None,
        max_t: float = 81,
        reduction_factor: float = 3,
        stop_last_trials: bool = True,
    ):
        if not isinstance(time_attr, str) or not time_attr:
            raise ValueError(
                f"HyperBandScheduler: time_attr must be a result key (a non-empty str), "
                f"got {time_attr!r}"
            )
        if metric is not None and (not isinstance(metric, str) or not metric):
            raise ValueError(f"HyperBandScheduler: metric must be a result key, got {metric!r}")
        check_mode("HyperBandScheduler", mode)
        if not is_number(max_t) or max_t < 1:
            raise ValueError(f"HyperBandScheduler: max_t must be a number >= 1, got {max_t!r}")
        if not is_number(reduction_factor) or reduction_factor <= 1:
            raise ValueError(
                f"HyperBandScheduler: reduction_factor must be a number > 1, "
                f"got {reduction_factor!r}"
            )
        if not isinstance(stop_last_trials, bool):
            raise ValueError(
                f"HyperBandScheduler: stop_last_trials must be True or False, "
                f"got {stop_last_trials!r}"
            )
        self._time_attr = time_attr
        self._metric = metric
        self._mode = mode
        self._max_t = max_t
        self._eta = reduction_factor
        self._stop_last_trials = stop_last_trials
        self._s_max_1 = int(round(math.log(max_t) / math.log(reduction_factor))) + 1
        self._bands: list[list[_Bracket | None]] = [[]]  # None: a bracket too small to run
        self._current: tuple[int, int] | None = None  # where new trials go
        self._bracket_of: dict[str, tuple[int, int]] = {}  # trial id -> (band, bracket)
        self._to_stop: list[str] = []  # losers to end once the current call returns
        self._num_stopped = 0
        self._warned_missing = False

    @property
    def needs(self) -> SchedulerNeeds:
        return SchedulerNeeds(decides_each_result=True, runs_in_order=False)

    @property
    def metric(self) -> str | None:
        return self._metric

    @property
    def mode(self) -> str | None:
        return self._mode

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """TuneConfig's metric and mode where the constructor gave none; False where one is set
        already and differs (the same again, as a restored Tuner passes them, is fine)."""
        if not take_metric_and_mode(self, metric, mode):
            return False
        self._check_metric_and_mode()
        return True

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._check_metric_and_mode()
        self._add(trial.trial_id)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> Decision:
        trial_id = trial.trial_id
        try:
            return self._decide(trial_id, trial, result)
        finally:
            self._stop_losers(tune_controller)

    def _decide(self, trial_id: str, trial: Any, result: dict) -> Decision:
        if not self._has_keys(trial, result):
            return self.CONTINUE
        bracket = self._bracket(trial_id)
        if bracket is None or trial_id not in bracket.live:  # never told of it, or it left
            self._add(trial_id)
            bracket = self._bracket(trial_id)
        sign = 1.0 if self._mode == "max" else -1.0
        bracket.record(trial_id, result[self._time_attr], sign * result[self._metric])
        if bracket.runs_on(trial_id):
            return self.CONTINUE
        if bracket.halvings_left == 0:  # the last milestone: nothing is decided after it
            del bracket.live[trial_id]
            self._process(bracket, None)
            return self.STOP
        return self._process(bracket, trial_id)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict | None) -> None:
        self._leave(trial.trial_id)
        self._stop_losers(tune_controller)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self._leave(trial.trial_id)
        self._stop_losers(tune_controller)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._leave(trial.trial_id)
        self._stop_losers(tune_controller)

    def _stop_losers(self, tune_controller: Any) -> None:
        """End the paused losers of a halving where they wait (Ray Tune's way)."""
        losers, self._to_stop = self._to_stop, []
        for trial_id in losers:
            view = tune_controller.get_trial(trial_id)
            if view is not None:
                tune_controller.stop_trial(view)

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        """Band by band and the least complete bracket first, a bracket's trial that may run: a
        pending one below its milestone or a paused winner. Then any pending trial this
        scheduler holds nowhere."""
        views = {view.trial_id: view for view in tune_controller.get_trials()}

        def waiting(trial_id: str) -> bool:
            view = views.get(trial_id)
            return view is not None and view.status in (_PENDING, _PAUSED)

        held: set[str] = set()
        for band in self._bands:
            for bracket in sorted(filter(None, band), key=_Bracket.completion):
                held.update(bracket.live)
                for trial_id in bracket.live:
                    if not waiting(trial_id):
                        continue
                    may_start = views[trial_id].status == _PENDING and bracket.runs_on(trial_id)
                    if may_start or trial_id in bracket.to_unpause:
                        return views[trial_id]
        for trial_id, view in views.items():
            if view.status == _PENDING and trial_id not in held:
                return view
        return None

    def get_state(self) -> dict:
        """A copy, so a stored state never changes with later decisions."""
        return copy.deepcopy(self.__dict__)

    def set_state(self, state: dict) -> None:
        self.__dict__.update(copy.deepcopy(state))

    def debug_string(self) -> str:
        total = sum(len(band) for band in self._bands)
        lines = [f"Using HyperBand: num_stopped={self._num_stopped} total_brackets={total}"]
        for index, band in enumerate(self._bands):
            lines.append(f"Round #{index}:")
            lines.extend(f"  {bracket}" for bracket in band if bracket is not None)
        return "\n".join(lines)

    # ---- brackets ----

    def _bracket(self, trial_id: str) -> _Bracket | None:
        where = self._bracket_of.get(trial_id)
        return None if where is None else self._bands[where[0]][where[1]]

    def _add(self, trial_id: str) -> None:
        """Into the current bracket; a full one opens the next (skipping those too small to
        run, whose first milestone would be 0), a full band the next band."""
        current = None if self._current is None else self._bands[self._current[0]][self._current[1]]
        if current is None or current.filled():
            while True:
                if len(self._bands[-1]) == self._s_max_1:
                    self._bands.append([])
                band = self._bands[-1]
                s = len(band)
                r0 = int(self._max_t * self._eta ** (-s))
                if r0 == 0:
                    band.append(None)
                    continue
                n0 = int(math.ceil(self._s_max_1 / (s + 1) * self._eta**s))
                band.append(_Bracket(s, n0, r0, self._max_t, self._eta, self._stop_last_trials))
                break
            self._current = (len(self._bands) - 1, len(self._bands[-1]) - 1)
            current = self._bands[-1][-1]
        current.add(trial_id)
        self._bracket_of[trial_id] = self._current

    def _leave(self, trial_id: str) -> None:
        bracket = self._bracket(trial_id)
        if bracket is not None and trial_id in bracket.live:
            del bracket.live[trial_id]
            bracket.to_unpause.discard(trial_id)
            self._process(bracket, None)

    def _process(self, bracket: _Bracket, current: str | None) -> Decision | None:
        """Once every live trial has reached the milestone: halve (again, while the winners are
        already past the next one). `current`, the trial whose result this is, gets its answer
        (PAUSE while others have not arrived); the others are un-paused or marked to stop."""
        decision = self.PAUSE
        while bracket.live and bracket.all_reached():
            if bracket.halvings_left == 0:  # winners already past the last milestone
                losers, winners = list(bracket.live), []
                bracket.live.clear()
            else:
                winners, losers = bracket.halve()
                for trial_id in losers:
                    del bracket.live[trial_id]
            self._num_stopped += len(losers)
            for trial_id in losers:
                if trial_id == current:
                    decision = self.STOP
                else:
                    self._to_stop.append(trial_id)
            for trial_id in winners:
                if not bracket.runs_on(trial_id):
                    continue  # already at the next milestone: decided with the next halving
                if trial_id == current:
                    decision = self.CONTINUE
                else:
                    bracket.to_unpause.add(trial_id)
        return decision

    # ---- results ----

    def _check_metric_and_mode(self) -> None:
        if self._metric is None or self._mode is None:
            raise ValueError(
                f"HyperBandScheduler needs a metric and a mode (got metric={self._metric!r}, "
                f"mode={self._mode!r}): pass them to the scheduler or to tune.TuneConfig()"
            )

    def _has_keys(self, trial: Any, result: dict) -> bool:
        """A result without the time attribute or the metric is not decided on; the first such
        result of a run is reported once, naming the key (a misspelt metric decides nothing)."""
        self._check_metric_and_mode()
        for key in (self._time_attr, self._metric):
            if key not in result:
                if not self._warned_missing:
                    self._warned_missing = True
                    warnings.warn(
                        f"HyperBandScheduler: trial {trial.trial_id} reported a result without "
                        f"{key!r} (it has {sorted(k for k in result if k != 'config')}); "
                        "results without it are not decided on",
                        stacklevel=2,
                    )
                return False
        return True


def _total_work(n: int, r: int, s: int, max_t: float, eta: float) -> float:
    """Ray Tune's measure of a bracket's work, against which its completion is reported and
    its trials are scheduled (the least complete bracket first)."""
    work = 0
    first_r = r
    for _ in range(s + 1):
        work += int(n) * int(r)
        n = math.ceil(n / eta)
        r = int(min(r * eta, max_t - first_r))
    return work
