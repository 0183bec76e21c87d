"""A user's mistakes give a clear error that names the problem, before any trial starts where that
is possible, and never an internal traceback."""

from __future__ import annotations

import os
import threading

import pytest

import rtune as tune


def simple(config):
    tune.report({"loss": 1.0})


def test_num_samples_below_one(storage):
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        tune.Tuner(simple, tune_config=tune.TuneConfig(num_samples=0))


def test_trainable_not_callable():
    with pytest.raises(TypeError, match="trainable must be a function or an rtune.Trainable"):
        tune.Tuner(42)


def test_class_not_a_trainable():
    class NotATrainable:
        pass

    with pytest.raises(TypeError, match="must subclass rtune.Trainable"):
        tune.Tuner(NotATrainable)


def test_bad_search_space_value():
    with pytest.raises(ValueError, match="lower"):
        tune.Tuner(simple, param_space={"lr": tune.uniform(1, 0)})


def test_param_space_not_a_dict():
    with pytest.raises(TypeError, match="param_space must be a dict"):
        tune.Tuner(simple, param_space=[1, 2])


def test_bad_resource_request():
    with pytest.raises(ValueError, match="'cpu' must be a number"):
        tune.Tuner(tune.with_resources(simple, {"cpu": -1}))


def test_bad_stop_type():
    with pytest.raises(TypeError):
        tune.Tuner(simple, run_config=tune.RunConfig(stop=42))


def test_unknown_stop_key_names_the_key_and_the_result_keys(storage):
    with pytest.raises(ValueError, match="mean_acc") as info:
        tune.Tuner(
            simple,
            run_config=tune.RunConfig(storage_path=storage, verbose=0, stop={"mean_acc": 0.9}),
        ).fit()
    assert "loss" in str(info.value)


def text_metric(config):
    tune.report({"loss": "high"})


def test_non_numeric_value_where_a_stop_compares(storage):
    with pytest.raises(TypeError, match="loss"):
        tune.Tuner(
            text_metric,
            run_config=tune.RunConfig(storage_path=storage, verbose=0, stop={"loss": 0.5}),
        ).fit()


def test_unpicklable_trainable_fails_before_launch(storage):
    lock = threading.Lock()

    def uses_lock(config):
        with lock:
            tune.report({"x": 1})

    with pytest.raises(TypeError, match="cannot be pickled"):
        tune.Tuner(uses_lock, run_config=tune.RunConfig(storage_path=storage, name="unpick")).fit()
    assert not os.path.exists(os.path.join(storage, "unpick"))


def test_unsatisfiable_resources_warn_and_stay_pending(storage, capfd):
    results = tune.Tuner(
        tune.with_resources(simple, {"cpu": 1, "no_such_resource": 1}),
        tune_config=tune.TuneConfig(time_budget_s=2),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    assert not results[0].metrics  # never started: no node has the resource
    assert "no node in the cluster can host" in capfd.readouterr().err


@pytest.mark.parametrize("made_up", ["../../escape", "/etc/passwd", "é" * 200, "x" * 500, ".."])
def test_trial_directories_never_leave_the_experiment(storage, made_up):
    """Whatever a trial_dirname_creator returns, the trial's files stay inside the experiment
    directory, under one name every filesystem accepts."""
    results = tune.Tuner(
        simple,
        tune_config=tune.TuneConfig(trial_dirname_creator=lambda trial: made_up),
        run_config=tune.RunConfig(storage_path=storage, name="safe", verbose=0),
    ).fit()
    experiment = os.path.realpath(os.path.join(storage, "safe"))
    trial_dir = os.path.realpath(results[0].path)
    assert os.path.dirname(trial_dir) == experiment
    assert len(os.path.basename(trial_dir).encode()) <= 255
    assert os.listdir(os.path.dirname(experiment)) == ["safe"]


def test_a_bad_pending_trials_setting_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv("RTUNE_MAX_PENDING_TRIALS", "many")
    storage = tmp_path / "results"
    run_config = tune.RunConfig(storage_path=str(storage), name="x")
    with pytest.raises(ValueError, match="RTUNE_MAX_PENDING_TRIALS must be a whole number"):
        tune.Tuner(simple, run_config=run_config).fit()  # at Tuner(...), which writes metadata
    assert not storage.exists()
