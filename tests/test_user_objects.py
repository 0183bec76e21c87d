"""The stopper, searcher and scheduler a user passes run in the controller actor, on copies; when
fit() returns (or raises) the objects the user holds carry their final state, as in Ray Tune."""

from __future__ import annotations

import os
import threading
import time

import pytest

import rtune as tune
from rtune import Stopper
from rtune.schedulers import FIFOScheduler
from rtune.search import Searcher


class CountingStopper(Stopper):
    def __init__(self) -> None:
        self.count = 0
        self.per_trial: dict[str, int] = {}

    def __call__(self, trial_id, result):
        self.count += 1
        self.per_trial[trial_id] = self.per_trial.get(trial_id, 0) + 1
        return False


def reports(config):
    for i in range(config["n"]):
        tune.report({"score": i})


def _iterations(results) -> int:
    return sum(r.metrics.get("training_iteration", 0) for r in results)


def test_counting_stopper_reads_the_count_after_a_normal_end(storage):
    counter = CountingStopper()
    results = tune.Tuner(
        reports,
        param_space={"n": tune.grid_search([100, 150, 200])},
        run_config=tune.RunConfig(storage_path=storage, verbose=0, stop=counter),
    ).fit()
    assert counter.count == 450 == _iterations(results)
    assert sorted(counter.per_trial.values()) == [100, 150, 200]


def test_stoppers_inside_a_combined_stopper_are_updated_in_place(storage):
    counter = CountingStopper()
    tune.Tuner(
        reports,
        param_space={"n": 120},
        run_config=tune.RunConfig(
            storage_path=storage,
            verbose=0,
            stop=tune.CombinedStopper(counter, tune.MaximumIterationStopper(1000)),
        ),
    ).fit()
    assert counter.count == 120


def test_counting_stopper_after_a_drain(storage, tmp_path):
    marker = tmp_path / "halfway"

    def until_stopped(config):
        for i in range(10_000):
            if i == 150:
                marker.touch()
            tune.report({"i": i})
            if tune.get_context().stop_requested:
                return
            time.sleep(0.002)

    def stop_when_halfway():
        deadline = time.monotonic() + 120
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        tune.stop_experiment(os.path.join(storage, "drained"))

    counter = CountingStopper()
    stopper_thread = threading.Thread(target=stop_when_halfway, daemon=True)
    stopper_thread.start()
    results = tune.Tuner(
        until_stopped,
        param_space={"x": tune.grid_search([1, 2])},
        run_config=tune.RunConfig(storage_path=storage, name="drained", verbose=0, stop=counter),
    ).fit()
    stopper_thread.join(timeout=30)
    assert all(r.metrics["training_iteration"] < 10_000 for r in results)
    assert counter.count == _iterations(results) >= 150


def _fails_after_five(config):
    for i in range(config["n"]):
        tune.report({"i": i})
        if config["fail"] and i == 4:
            raise RuntimeError("this trial fails")
        time.sleep(0.01)


def test_counting_stopper_after_fail_fast(storage):
    counter = CountingStopper()
    results = tune.Tuner(
        _fails_after_five,
        param_space={"fail": tune.grid_search([False, True]), "n": 2000},
        run_config=tune.RunConfig(
            storage_path=storage,
            verbose=0,
            stop=counter,
            failure_config=tune.FailureConfig(fail_fast=True),
        ),
    ).fit()
    assert results.num_errors == 1
    assert counter.count == _iterations(results) >= 5


def test_counting_stopper_before_fail_fast_raise_raises(storage):
    counter = CountingStopper()
    with pytest.raises(tune.TrialError, match="this trial fails"):
        tune.Tuner(
            _fails_after_five,
            param_space={"fail": True, "n": 10},
            run_config=tune.RunConfig(
                storage_path=storage,
                verbose=0,
                stop=counter,
                failure_config=tune.FailureConfig(fail_fast="raise"),
            ),
        ).fit()
    assert counter.count == 5


class RecordingSearcher(Searcher):
    """Suggests x = 0, 1, 2 and records what it is told, as a user's searcher would."""

    def __init__(self) -> None:
        super().__init__(metric="score", mode="max")
        self.suggested: list[str] = []
        self.history: list[tuple[str, int]] = []

    def suggest(self, trial_id):
        if len(self.suggested) == 3:
            return Searcher.FINISHED
        self.suggested.append(trial_id)
        return {"n": 10 * len(self.suggested)}

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.history.append((trial_id, result["score"]))


class CountingScheduler(FIFOScheduler):
    def __init__(self) -> None:
        self.results = 0
        self.completed: list[str] = []

    def on_trial_result(self, tune_controller, trial, result):
        self.results += 1
        return self.CONTINUE

    def on_trial_complete(self, tune_controller, trial, result):
        self.completed.append(trial.trial_id)


@pytest.mark.smoke
def test_searcher_history_and_scheduler_state_after_fit(storage):
    searcher = RecordingSearcher()
    scheduler = CountingScheduler()
    results = tune.Tuner(
        reports,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=3),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    ids = sorted(r.trial_id for r in results)
    assert sorted(searcher.suggested) == ids
    assert sorted(searcher.history) == sorted((r.trial_id, r.metrics["score"]) for r in results)
    assert sorted(score for _, score in searcher.history) == [9, 19, 29]
    assert scheduler.results == 60 == _iterations(results)
    assert sorted(scheduler.completed) == ids


def test_a_stopper_class_defined_in_the_script_comes_back_too(storage):
    """A class defined where cloudpickle copies it by value (a script's __main__, a function)
    returns from the controller as a copy of the class: matched by name, not identity."""

    class LocalCounter(Stopper):
        def __init__(self) -> None:
            self.count = 0

        def __call__(self, trial_id, result):
            self.count += 1
            return False

    counter = LocalCounter()
    tune.Tuner(
        reports,
        param_space={"n": 40},
        run_config=tune.RunConfig(storage_path=storage, verbose=0, stop=counter),
    ).fit()
    assert counter.count == 40
