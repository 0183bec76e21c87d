"""The seed guide's programmatic stops, written as a user would with `import rtune as tune`."""

from __future__ import annotations

import os
import threading
import time

import pytest

import rtune as tune
from rtune import Stopper


def my_trainable(config):
    for i in range(1, 100):
        tune.report({"mean_accuracy": min(1.0, i * config["rate"]), "foo": i * config["foo_step"]})


def test_stop_dict_on_autofilled_and_reported_metrics(storage):
    results = tune.Tuner(
        my_trainable,
        param_space={"rate": tune.grid_search([0.01, 0.25]), "foo_step": 1},
        run_config=tune.RunConfig(
            storage_path=storage,
            verbose=0,
            stop={"training_iteration": 10, "mean_accuracy": 0.98},
        ),
    ).fit()
    by_rate = {r.config["rate"]: r for r in results}
    assert by_rate[0.01].metrics["training_iteration"] == 10
    assert by_rate[0.25].metrics["training_iteration"] == 4  # 4 * 0.25 = 1.0 >= 0.98
    assert len(by_rate[0.01].metrics_dataframe) == 10


@pytest.mark.smoke
def test_stop_function(storage):
    def stopper(trial_id, result):
        return result["mean_accuracy"] / result["training_iteration"] > 5

    results = tune.Tuner(
        my_trainable,
        param_space={"rate": 0.01, "foo_step": 1},
        run_config=tune.RunConfig(
            storage_path=storage,
            verbose=0,
            stop=lambda trial_id, result: (
                result["training_iteration"] >= 5 or stopper(trial_id, result)
            ),
        ),
    ).fit()
    # a function stopper runs in the controller: the trial ends within an iteration or so
    assert 5 <= results[0].metrics["training_iteration"] <= 7


class CustomStopper(Stopper):
    def __init__(self):
        self.should_stop = False

    def __call__(self, trial_id, result):
        if not self.should_stop and result["foo"] > 10:
            self.should_stop = True
        return self.should_stop

    def stop_all(self):
        """Returns whether to stop trials and prevent new ones from starting."""
        return self.should_stop


def slow_trainable(config):
    import time

    for i in range(1, 50):
        time.sleep(0.05)
        tune.report({"foo": i * config["foo_step"]})


def test_custom_stopper_stop_all_prevents_new_trials(storage):
    results = tune.Tuner(
        slow_trainable,
        param_space={"foo_step": tune.grid_search([5, 1, 1, 1, 1, 1])},
        tune_config=tune.TuneConfig(max_concurrent_trials=2),
        run_config=tune.RunConfig(storage_path=storage, verbose=0, stop=CustomStopper()),
    ).fit()
    started = [r for r in results if r.metrics]
    # the first trial passes foo > 10 at iteration 3; the two running trials stop, no more start
    assert len(started) == 2
    assert all(r.metrics["training_iteration"] < 49 for r in started)


def test_builtin_maximum_iteration_stopper(storage):
    results = tune.Tuner(
        my_trainable,
        param_space={"rate": 0.01, "foo_step": 1},
        run_config=tune.RunConfig(
            storage_path=storage, verbose=0, stop=tune.MaximumIterationStopper(max_iter=3)
        ),
    ).fit()
    assert 3 <= results[0].metrics["training_iteration"] <= 5


def failing_trainable(config):
    import time

    if config["fail"]:
        raise RuntimeError("this trial fails")
    for i in range(200):
        time.sleep(0.05)
        tune.report({"i": i})


def test_fail_fast_stops_the_run_after_the_first_error(storage):
    results = tune.Tuner(
        failing_trainable,
        param_space={"fail": tune.grid_search([False, True, False, False])},
        tune_config=tune.TuneConfig(max_concurrent_trials=2),
        run_config=tune.RunConfig(
            storage_path=storage, verbose=0, failure_config=tune.FailureConfig(fail_fast=True)
        ),
    ).fit()
    assert results.num_errors == 1
    first, failed, third, fourth = sorted(results, key=lambda r: r.trial_id)
    assert failed.error is not None
    # the trial beside the failing one was stopped mid-run, or before its actor was even ready
    assert first.status in ("PAUSED", "PENDING")
    assert first.metrics.get("training_iteration", 0) < 200
    # the two after it never started, and stay pending for Tuner.restore
    assert [third.status, fourth.status] == ["PENDING", "PENDING"]
    assert not third.metrics and not fourth.metrics


def test_fail_fast_raise(storage):
    with pytest.raises(tune.TrialError, match="this trial fails"):
        tune.Tuner(
            failing_trainable,
            param_space={"fail": True},
            run_config=tune.RunConfig(
                storage_path=storage,
                verbose=0,
                failure_config=tune.FailureConfig(fail_fast="raise"),
            ),
        ).fit()


def test_time_budget_stops_the_run(storage):
    results = tune.Tuner(
        failing_trainable,
        param_space={"fail": False},
        tune_config=tune.TuneConfig(time_budget_s=1.5),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    assert 0 < results[0].metrics["training_iteration"] < 200


def quick(config):
    for step in range(1, 9):
        time.sleep(0.008)
        tune.report({"step": step})
    with open(config["log"], "a") as log:
        log.write(f"{config['i']}\n")


def test_a_stop_during_many_short_trials_starts_no_new_one(storage, tmp_path):
    """Short trials are handed to actors ahead of time; a stop must still start no trial after
    it (queued ones are dropped before they begin), and the restore runs exactly the rest."""
    log = tmp_path / "finished.log"
    log.touch()
    name, trials = "many_short", 300

    def stop_after_some_finished():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if len(log.read_text().split()) >= 20:
                tune.stop_experiment(os.path.join(storage, name))
                return
            time.sleep(0.01)

    stopper = threading.Thread(target=stop_after_some_finished, daemon=True)
    stopper.start()
    results = tune.Tuner(
        quick,
        param_space={"i": tune.grid_search(list(range(trials))), "log": str(log)},
        run_config=tune.RunConfig(storage_path=storage, name=name, verbose=0),
    ).fit()
    stopper.join()
    finished_at_stop = len(log.read_text().split())
    statuses = [r.status for r in results]
    assert statuses.count("TERMINATED") <= finished_at_stop
    assert statuses.count("TERMINATED") < trials // 2  # the stop stopped the run
    assert "PENDING" in statuses

    resumed = tune.Tuner.restore(os.path.join(storage, name)).fit()
    assert [r.status for r in resumed] == ["TERMINATED"] * trials
    for result in resumed:
        assert list(result.metrics_dataframe["training_iteration"]) == list(range(1, 9))
    finished = log.read_text().split()
    assert sorted(map(int, finished)) == list(range(trials))  # each trial finished once
