"""Asynchronous successive halving (ASHA), with Ray Tune's documented semantics.

Each bracket `s` has rungs at `grace_period * reduction_factor ** (k + s)` below `max_t`. A trial
reaching a rung records its metric there; it is stopped if that value falls below the
`1 - 1 / reduction_factor` quantile of the values recorded at that rung before it (so the first
trial at a rung always goes on). Decisions never wait for other trials: a trial is only compared
with those that reached the rung earlier, which is what makes it asynchronous.

Everything it decides from is in plain attributes keyed by trial id (no trial objects), and the
bracket choice draws from a seeded `random.Random` kept in that state, so a restored experiment
decides exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import copy
import math
import random
import warnings
from typing import Any

import numpy as np

from rtune._values import is_number
from rtune.schedulers.trial_scheduler import (
    Decision,
    FIFOScheduler,
    SchedulerNeeds,
    check_mode,
    take_metric_and_mode,
)

# Ray Tune draws brackets from numpy's global generator; rtune seeds its own so a run (and its
# restore) is reproducible.
_BRACKET_SEED = 0


class AsyncHyperBandScheduler(FIFOScheduler):
    """ASHA (Li et al., "A System for Massively Parallel Hyperparameter Tuning"), as Ray Tune's
    `AsyncHyperBandScheduler`: same arguments, same decisions."""

    def __init__(
        self,
        time_attr: str = "training_iteration",
        metric: str | None = None,
        mode: str | None = None,
        max_t: float = 100,
        grace_period: float = 1,
        reduction_factor: float = 4,
        brackets: int = 1,
        stop_last_trials: bool = True,
    ):
        _check_positive("max_t", max_t)
        _check_positive("grace_period", grace_period)
        if grace_period > max_t:
            raise ValueError(f"grace_period ({grace_period!r}) must be at most max_t ({max_t!r})")
        if not is_number(reduction_factor) or reduction_factor <= 1:
            raise ValueError(f"reduction_factor must be a number > 1, got {reduction_factor!r}")
        if not isinstance(brackets, int) or isinstance(brackets, bool) or brackets < 1:
            raise ValueError(f"brackets must be an int >= 1, got {brackets!r}")
        if not isinstance(time_attr, str) or not time_attr:
            raise ValueError(f"time_attr must be a result key (a non-empty str), got {time_attr!r}")
        check_mode("AsyncHyperBandScheduler", mode)
        self._time_attr = time_attr
        self._metric = metric
        self._mode = mode
        self._max_t = max_t
        self._reduction_factor = reduction_factor
        self._stop_last_trials = stop_last_trials
        # per bracket: milestone -> {trial_id: sign-adjusted metric}, largest milestone first
        self._rungs: list[dict[float, dict[str, float]]] = [
            _bracket_rungs(grace_period, max_t, reduction_factor, s) for s in range(brackets)
        ]
        self._bracket_of: dict[str, int] = {}
        self._num_stopped = 0
        self._warned_missing = False
        self._rng = random.Random(_BRACKET_SEED)

    @property
    def needs(self) -> SchedulerNeeds:
        return SchedulerNeeds(decides_each_result=True, runs_in_order=True, only_stops=True)

    @property
    def metric(self) -> str | None:
        return self._metric

    @property
    def mode(self) -> str | None:
        return self._mode

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """Take the TuneConfig's metric/mode where the constructor gave none; False where one is
        set already and differs (Ray Tune's answer to a conflict)."""
        if not take_metric_and_mode(self, metric, mode):
            return False
        if self._metric is None or self._mode is None:
            raise ValueError(
                f"AsyncHyperBandScheduler needs a metric and a mode (got metric={self._metric!r}, "
                f"mode={self._mode!r}): pass them to the scheduler or to tune.TuneConfig()"
            )
        return True

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._bracket_of[trial.trial_id] = self._draw_bracket()

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> Decision:
        if not self._has_keys(trial, result):
            return self.CONTINUE
        if result[self._time_attr] >= self._max_t and self._stop_last_trials:
            decision = self.STOP
        else:
            decision = self._on_rungs(trial.trial_id, result)
        if decision == self.STOP:
            self._num_stopped += 1
        return decision

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict | None) -> None:
        """The final result is recorded too (it may reach a rung), as Ray Tune does."""
        if result and self._time_attr in result and self._metric in result:
            self._on_rungs(trial.trial_id, result)
        self._bracket_of.pop(trial.trial_id, None)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self._bracket_of.pop(trial.trial_id, None)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._bracket_of.pop(trial.trial_id, None)

    def get_state(self) -> dict:
        """A copy, so a stored state never changes with later decisions."""
        return copy.deepcopy(self.__dict__)

    def set_state(self, state: dict) -> None:
        self.__dict__.update(copy.deepcopy(state))

    def debug_string(self) -> str:
        lines = [f"Using AsyncHyperBand: num_stopped={self._num_stopped}"]
        for rungs in self._rungs:
            iters = " | ".join(
                f"Iter {milestone:.3f}: {self._cutoff(recorded)}"
                for milestone, recorded in rungs.items()
            )
            lines.append(f"Bracket: {iters}")
        return "\n".join(lines)

    def _draw_bracket(self) -> int:
        """Ray Tune's softmax over the brackets' rung counts: brackets with more rungs (more
        chances to stop early) get more trials."""
        sizes = [len(rungs) for rungs in self._rungs]
        weights = [math.exp(size - max(sizes)) for size in sizes]
        return self._rng.choices(range(len(self._rungs)), weights=weights)[0]

    def _has_keys(self, trial: Any, result: dict) -> bool:
        """A result without the time attribute or the metric is not decided on (as in Ray Tune:
        a trainable may report the metric only on some results); the first such result of a run
        is reported once, naming the key, for a misspelt metric never stops anything."""
        if self._metric is None or self._mode is None:
            raise ValueError(
                f"AsyncHyperBandScheduler has no metric or mode (metric={self._metric!r}, "
                f"mode={self._mode!r}): pass them to the scheduler or to tune.TuneConfig()"
            )
        for key in (self._time_attr, self._metric):
            if key not in result:
                if not self._warned_missing:
                    self._warned_missing = True
                    warnings.warn(
                        f"AsyncHyperBandScheduler: trial {trial.trial_id} reported a result "
                        f"without {key!r} (it has {sorted(k for k in result if k != 'config')}); "
                        "results without it are not decided on",
                        stacklevel=2,
                    )
                return False
        return True

    def _on_rungs(self, trial_id: str, result: dict) -> Decision:
        """Ray Tune's bracket step: from the largest milestone down, the first rung the trial has
        reached and not recorded decides (against the values recorded before it) and records."""
        if trial_id not in self._bracket_of:  # a trial this scheduler was never told of
            self._bracket_of[trial_id] = self._draw_bracket()
        time_now = result[self._time_attr]
        value = result[self._metric] * (1.0 if self._mode == "max" else -1.0)
        for milestone, recorded in self._rungs[self._bracket_of[trial_id]].items():
            if time_now >= milestone and trial_id in recorded and not self._stop_last_trials:
                break  # already past this rung: its decision was made then
            if time_now < milestone or trial_id in recorded:
                continue
            cutoff = self._cutoff(recorded)
            recorded[trial_id] = value
            return self.STOP if cutoff is not None and value < cutoff else self.CONTINUE
        return self.CONTINUE

    def _cutoff(self, recorded: dict[str, float]) -> float | None:
        if not recorded:
            return None
        return float(
            np.nanpercentile(list(recorded.values()), (1 - 1 / self._reduction_factor) * 100)
        )


ASHAScheduler = AsyncHyperBandScheduler


def _bracket_rungs(grace_period: float, max_t: float, rf: float, s: int) -> dict:
    """Bracket s's rungs, as Ray Tune counts them: grace_period * rf**j for j from s while it
    is at most max_t (a rung at max_t itself where it is an exact power), largest first."""
    count = int(np.log(max_t / grace_period) / np.log(rf) - s + 1)
    milestones = [grace_period * rf ** (k + s) for k in range(count)]
    return {milestone: {} for milestone in reversed(milestones)}


def _check_positive(name: str, value: Any) -> None:
    if not is_number(value) or value <= 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
