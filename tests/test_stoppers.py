"""Stoppers: per-trial and experiment-wide decisions, their validation and their pickling."""

from __future__ import annotations

import datetime
import pickle

import cloudpickle
import pytest

import rtune as tune
from rtune.stopper import (
    CombinedStopper,
    DictStopper,
    ExperimentPlateauStopper,
    FunctionStopper,
    MaximumIterationStopper,
    Stopper,
    TimeoutStopper,
    TrialPlateauStopper,
    make_stopper,
)


class FakeClock:
    """A picklable clock the test moves by hand; copies made by pickling share the class's time."""

    now = 0.0

    def __call__(self) -> float:
        return FakeClock.now


class CustomStopper(Stopper):
    """The stopping guide's example: once any trial passes foo > 10, stop everything."""

    def __init__(self) -> None:
        self.should_stop = False

    def __call__(self, trial_id, result):
        if not self.should_stop and result["foo"] > 10:
            self.should_stop = True
        return self.should_stop

    def stop_all(self):
        return self.should_stop


# --- DictStopper ---


def test_dict_stopper_stops_when_any_criterion_is_reached():
    stopper = DictStopper({"training_iteration": 10, "mean_accuracy": 0.98})
    assert not stopper("t", {"training_iteration": 3, "mean_accuracy": 0.5})
    assert stopper("t", {"training_iteration": 10, "mean_accuracy": 0.5})
    assert stopper("t", {"training_iteration": 3, "mean_accuracy": 0.99})
    assert not stopper.stop_all()


def test_dict_stopper_reads_nested_keys():
    stopper = DictStopper({"val/acc": 0.9})
    assert not stopper("t", {"val": {"acc": 0.5}})
    assert stopper("t", {"val": {"acc": 0.95}})
    assert stopper("t", {"val/acc": 0.95})


def test_dict_stopper_names_missing_key_and_result_keys():
    stopper = DictStopper({"mean_acc": 0.9})
    expected = (
        r"Stopping criterion 'mean_acc' is not in the result of trial abc_00001\. "
        r"The result has: \['loss', 'training_iteration', 'val/acc'\]"
    )
    with pytest.raises(ValueError, match=expected):
        stopper("abc_00001", {"training_iteration": 1, "loss": 0.3, "val": {"acc": 1}})


def test_dict_stopper_rejects_non_numeric_result_value():
    with pytest.raises(TypeError, match=r"'loss' of trial t1 must be a number.*got str"):
        DictStopper({"loss": 1})("t1", {"loss": "high"})


@pytest.mark.parametrize(
    "criteria, error, match",
    [
        ([("a", 1)], TypeError, "stop criteria must be a dict, got list"),
        ({1: 2}, TypeError, "keys must be str, got 1"),
        ({"acc": True}, TypeError, "stop criterion 'acc' must be a number, got bool"),
        ({"acc": "0.9"}, TypeError, "stop criterion 'acc' must be a number, got str"),
        ({"done": "yes"}, TypeError, "stop criterion 'done' must be a number, got str"),
    ],
)
def test_dict_stopper_validation(criteria, error, match):
    with pytest.raises(error, match=match):
        DictStopper(criteria)


# --- simple stoppers ---


def test_function_stopper_and_guide_example():
    stopper = FunctionStopper(lambda trial_id, r: r["mean_accuracy"] / r["training_iteration"] > 5)
    assert stopper("t", {"mean_accuracy": 12, "training_iteration": 2})
    assert not stopper("t", {"mean_accuracy": 4, "training_iteration": 2})
    assert not stopper.stop_all()
    with pytest.raises(TypeError, match=r"must take two arguments \(trial_id, result\)"):
        FunctionStopper(lambda result: True)


def test_custom_stopper_from_the_guide_stops_everything():
    stopper = make_stopper(CustomStopper())
    assert not stopper("t1", {"foo": 3}) and not stopper.stop_all()
    assert stopper("t2", {"foo": 11}) and stopper.stop_all()
    assert stopper("t1", {"foo": 0})  # every trial stops from now on


def test_maximum_iteration_stopper():
    stopper = MaximumIterationStopper(3)
    assert not stopper("t", {"training_iteration": 2})
    assert stopper("t", {"training_iteration": 3})
    with pytest.raises(ValueError, match="max_iter must be >= 1, got 0"):
        MaximumIterationStopper(0)
    with pytest.raises(ValueError, match="'training_iteration' is not in the result of trial t"):
        stopper("t", {"loss": 1})


def test_trial_plateau_stopper_waits_for_window_and_grace_period():
    stopper = TrialPlateauStopper("loss", std=0.01, num_results=3, grace_period=4)
    decisions = [stopper("a", {"loss": v}) for v in (5.0, 1.0, 1.0, 1.0, 1.0)]
    assert decisions == [False, False, False, True, True]
    assert not stopper("b", {"loss": 1.0})  # windows are per trial
    noisy = TrialPlateauStopper("loss", num_results=2, grace_period=0)
    assert not noisy("a", {"loss": 1.0}) and not noisy("a", {"loss": 2.0})


def test_trial_plateau_stopper_metric_threshold():
    stopper = TrialPlateauStopper(
        "acc", num_results=2, grace_period=0, metric_threshold=0.9, mode="max"
    )
    assert not stopper("t", {"acc": 0.5}) and not stopper("t", {"acc": 0.5})  # flat but not good
    assert not stopper("t", {"acc": 0.95}) and stopper("t", {"acc": 0.95})
    with pytest.raises(ValueError, match="metric_threshold needs mode"):
        TrialPlateauStopper("acc", metric_threshold=0.9)
    with pytest.raises(ValueError, match="mode must be 'min' or 'max', got 'best'"):
        TrialPlateauStopper("acc", mode="best")


def test_experiment_plateau_stopper_top_values_and_patience():
    stopper = ExperimentPlateauStopper("loss", std=0.001, top=3, mode="min", patience=1)
    assert not stopper("a", {"loss": 1.0}) and not stopper("b", {"loss": 1.0})
    assert not stopper("c", {"loss": 1.0})  # plateau reached; patience asks for one more
    assert stopper("d", {"loss": 5.0}) and stopper.stop_all()  # worse value: top 3 still flat
    improving = ExperimentPlateauStopper("acc", top=2, mode="max")
    assert not improving("a", {"acc": 0.1}) and not improving("b", {"acc": 0.5})
    assert improving("c", {"acc": 0.5})


def test_timeout_stopper_counts_only_live_time_across_pickling():
    FakeClock.now = 100.0
    stopper = TimeoutStopper(datetime.timedelta(seconds=10), _clock=FakeClock())
    FakeClock.now = 106.0
    assert not stopper("t", {}) and not stopper.stop_all()
    data = pickle.dumps(stopper)
    FakeClock.now = 5000.0  # a new process: its clock has nothing to do with the old one
    restored = pickle.loads(data)
    assert restored.elapsed() == pytest.approx(6.0)
    FakeClock.now = 5003.0
    assert not restored.stop_all()
    FakeClock.now = 5004.0
    assert restored.stop_all()


def test_timeout_stopper_real_clock_and_validation():
    stopper = pickle.loads(cloudpickle.dumps(TimeoutStopper(3600)))
    assert 0 <= stopper.elapsed() < 60 and not stopper.stop_all()
    with pytest.raises(ValueError, match="timeout must be > 0"):
        TimeoutStopper(0)
    with pytest.raises(TypeError, match="seconds or a timedelta, got str"):
        TimeoutStopper("10")


def test_combined_stopper_feeds_every_stopper():
    plateau = ExperimentPlateauStopper("loss", top=2)
    combined = CombinedStopper(MaximumIterationStopper(1), plateau)
    assert combined("a", {"training_iteration": 1, "loss": 1.0})
    assert combined("b", {"training_iteration": 1, "loss": 1.0})
    assert plateau.stop_all() and combined.stop_all()  # plateau saw both results
    with pytest.raises(TypeError, match="CombinedStopper argument 1 must be a Stopper, got dict"):
        CombinedStopper(MaximumIterationStopper(1), {"loss": 1})


# --- make_stopper ---


def test_make_stopper_dispatch():
    assert make_stopper(None) is None
    assert isinstance(make_stopper({"loss": 1}), DictStopper)
    custom = CustomStopper()
    assert make_stopper(custom) is custom
    function = make_stopper(lambda trial_id, result: result["x"] > 1)
    assert isinstance(function, FunctionStopper) and function("t", {"x": 2})


def test_make_stopper_errors():
    with pytest.raises(TypeError, match=r"pass an instance: stop=CustomStopper\(\)"):
        make_stopper(CustomStopper)
    with pytest.raises(TypeError, match="got int"):
        make_stopper(5)
    with pytest.raises(TypeError, match="must take two arguments"):
        make_stopper(lambda: True)


def test_stoppers_pickle_with_their_counts():
    stopper = TrialPlateauStopper("loss", num_results=2, grace_period=0)
    stopper("t", {"loss": 1.0})
    restored = pickle.loads(cloudpickle.dumps(stopper))
    assert restored("t", {"loss": 1.0})


def test_ray_tunes_stop_done_true_ends_a_trial_at_the_result_that_says_done(storage):
    """`stop={"done": True}` (Ray Tune's examples use it): a trial ends at the result whose
    `done` is true, and results without `done` go on."""

    def flagged(config):
        for i in range(1, 10):
            tune.report({"i": i, **({"done": True} if i == 4 else {})})

    results = tune.Tuner(
        flagged, run_config=tune.RunConfig(storage_path=storage, verbose=0, stop={"done": True})
    ).fit()
    assert results.num_errors == 0 and results[0].metrics["training_iteration"] == 4
    assert DictStopper({"done": True})("t", {"done": True})
    assert not DictStopper({"done": True})("t", {"i": 1})
