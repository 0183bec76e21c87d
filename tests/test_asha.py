"""ASHA (`AsyncHyperBandScheduler`): its decisions result by result, a restore that decides as the
uninterrupted run, a real run that stops the weak trials early, and Ray Tune's own example."""

from __future__ import annotations

import cloudpickle
import pytest
from scheduler_helpers import add_all, feed, run_of, run_ray_example

import rtune as tune
from rtune.schedulers import ASHAScheduler, AsyncHyperBandScheduler, FIFOScheduler, SchedulerNeeds

C, S = "CONTINUE", "STOP"


def _asha(**kw) -> AsyncHyperBandScheduler:
    args = dict(metric="score", mode="max", max_t=8, grace_period=1, reduction_factor=2)
    return ASHAScheduler(**{**args, **kw})


def test_rungs_are_counted_as_ray_tunes_and_it_keeps_fifo_order():
    scheduler = _asha()
    assert ASHAScheduler is AsyncHyperBandScheduler and isinstance(scheduler, FIFOScheduler)
    assert list(scheduler._rungs[0]) == [8, 4, 2, 1]  # max_t=8 is a power of 2: a rung too
    assert scheduler.needs == SchedulerNeeds(True, True, only_stops=True)
    assert list(_asha(brackets=2)._rungs[1]) == [8, 4, 2]
    assert list(_asha(max_t=100, reduction_factor=4)._rungs[0]) == [64, 16, 4, 1]


# a trial first at each rung goes on; b below a's value at rung 1 stops; c above goes on, and
# at rung 2 it is compared with a's value there; a reaching max_t stops
STEPS = [
    ("a", 1, 10.0),
    ("a", 2, 20.0),
    ("b", 1, 5.0),
    ("c", 1, 12.0),
    ("c", 2, 15.0),
    ("a", 3, 30.0),
    ("a", 4, 40.0),
    ("c", 3, 35.0),
    ("c", 4, 50.0),
    ("a", 8, 80.0),
]
EXPECTED = [C, C, S, C, S, C, C, C, C, S]


def test_decisions_for_max_mode_follow_each_rungs_cutoff():
    scheduler = _asha()
    run, views = run_of("a", "b", "c")
    add_all(scheduler, run, views)
    assert feed(scheduler, run, views, STEPS) == EXPECTED
    rungs = scheduler._rungs[0]
    # each trial recorded once per rung reached, with the value it had on reaching it
    assert rungs[1] == {"a": 10.0, "b": 5.0, "c": 12.0}
    assert rungs[2] == {"a": 20.0, "c": 15.0}
    assert rungs[4] == {"a": 40.0, "c": 50.0}
    assert "Using AsyncHyperBand: num_stopped=3" in scheduler.debug_string()
    assert "Bracket: Iter 8.000: None | Iter 4.000: " in scheduler.debug_string()


def test_min_mode_is_the_mirror_image():
    scheduler = _asha(mode="min")
    run, views = run_of("a", "b", "c")
    add_all(scheduler, run, views)
    mirrored = [(tid, it, -score) for tid, it, score in STEPS]
    assert feed(scheduler, run, views, mirrored) == EXPECTED


def test_the_cutoff_is_the_quantile_of_the_values_recorded_before():
    # rf=4: the 75th percentile of [1, 2, 3, 4] is 3.25 -> 3.2 stops, 3.3 goes on
    scheduler = _asha(reduction_factor=4, max_t=100)
    run, views = run_of("p", "q", "r", "s", "lo", "hi")
    add_all(scheduler, run, views)
    firsts = [(tid, 1, v) for tid, v in zip("pqrs", (1.0, 2.0, 3.0, 4.0))]
    assert feed(scheduler, run, views, firsts) == [C, C, C, C]  # each at or above the cutoff
    assert feed(scheduler, run, views, [("lo", 1, 3.2)]) == [S]
    scheduler._rungs[0][1].pop("lo")
    assert feed(scheduler, run, views, [("hi", 1, 3.3)]) == [C]


def test_a_rung_already_recorded_is_not_decided_again():
    scheduler = _asha()
    run, views = run_of("a", "b")
    add_all(scheduler, run, views)
    # b is worse than a at every later result, but past rung 1 it reaches no new rung until 2
    steps = [("a", 1, 10.0), ("b", 1, 10.0), ("b", 1, 1.0), ("a", 2, 10.0), ("b", 2, 9.0)]
    assert feed(scheduler, run, views, steps) == [C, C, C, C, S]
    assert scheduler._rungs[0][1] == {"a": 10.0, "b": 10.0}


def test_a_restore_mid_run_decides_as_the_uninterrupted_run():
    run, views = run_of("a", "b", "c")
    whole = _asha(brackets=3)
    add_all(whole, run, views)
    expected = feed(whole, run, views, STEPS)

    first = _asha(brackets=3)
    add_all(first, run, views)
    decided = feed(first, run, views, STEPS[:4])
    stored = cloudpickle.loads(cloudpickle.dumps(first.get_state()))  # as the experiment keeps it
    feed(first, run, views, STEPS[4:])  # the stored state does not move with later decisions
    restored = _asha(brackets=3)
    restored.set_state(stored)
    decided += feed(restored, run, views, STEPS[4:])
    assert decided == expected
    mine, theirs = restored.get_state(), whole.get_state()
    assert mine.pop("_rng").getstate() == theirs.pop("_rng").getstate() and mine == theirs
    # brackets are drawn from the stored generator: the next trial lands where it would have
    later_run, later = run_of("d")
    restored.on_trial_add(later_run, later["d"])
    whole.on_trial_add(later_run, later["d"])
    assert restored._bracket_of == whole._bracket_of


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_t": 0}, "max_t must be a number > 0, got 0"),
        ({"grace_period": -1}, "grace_period must be a number > 0, got -1"),
        ({"grace_period": 10, "max_t": 5}, r"grace_period \(10\) must be at most max_t \(5\)"),
        ({"reduction_factor": 1}, "reduction_factor must be a number > 1, got 1"),
        ({"brackets": 0}, "brackets must be an int >= 1, got 0"),
        ({"mode": "maximize"}, "mode must be 'min' or 'max', got 'maximize'"),
    ],
)
def test_bad_parameters_are_refused_naming_them(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _asha(**kwargs)


def test_metric_and_mode_come_from_the_tune_config_unless_they_conflict():
    scheduler = ASHAScheduler()
    with pytest.raises(ValueError, match="needs a metric and a mode"):
        scheduler.set_search_properties(None, None)
    assert scheduler.set_search_properties("loss", "min") is True
    assert (scheduler.metric, scheduler.mode) == ("loss", "min")
    assert scheduler.set_search_properties("acc", None) is False
    assert scheduler.set_search_properties(None, "max") is False
    with pytest.raises(ValueError, match="mode must be 'min' or 'max', got 'up'"):
        ASHAScheduler(metric="loss").set_search_properties(None, "up")


def test_a_result_without_the_metric_or_time_attr_goes_on_and_is_reported_once():
    run, views = run_of("a")
    scheduler = _asha(time_attr="epoch")
    scheduler.on_trial_add(run, views["a"])
    with pytest.warns(UserWarning, match="without 'epoch'"):
        decision = scheduler.on_trial_result(
            run, views["a"], {"training_iteration": 1, "score": 1.0}
        )
    assert decision == scheduler.CONTINUE
    assert scheduler.on_trial_result(run, views["a"], {"epoch": 1, "loss": 1.0}) == "CONTINUE"
    assert scheduler._rungs[0][1] == {}  # nothing recorded from either


def scored(config):
    for iteration in range(1, 9):
        tune.report({"score": config["x"] * iteration})


@pytest.mark.smoke
def test_a_real_run_stops_the_weak_trials_early_as_the_policy_predicts(storage):
    xs = [3, 1, 4, 2, 8, 5, 7, 6]
    results = tune.Tuner(
        scored,
        param_space={"x": tune.grid_search(xs)},
        tune_config=tune.TuneConfig(
            scheduler=ASHAScheduler(max_t=8, grace_period=1, reduction_factor=2),
            metric="score",
            mode="max",
            max_concurrent_trials=1,
        ),
        run_config=tune.RunConfig(storage_path=storage, name="asha"),
    ).fit()
    ran = {r.config["x"]: r.metrics["training_iteration"] for r in results}

    # the pure policy on the same results, one trial after another (max_concurrent_trials=1)
    policy = ASHAScheduler(metric="score", mode="max", max_t=8, grace_period=1, reduction_factor=2)
    ids = [f"x{x}" for x in xs]
    run, views = run_of(*ids)
    predicted = {}
    for x, tid in zip(xs, ids):
        policy.on_trial_add(run, views[tid])
        for iteration in range(1, 9):
            decision = policy.on_trial_result(
                run, views[tid], {"training_iteration": iteration, "score": x * iteration}
            )
            if decision == S or iteration == 8:
                predicted[x] = iteration
                break
    assert ran == predicted
    assert ran[1] == 1 and ran[2] == 1  # below the first rung's median when they reached it
    assert ran[8] == 8  # the best runs to max_t
    assert results.get_best_result().config["x"] == 8


@pytest.mark.slow
def test_ray_tunes_async_hyperband_example_runs_with_rtune(tmp_path):
    run_ray_example("async_hyperband_example.py", tmp_path)


def test_a_metric_set_on_the_scheduler_and_another_in_the_tune_config_is_refused():
    with pytest.raises(ValueError, match="differs from TuneConfig"):
        tune.Tuner(
            scored,
            tune_config=tune.TuneConfig(
                metric="loss", mode="min", scheduler=ASHAScheduler(metric="score", mode="max")
            ),
        )
