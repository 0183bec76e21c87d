"""The median stopping rule: which trials it stops, pauses or lets run, decided on real trial
records and views, and end to end on real Ray where trials run one after another."""

from __future__ import annotations

import pickle

import pytest

import rtune as tune
from rtune._durable import trial as T
from rtune._durable.trial import Trial
from rtune._execution.resources import ResourceRequest
from rtune._execution.views import ControllerView, view_of
from rtune.schedulers import MedianStoppingRule, SchedulerNeeds, TrialScheduler

CONTINUE, STOP, PAUSE = TrialScheduler.CONTINUE, TrialScheduler.STOP, TrialScheduler.PAUSE


def _trial(trial_id: str, index: int) -> Trial:
    return Trial(
        trial_id=trial_id,
        index=index,
        trial_name=f"median_{trial_id}",
        relpath=f"median_{trial_id}",
        config={"x": index},
        experiment_tag=str(index),
        resources=ResourceRequest(((("CPU", 1.0),),)),
    )


class Run:
    """A scheduler and real trial records, fed results as the engine would."""

    def __init__(self, scheduler: MedianStoppingRule, ids: list[str]):
        self.scheduler = scheduler
        self.records = {tid: _trial(tid, i) for i, tid in enumerate(ids)}
        self.controller = ControllerView(self.records)
        for record in self.records.values():
            scheduler.on_trial_add(self.controller, view_of(record))

    def report(self, trial_id: str, time: float, value: float, metric: str = "score") -> str:
        record = self.records[trial_id]
        result = {"time": time, metric: value, "config": record.config}
        record.last_result = result
        return self.scheduler.on_trial_result(self.controller, view_of(record), result)

    def complete(self, trial_id: str) -> None:
        record = self.records[trial_id]
        record.status = T.TERMINATED
        last = {k: v for k, v in record.last_result.items() if k != "config"}
        self.scheduler.on_trial_complete(self.controller, view_of(record), last)


def _rule(**kwargs) -> MedianStoppingRule:
    defaults = dict(time_attr="time", metric="score", mode="max", grace_period=2)
    defaults["min_samples_required"] = 2
    return MedianStoppingRule(**{**defaults, **kwargs})


def _two_done(run: Run, values_a=(10, 20, 30), values_b=(6, 12, 18)) -> None:
    """Trials a and b run to time 3: running means at time 2 are 15 and 9 (median 12)."""
    for trial_id, values in (("a", values_a), ("b", values_b)):
        for time, value in enumerate(values, start=1):
            assert run.report(trial_id, time, value) == CONTINUE
        run.complete(trial_id)


def test_nothing_is_stopped_before_the_grace_period_or_without_enough_other_trials():
    run = Run(_rule(min_samples_required=2), ["a", "b", "c"])
    for time in (1, 2, 3):  # a alone: no other trial has data
        assert run.report("a", time, 100) == CONTINUE
    for time in (1, 2, 3):  # b has one other (a) of the two required, far worse or not
        assert run.report("b", time, 0) == CONTINUE
    assert run.report("c", 1, -5) == CONTINUE  # time 1 < grace_period 2
    assert run.report("c", 2, -5) == STOP  # now two others have data, and c is worse
    assert run.scheduler.debug_string() == "Using MedianStoppingRule: num_stopped=1."


def test_worse_than_the_median_of_running_means_stops_and_better_or_equal_continues():
    run = Run(_rule(), ["a", "b", "c", "d", "e", "f"])
    _two_done(run)
    # at time 2 the others' running means are 15 (a) and 9 (b): the median is 12
    assert run.report("c", 1, 11.9) == CONTINUE
    assert run.report("c", 2, 11.0) == STOP  # best so far 11.9 < 12
    assert run.report("d", 1, 12) == CONTINUE
    # c counts too now (running mean 11.45): the median of 15, 9 and 11.45 is 11.45
    assert run.report("d", 2, 1) == CONTINUE  # its best so far (12) is compared, not its latest
    # at time 3: a 20, b 12, c 11.45 (its results up to 2), d 6.5 -> median 11.725
    assert run.report("e", 3, 11.7) == STOP
    assert run.report("f", 3, 11.75) == CONTINUE
    assert run.scheduler.stopped_trials == ["c", "e"]


def test_the_running_mean_uses_only_results_up_to_the_checked_time():
    run = Run(_rule(), ["a", "b", "c"])
    _two_done(run, values_a=(10, 20, 1000), values_b=(6, 12, 1000))
    # at time 2 a's and b's later results (time 3) do not count: median stays 12
    assert run.report("c", 2, 11.5) == STOP


def test_mode_min_mirrors_mode_max():
    run = Run(_rule(mode="min"), ["a", "b", "c", "d"])
    _two_done(run, values_a=(-10, -20, -30), values_b=(-6, -12, -18))
    assert run.report("c", 2, -11.9) == STOP  # median -12; -11.9 is worse when lower is better
    assert run.report("d", 2, -12.1) == CONTINUE


def test_hard_stop_false_pauses_once_and_the_resumed_trial_runs_on():
    rule = _rule(hard_stop=False)
    assert rule.needs == SchedulerNeeds(decides_each_result=True, runs_in_order=False)
    assert _rule().needs == SchedulerNeeds(
        decides_each_result=True, runs_in_order=True, only_stops=True
    )
    run = Run(rule, ["a", "b", "c"])
    _two_done(run)
    assert run.report("c", 2, 0) == PAUSE
    run.records["c"].status = T.PAUSED
    assert rule.choose_trial_to_run(run.controller) is view_of(run.records["c"])
    run.records["c"].status = T.RUNNING
    assert run.report("c", 3, 0) == CONTINUE  # paused once: resumed, it runs to its end
    assert rule.debug_string() == "Using MedianStoppingRule: num_stopped=1."


@pytest.mark.parametrize(
    ("min_time_slice", "decisions"),
    [
        # every result checked: best 30 < median 35 (a's and b's means up to 6) at time 6
        (0, [CONTINUE, CONTINUE, CONTINUE, CONTINUE, STOP]),
        # checked at 2, then at 5 (5 - 2 >= 3; 30 is not below the median 30), then not before 8
        (3, [CONTINUE, CONTINUE, CONTINUE, CONTINUE, CONTINUE, CONTINUE, STOP]),
    ],
)
def test_min_time_slice_spaces_the_checks(min_time_slice, decisions):
    run = Run(_rule(min_time_slice=min_time_slice), ["a", "b", "c"])
    rising = (10, 20, 30, 40, 50, 60)  # running mean up to t: 5 * (t + 1)
    _two_done(run, values_a=rising, values_b=rising)
    seen = [run.report("c", 2, 30)]
    for time in range(3, 9):
        seen.append(run.report("c", time, 0))
        if seen[-1] == STOP:
            break
    assert seen == decisions


def test_a_state_round_trip_mid_run_gives_the_same_later_decisions():
    def feed_first(run):
        _two_done(run)
        return [run.report("c", 1, 14), run.report("c", 2, 13)]

    def feed_rest(run):
        return [
            run.report("d", 2, 12.5),
            run.report("c", 3, 1),
            run.report("d", 3, 0),
            run.report("e", 2, 1),
        ]

    straight = Run(_rule(min_time_slice=1), ["a", "b", "c", "d", "e"])
    first = feed_first(straight)
    state = pickle.loads(pickle.dumps(straight.scheduler.get_state()))  # as stored
    later = feed_rest(straight)

    restored_rule = _rule(min_time_slice=1)
    restored_rule.set_state(state)
    restored = Run(restored_rule, ["a", "b", "c", "d", "e"])
    assert feed_rest(restored) == later
    assert restored_rule.get_state() == straight.scheduler.get_state()
    assert first == [CONTINUE, CONTINUE] and later == [STOP, CONTINUE, CONTINUE, STOP]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "maximum"}, "mode must be 'min' or 'max', got 'maximum'"),
        ({"grace_period": -1}, "grace_period must be a number >= 0, got -1"),
        ({"min_samples_required": 0}, "min_samples_required must be an integer >= 1, got 0"),
        ({"min_samples_required": 2.5}, "min_samples_required must be an integer >= 1, got 2.5"),
        ({"min_time_slice": -0.5}, "min_time_slice must be a number >= 0, got -0.5"),
        ({"time_attr": ""}, "time_attr must be a key name"),
        ({"hard_stop": "yes"}, "hard_stop must be True or False"),
    ],
)
def test_bad_parameters_are_refused_naming_them(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MedianStoppingRule(**kwargs)


def test_a_result_missing_time_attr_or_metric_names_the_key_and_the_trial():
    run = Run(_rule(), ["a"])
    with pytest.raises(ValueError, match="trial a reported a result without 'time'"):
        run.scheduler.on_trial_result(run.controller, view_of(run.records["a"]), {"score": 1})
    with pytest.raises(ValueError, match="trial a reported a result without 'score'"):
        run.report("a", 1, 5, metric="loss")


def test_metric_and_mode_come_from_tune_config_unless_the_rule_has_its_own():
    rule = MedianStoppingRule()
    with pytest.raises(ValueError, match="no metric"):
        Run(rule, ["a"])
    assert rule.set_search_properties("score", "min") is True
    assert (rule.metric, rule.mode) == ("score", "min")
    assert rule.set_search_properties("loss", None) is False  # it has a metric now
    assert _rule().set_search_properties(None, "min") is False
    with pytest.raises(ValueError, match="mode must be"):
        MedianStoppingRule().set_search_properties("score", "best")


# ---- end to end ----

XS = [10, 8, 2, 9, 1, 7]
LAST_ITERATION = 6


def linear(config):
    for iteration in range(1, LAST_ITERATION + 1):
        tune.report({"score": config["x"] * iteration})


def _e2e_rule() -> MedianStoppingRule:
    return MedianStoppingRule(
        time_attr="training_iteration",
        metric="score",
        mode="max",
        grace_period=2,
        min_samples_required=2,
    )


def _predicted_last_iterations() -> dict[int, int]:
    """What the rule decides for the trials run one after another, computed without Ray."""
    rule = _e2e_rule()
    ids = [f"t{i}" for i in range(len(XS))]
    records = {tid: _trial(tid, i) for i, tid in enumerate(ids)}
    controller = ControllerView(records)
    last = {}
    for tid, x in zip(ids, XS, strict=True):
        view = view_of(records[tid])
        rule.on_trial_add(controller, view)
        for iteration in range(1, LAST_ITERATION + 1):
            result = {"training_iteration": iteration, "score": x * iteration}
            last[x] = iteration
            if rule.on_trial_result(controller, view, result) == STOP:
                break
        rule.on_trial_complete(controller, view, result)
    return last


@pytest.mark.smoke
def test_trials_run_in_order_stop_where_the_rule_predicts(storage):
    expected = _predicted_last_iterations()
    # at iteration 2 the low ones are below the median of the earlier trials' running means
    assert expected == {10: 6, 8: 6, 2: 2, 9: 6, 1: 2, 7: 6}
    scheduler = _e2e_rule()
    results = tune.Tuner(
        linear,
        param_space={"x": tune.grid_search(XS)},
        tune_config=tune.TuneConfig(scheduler=scheduler, max_concurrent_trials=1),
        run_config=tune.RunConfig(
            storage_path=storage, verbose=0, stop={"training_iteration": LAST_ITERATION}
        ),
    ).fit()
    assert results.num_errors == 0 and results.num_terminated == len(XS)
    ran = {r.config["x"]: list(r.metrics_dataframe["training_iteration"]) for r in results}
    assert ran == {x: list(range(1, n + 1)) for x, n in expected.items()}
    assert scheduler.debug_string() == "Using MedianStoppingRule: num_stopped=2."
