"""Stoppers: when to end a trial (`__call__`) or the experiment (`stop_all`); Ray Tune's names.

The controller calls every stopper on every result, in order, and then `stop_all()`. Stoppers pickle
into the experiment state, so whatever they count survives a restore (see `TimeoutStopper`).
A user's mistake (a missing metric, a non-numeric value) is raised with the key and trial named.
"""

from __future__ import annotations

import datetime
import inspect
import math
import statistics
import time
from collections import deque
from collections.abc import Callable
from numbers import Integral, Real
from typing import Any


def _is_real(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _flatten(result: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in result.items():
        name = f"{prefix}{key}"
        keys.extend(_flatten(value, f"{name}/") if isinstance(value, dict) and value else [name])
    return keys


def _metric(result: dict[str, Any], key: str, trial_id: str) -> float:
    """`result[key]` ("a/b" also finds result["a"]["b"]); missing or non-numeric is an error."""
    value = _metric_value(result, key, trial_id)
    if not _is_real(value):
        raise TypeError(
            f"Stopping criterion {key!r} of trial {trial_id} must be a number in the result, "
            f"got {type(value).__name__}: {value!r}"
        )
    return float(value)


def _metric_value(result: dict[str, Any], key: str, trial_id: str) -> Any:
    if key in result:
        value = result[key]
    else:
        value = result
        for part in key.split("/"):
            if not isinstance(value, dict) or part not in value:
                raise ValueError(
                    f"Stopping criterion {key!r} is not in the result of trial {trial_id}. "
                    f"The result has: {sorted(_flatten(result))}"
                )
            value = value[part]
    return value


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_real(name: str, value: Any, minimum: float) -> None:
    if not _is_real(value):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not value >= minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_metric(name: str, metric: Any) -> None:
    if not isinstance(metric, str) or not metric:
        raise TypeError(f"{name} metric must be a metric name (str), got {metric!r}")


def _check_mode(name: str, mode: Any, allow_none: bool) -> None:
    if not (isinstance(mode, str) and mode in ("min", "max")) and not (allow_none and mode is None):
        raise ValueError(f"{name} mode must be 'min' or 'max', got {mode!r}")


class Stopper:
    """Base class: True from `__call__` stops that trial; from `stop_all`, the experiment."""

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        raise NotImplementedError

    def stop_all(self) -> bool:
        return False


class DictStopper(Stopper):
    """Stop a trial when any result value reaches its criterion (`result[key] >= value`)."""

    def __init__(self, criteria: dict[str, float]) -> None:
        if not isinstance(criteria, dict):
            raise TypeError(f"stop criteria must be a dict, got {type(criteria).__name__}")
        for key, value in criteria.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"stop criteria keys must be str, got {key!r} ({type(key).__name__})"
                )
            # a bool only as Ray Tune's `stop={"done": True}`
            if not _is_real(value) and not (key == "done" and isinstance(value, bool)):
                raise TypeError(
                    f"stop criterion {key!r} must be a number, "
                    f"got {type(value).__name__}: {value!r}"
                )
            if value != value:  # NaN; math.isnan() fails on ints too large for a float
                raise ValueError(
                    f"stop criterion {key!r} is NaN: no result ever reaches it, "
                    "so the trial would never stop"
                )
        self.criteria = dict(criteria)

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return any(
            self._reached(trial_id, result, key, value) for key, value in self.criteria.items()
        )

    @staticmethod
    def _reached(trial_id: str, result: dict[str, Any], key: str, value: Any) -> bool:
        if isinstance(value, bool):  # Ray Tune's `stop={"done": True}`: the result's flag is set
            if key == "done" and key not in result:
                return False
            flag = _metric_value(result, key, trial_id)
            return bool(flag) >= value
        return _metric(result, key, trial_id) >= value


class FunctionStopper(Stopper):
    """Stop a trial when `function(trial_id, result)` returns True."""

    def __init__(self, function: Callable[[str, dict[str, Any]], bool]) -> None:
        if not callable(function):
            raise TypeError(f"stop function must be callable, got {type(function).__name__}")
        try:
            inspect.signature(function).bind("trial_id", {})
        except TypeError:
            raise TypeError(
                f"stop function {function!r} must take two arguments (trial_id, result)"
            ) from None
        except ValueError:
            pass
        self._function = function

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return bool(self._function(trial_id, result))


class MaximumIterationStopper(Stopper):
    """Stop a trial once its `training_iteration` reaches `max_iter`."""

    def __init__(self, max_iter: int) -> None:
        _check_int("MaximumIterationStopper max_iter", max_iter, 1)
        self._max_iter = max_iter

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return _metric(result, "training_iteration", trial_id) >= self._max_iter


class TrialPlateauStopper(Stopper):
    """Stop a trial whose last `num_results` values of `metric` have a standard deviation <= `std`.

    Not before `grace_period` results; with `metric_threshold` only once the metric is at least that
    good (below it for mode "min", above for "max").
    """

    def __init__(
        self,
        metric: str,
        std: float = 0.01,
        num_results: int = 4,
        grace_period: int = 4,
        metric_threshold: float | None = None,
        mode: str | None = None,
    ) -> None:
        _check_metric("TrialPlateauStopper", metric)
        _check_real("TrialPlateauStopper std", std, 0)
        _check_int("TrialPlateauStopper num_results", num_results, 1)
        _check_int("TrialPlateauStopper grace_period", grace_period, 0)
        _check_mode("TrialPlateauStopper", mode, allow_none=True)
        if metric_threshold is not None:
            _check_real("TrialPlateauStopper metric_threshold", metric_threshold, -math.inf)
            if mode is None:
                raise ValueError("TrialPlateauStopper: metric_threshold needs mode='min' or 'max'")
        self._metric, self._std, self._num_results = metric, std, num_results
        self._grace_period, self._threshold, self._mode = grace_period, metric_threshold, mode
        self._windows: dict[str, deque[float]] = {}
        self._counts: dict[str, int] = {}

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        value = _metric(result, self._metric, trial_id)
        window = self._windows.setdefault(trial_id, deque(maxlen=self._num_results))
        window.append(value)
        self._counts[trial_id] = count = self._counts.get(trial_id, 0) + 1
        if count < self._grace_period or len(window) < self._num_results:
            return False
        if self._threshold is not None:
            if (self._mode == "min" and value > self._threshold) or (
                self._mode == "max" and value < self._threshold
            ):
                return False
        return statistics.pstdev(window) <= self._std


class ExperimentPlateauStopper(Stopper):
    """End the experiment once the `top` best values of `metric` (over all trials) vary by <= `std`
    for `patience` more results."""

    def __init__(
        self, metric: str, std: float = 0.001, top: int = 10, mode: str = "min", patience: int = 0
    ) -> None:
        _check_metric("ExperimentPlateauStopper", metric)
        _check_real("ExperimentPlateauStopper std", std, 0)
        _check_int("ExperimentPlateauStopper top", top, 1)
        _check_int("ExperimentPlateauStopper patience", patience, 0)
        _check_mode("ExperimentPlateauStopper", mode, allow_none=False)
        self._metric, self._std, self._top, self._mode, self._patience = (
            metric,
            std,
            top,
            mode,
            patience,
        )
        self._top_values: list[float] = []
        self._plateau_results = 0

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        values = sorted([*self._top_values, _metric(result, self._metric, trial_id)])
        self._top_values = values[: self._top] if self._mode == "min" else values[-self._top :]
        self._plateau_results = self._plateau_results + 1 if self._has_plateaued() else 0
        return self.stop_all()

    def _has_plateaued(self) -> bool:
        return (
            len(self._top_values) == self._top and statistics.pstdev(self._top_values) <= self._std
        )

    def stop_all(self) -> bool:
        return self._has_plateaued() and self._plateau_results > self._patience


class TimeoutStopper(Stopper):
    """End the experiment once `timeout` (seconds or a timedelta) of running time is used up.

    Only time while the stopper is live counts: pickling keeps the time used so far, and an
    unpickled stopper (e.g. after a restore, in a new process) continues from there.
    """

    def __init__(
        self, timeout: float | datetime.timedelta, _clock: Callable[[], float] | None = None
    ) -> None:
        if isinstance(timeout, datetime.timedelta):
            timeout = timeout.total_seconds()
        if not _is_real(timeout):
            raise TypeError(
                "TimeoutStopper timeout must be seconds or a timedelta, "
                f"got {type(timeout).__name__}"
            )
        try:
            budget = float(timeout)
        except OverflowError:
            raise ValueError(f"TimeoutStopper timeout is too large, got {timeout}") from None
        if not budget > 0:
            raise ValueError(f"TimeoutStopper timeout must be > 0, got {timeout}")
        self._budget = budget
        self._clock = _clock
        self._used_before = 0.0
        self._started = self._now()

    def _now(self) -> float:
        """time.time(), looked up at each call as Ray Tune's does (not bound at import), so
        tools that move time (freezegun, monkeypatch) move it here too."""
        return self._clock() if self._clock is not None else time.time()

    def elapsed(self) -> float:
        """Seconds of the budget used so far."""
        return self._used_before + self._now() - self._started

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.elapsed() >= self._budget

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_used_before"] = self.elapsed()
        del state["_started"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._started = self._now()


class CombinedStopper(Stopper):
    """Stop when any of `stoppers` says so; each one sees every result, so its counts stay right."""

    def __init__(self, *stoppers: Stopper) -> None:
        for index, stopper in enumerate(stoppers):
            if not isinstance(stopper, Stopper):
                raise TypeError(
                    f"CombinedStopper argument {index} must be a Stopper, "
                    f"got {type(stopper).__name__}"
                )
        self._stoppers = stoppers

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        decisions = [stopper(trial_id, result) for stopper in self._stoppers]
        return any(decisions)

    def stop_all(self) -> bool:
        return any([stopper.stop_all() for stopper in self._stoppers])


def make_stopper(stop: Any) -> Stopper | None:
    """The Stopper for `RunConfig.stop`: None, a criteria dict, a Stopper or a function."""
    if stop is None:
        return None
    if isinstance(stop, dict):
        return DictStopper(stop)
    if isinstance(stop, Stopper):
        return stop
    if isinstance(stop, type) and issubclass(stop, Stopper):
        raise TypeError(
            f"stop got the class {stop.__name__}; pass an instance: stop={stop.__name__}()"
        )
    if callable(stop):
        return FunctionStopper(stop)
    raise TypeError(
        "stop must be None, a dict, a Stopper or a function(trial_id, result), "
        f"got {type(stop).__name__}"
    )
