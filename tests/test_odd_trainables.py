"""Trainables a new user might write: non-finite metrics, strings and nested dicts, a huge report,
no report at all, metric types that change, loops that never return, and code that cannot be
pickled. Real runs on the session Ray; the assertions are what a user would check afterwards
(statuses, metrics, dataframes), never timings."""

from __future__ import annotations

import datetime
import math
import os
import threading
import time

import pytest

import rtune as tune

NAN, INF = math.nan, math.inf

# each trial's history of "loss", by the grid value that picks it
HISTORIES = {
    "A": [1.0, NAN, INF, -INF, 0.5],  # every kind of non-finite value, then the best last value
    "B": [1.0, 2.0, NAN],  # NaN last: has no "last" score
    "C": [3.0, NAN, 2.0],
}


def non_finite(config):
    for loss in HISTORIES[config["trial"]]:
        tune.report({"loss": loss})


def run(trainable, storage, name, tune_config=None, **run_config):
    return tune.Tuner(
        trainable,
        tune_config=tune_config,
        run_config=tune.RunConfig(storage_path=storage, name=name, verbose=0, **run_config),
    ).fit()


def same(a, b) -> bool:
    """Equal, counting NaN as equal to NaN."""
    return (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)) or (
        a == b
    )


def assert_finished_cleanly(result):
    assert result.status == "TERMINATED", result.error
    assert result.error is None


def assert_history_holds_each_iteration_once(result):
    frame = result.metrics_dataframe
    last = result.metrics.get("training_iteration", 0)
    assert list(frame.get("training_iteration", [])) == list(range(1, last + 1))


# --- NaN and infinity ---


@pytest.fixture(scope="module")
def non_finite_results(ray_local, tmp_path_factory):
    storage = str(tmp_path_factory.mktemp("non_finite") / "results")
    results = tune.Tuner(
        non_finite,
        param_space={"trial": tune.grid_search(sorted(HISTORIES))},
        tune_config=tune.TuneConfig(metric="loss", mode="min"),
        run_config=tune.RunConfig(storage_path=storage, name="non_finite", verbose=0),
    ).fit()
    return {result.config["trial"]: result for result in results}, results


def test_nan_and_inf_are_kept_in_every_history(non_finite_results):
    by_trial, grid = non_finite_results
    assert sorted(by_trial) == sorted(HISTORIES) and grid.num_errors == 0
    for name, history in HISTORIES.items():
        result = by_trial[name]
        assert_finished_cleanly(result)
        losses = list(result.metrics_dataframe["loss"])
        assert len(losses) == len(history)
        assert all(same(got, want) for got, want in zip(losses, history)), (name, losses)
        assert same(result.metrics["loss"], history[-1])
        assert_history_holds_each_iteration_once(result)


def test_the_result_grid_dataframe_keeps_a_nan_last_value(non_finite_results):
    _, grid = non_finite_results
    frame = grid.get_dataframe().set_index("config/trial")
    assert frame.loc["A", "loss"] == 0.5
    assert math.isnan(frame.loc["B", "loss"])
    assert frame.loc["C", "loss"] == 2.0


def test_best_result_skips_nan_and_inf(non_finite_results):
    _, grid = non_finite_results
    assert grid.get_best_result().config["trial"] == "A"  # TuneConfig's metric/mode: min
    assert grid.get_best_result(mode="max").config["trial"] == "C"  # B's last value is NaN
    # aggregated over the history: NaN values inside it are skipped
    assert grid.get_best_result(scope="all", mode="max").config["trial"] == "C"
    assert grid.get_best_result(scope="avg", mode="max").config["trial"] == "C"
    # asked not to filter, it still picks one trial and does not crash
    assert grid.get_best_result(filter_nan_and_inf=False).config["trial"] in HISTORIES


def test_best_result_of_a_metric_nobody_reported_is_a_clear_error(non_finite_results):
    _, grid = non_finite_results
    with pytest.raises(RuntimeError, match="No trial reported a finite value of 'accuracy'"):
        grid.get_best_result(metric="accuracy", mode="max")


# --- strings, nested dicts, lists, a huge report ---


def strings_and_nested(config):
    for step, name in enumerate(["abc", "def"], start=1):
        tune.report(
            {
                "name": name,
                "nested": {"a": {"b": step}, "c": name.upper()},
                "per_class": [0.1 * step, 0.2 * step],
                "loss": float(step),
            }
        )


def test_strings_and_nested_dicts(storage):
    results = run(strings_and_nested, storage, "nested")
    result = results[0]
    assert_finished_cleanly(result)
    # the last result as reported: nested dicts stay nested, strings stay strings
    assert result.metrics["name"] == "def"
    assert result.metrics["nested"] == {"a": {"b": 2}, "c": "DEF"}
    assert result.metrics["per_class"] == [0.2, 0.4]
    # the history flattens nested dicts into "a/b" columns
    frame = result.metrics_dataframe
    assert {"name", "nested/a/b", "nested/c", "per_class", "loss"} <= set(frame.columns)
    assert "nested" not in frame.columns
    assert list(frame["name"]) == ["abc", "def"]
    assert list(frame["nested/a/b"]) == [1, 2]
    assert list(frame["nested/c"]) == ["ABC", "DEF"]
    assert [list(v) for v in frame["per_class"]] == [[0.1, 0.2], [0.2, 0.4]]
    row = results.get_dataframe().iloc[0]
    assert row["nested/a/b"] == 2 and row["nested/c"] == "DEF" and row["name"] == "def"


HUGE = 5000


def huge_report(config):
    tune.report({f"metric_{i:04d}": i for i in range(HUGE)})


def test_a_report_with_five_thousand_keys(storage):
    results = run(huge_report, storage, "huge")
    result = results[0]
    assert_finished_cleanly(result)
    assert all(result.metrics[f"metric_{i:04d}"] == i for i in range(HUGE))
    frame = result.metrics_dataframe
    assert len(frame) == 1
    columns = [c for c in frame.columns if c.startswith("metric_")]
    assert len(columns) == HUGE
    assert [frame[c].iloc[0] for c in columns] == list(range(HUGE))
    assert results.get_dataframe().iloc[0]["metric_4999"] == 4999


# --- nothing reported ---


def reports_nothing(config):
    pass


def test_a_trainable_that_reports_nothing(storage):
    results = tune.Tuner(
        reports_nothing,
        tune_config=tune.TuneConfig(metric="loss", mode="min"),  # fit() looks for a best one
        run_config=tune.RunConfig(storage_path=storage, name="nothing", verbose=1),
    ).fit()
    result = results[0]
    assert_finished_cleanly(result)
    assert "loss" not in result.metrics
    assert not result.metrics.get("training_iteration")
    assert result.metrics_dataframe.empty
    assert len(results.get_dataframe()) == 1
    assert result.checkpoint is None
    with pytest.raises(RuntimeError, match="No trial reported a finite value of 'loss'"):
        results.get_best_result()


# --- a metric whose type changes ---


def changing_types(config):
    tune.report({"value": 1})
    tune.report({"value": "two"})
    tune.report({"value": 3.5})


def test_a_metric_whose_type_changes_between_iterations(storage):
    result = run(changing_types, storage, "changing")[0]
    assert_finished_cleanly(result)
    assert result.metrics["value"] == 3.5
    frame = result.metrics_dataframe
    assert len(frame) == 3
    assert_history_holds_each_iteration_once(result)
    assert frame["value"].notna().all()


def test_a_string_in_a_mixed_type_column_comes_back_as_written(storage):
    frame = run(changing_types, storage, "changing")[0].metrics_dataframe
    assert list(frame["value"])[1] == "two"


def numpy_and_odd_values(config):
    import numpy as np

    for step in (1, 2):
        tune.report(
            {
                "loss": np.float32(0.5 * step),
                "count": np.int64(step),
                "weights": np.arange(3) * step,
                "by_pair": {(0, 1): step},  # a key JSON cannot hold
                "when": datetime.date(2026, 1, step),
            }
        )


def test_numpy_values_dates_and_tuple_keys(storage):
    result = run(numpy_and_odd_values, storage, "numpy")[0]
    assert_finished_cleanly(result)
    assert result.metrics["count"] == 2
    frame = result.metrics_dataframe
    assert list(frame["loss"]) == [0.5, 1.0]
    assert list(frame["count"]) == [1, 2]
    assert [list(v) for v in frame["weights"]] == [[0, 1, 2], [0, 2, 4]]
    assert list(frame["by_pair/(0, 1)"]) == [1, 2]
    assert list(frame["when"]) == ["2026-01-01", "2026-01-02"]


# --- loops that never return ---


def reports_forever(config):
    step = 0
    while True:
        time.sleep(0.05)
        step += 1
        tune.report({"step": step})


# built in the test: a TimeoutStopper's clock starts when it is made, as in Ray Tune
STOPS = {
    "stop dict": lambda: ({"stop": {"training_iteration": 5}}, None),
    "MaximumIterationStopper": lambda: ({"stop": tune.stopper.MaximumIterationStopper(5)}, None),
    # long enough for the trial to start and report on a busy machine
    "time_budget_s": lambda: ({}, tune.TuneConfig(time_budget_s=3)),
    "TimeoutStopper": lambda: ({"stop": tune.stopper.TimeoutStopper(3)}, None),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", sorted(STOPS))
def test_a_trainable_that_reports_forever_is_stopped(storage, how):
    run_config, tune_config = STOPS[how]()
    results = run(reports_forever, storage, "forever", tune_config, **run_config)
    result = results[0]  # fit() returned
    assert_finished_cleanly(result)
    assert_history_holds_each_iteration_once(result)
    iterations = result.metrics["training_iteration"]
    if how == "stop dict":  # checked inside the trial actor: it stops at exactly that result
        assert iterations == 5
    elif how == "MaximumIterationStopper":  # decided in the controller: maybe one more
        assert iterations >= 5
    else:  # the time limit ended a trial that was running
        assert iterations >= 1 and result.metrics["step"] == iterations


def silent_forever(config):
    """Reports once (so the test can tell it ran), then loops without ever reporting again."""
    tune.report({"started": 1})
    while True:
        time.sleep(0.05)


@pytest.mark.timeout(30)
def test_a_trainable_that_loops_without_reporting_is_stopped_by_a_time_limit(storage):
    """A time limit ends the run (the trial's actor is killed FINAL_DRAIN_GRACE_S after it);
    TimeoutStopper takes the same path (stop_all, a final drain) as time_budget_s."""
    results = run(silent_forever, storage, "silent", tune.TuneConfig(time_budget_s=2))
    result = results[0]  # fit() returned
    assert result.status == "TERMINATED"
    assert result.metrics["started"] == 1


# --- code that cannot be pickled ---


def _function_closing_over(lock):
    def uses_lock(config):
        with lock:
            tune.report({"x": 1})

    return uses_lock


def _class_holding(lock):
    class HoldsLock(tune.Trainable):
        def step(self):
            with lock:
                return {"x": 1}

    return HoldsLock


@pytest.mark.parametrize("make", [_function_closing_over, _class_holding])
def test_an_unpicklable_trainable_fails_clearly_before_anything_is_written(storage, make):
    trainable = make(threading.Lock())
    with pytest.raises(TypeError, match="cannot be pickled") as info:  # at Tuner(...)
        tune.Tuner(trainable, run_config=tune.RunConfig(storage_path=storage, name="lock"))
    assert trainable.__name__ in str(info.value)
    assert "lock" in str(info.value)  # pickle's own reason: "cannot pickle '_thread.lock' ..."
    assert not os.path.exists(storage)
