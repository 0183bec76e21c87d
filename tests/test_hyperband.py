"""Synchronous HyperBand (`HyperBandScheduler`): Ray Tune's bracket layout, halving that waits
for the whole bracket, which paused trials run again, a restore mid-bracket that decides as the
uninterrupted run, a real run where each trial ends where the policy says, and Ray Tune's own
example."""

from __future__ import annotations

import json
import os
import tempfile

import cloudpickle
import pytest
from iteration_checkpoints import (
    ctrl_c_when,
    hold_until_stopped,
    report_iteration,
    resume_iteration,
)
from scheduler_helpers import feed, run_of, run_ray_example

import rtune as tune
from rtune._durable import trial as T
from rtune.schedulers import FIFOScheduler, HyperBandScheduler, SchedulerNeeds

C, S, P = "CONTINUE", "STOP", "PAUSE"


def _hyperband(**kw) -> HyperBandScheduler:
    return HyperBandScheduler(**{**dict(metric="score", mode="max", max_t=9), **kw})


def _layout(scheduler) -> list[list[tuple[int, int] | None]]:
    """Each band's brackets as (max trials, first milestone)."""
    return [[None if b is None else (b.n, b.milestone) for b in band] for band in scheduler._bands]


def _add(scheduler, run, views, ids):
    for tid in ids:
        scheduler.on_trial_add(run, views[tid])


def test_brackets_are_laid_out_as_ray_tunes_for_max_t_81_and_eta_3():
    scheduler = HyperBandScheduler(metric="score", mode="max")
    assert isinstance(scheduler, FIFOScheduler)
    assert scheduler.needs == SchedulerNeeds(decides_each_result=True, runs_in_order=False)
    ids = [f"t{i}" for i in range(5 + 8 + 15 + 34 + 81 + 1)]
    run, views = run_of(*ids)
    _add(scheduler, run, views, ids)
    # Ray Tune's n0 = ceil(5 / (s+1) * 3**s) and r0 = 81 / 3**s, filled smallest first; the
    # 144th trial opens a second band
    assert _layout(scheduler) == [[(5, 81), (8, 27), (15, 9), (34, 3), (81, 1)], [(5, 81)]]
    assert [scheduler._bracket_of[t] for t in ("t0", "t4", "t5", "t12", "t13", "t143")] == [
        (0, 0), (0, 0), (0, 1), (0, 1), (0, 2), (1, 0),
    ]  # fmt: skip
    assert "Using HyperBand: num_stopped=0 total_brackets=6" in scheduler.debug_string()


def test_a_bracket_too_small_to_run_is_skipped_as_in_ray_tune():
    # max_t=200: r0 = 200, 66, 22, 7, 2, then int(200 / 243) == 0: no sixth bracket
    scheduler = _hyperband(max_t=200)
    ids = [f"t{i}" for i in range(6 + 9 + 18 + 41 + 98 + 1)]
    run, views = run_of(*ids)
    _add(scheduler, run, views, ids)
    assert _layout(scheduler) == [
        [(6, 200), (9, 66), (18, 22), (41, 7), (98, 2), None],
        [(6, 200)],
    ]


# max_t=9, eta=3: bracket 0 holds a, b, c (run to 9); bracket 1 holds d..h (halved at 3, the
# best 2 of 5 run on to 9)
IDS = ["a", "b", "c", "d", "e", "f", "g", "h"]
SCORES = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0, "e": 8.0, "f": 6.0, "g": 5.0, "h": 7.0}


def _to_milestone(tid, upto, sign=1.0):
    return [(tid, it, sign * SCORES[tid] * it) for it in range(1, upto + 1)]


@pytest.mark.parametrize("sign, mode", [(1.0, "max"), (-1.0, "min")])
def test_a_bracket_pauses_its_trials_until_all_arrive_then_keeps_the_best_third(sign, mode):
    scheduler = _hyperband(mode=mode)
    run, views = run_of(*IDS)
    _add(scheduler, run, views, IDS)
    assert _layout(scheduler) == [[(3, 9), (5, 3)]]
    for tid in "dhgf":  # each reaches 3 and waits for the rest of its bracket
        assert feed(scheduler, run, views, _to_milestone(tid, 3, sign)) == [C, C, P]
        views[tid].record.status = T.PAUSED
    # e arrives last: the best two (e, h) go on, e at once, h un-paused; d, g, f must stop
    assert feed(scheduler, run, views, _to_milestone("e", 3, sign)) == [C, C, C]
    bracket = scheduler._bands[0][1]
    assert list(bracket.live) == ["e", "h"] and bracket.milestone == 9 and bracket.n == 2
    assert bracket.to_unpause == {"h"}
    # the paused losers end where they wait, as Ray Tune ends them: through stop_trial
    assert run.stopped == ["d", "g", "f"] and not scheduler._to_stop
    assert "num_stopped=3" in scheduler.debug_string()
    # the last milestone stops each trial when it reaches it, without waiting
    steps = [("e", it, sign * 8.0 * it) for it in range(4, 10)]
    assert feed(scheduler, run, views, steps) == [C] * 5 + [S]


def test_a_trial_ending_early_lets_its_paused_bracket_mates_be_halved():
    scheduler = _hyperband()
    run, views = run_of(*IDS)
    _add(scheduler, run, views, IDS)
    for tid in "defg":
        assert feed(scheduler, run, views, _to_milestone(tid, 3))[-1] == P
    feed(scheduler, run, views, [("h", 1, 7.0)])
    scheduler.on_trial_error(run, views["h"])  # h will never reach 3: the other four are halved
    assert scheduler._bands[0][1].to_unpause == {"e", "f"}
    assert run.stopped == ["d", "g"]


def test_choose_trial_to_run_takes_the_runnable_trials_of_the_least_done_bracket():
    scheduler = _hyperband()
    run, views = run_of(*IDS)
    _add(scheduler, run, views, IDS)
    records = {tid: views[tid].record for tid in IDS}
    assert scheduler.choose_trial_to_run(run) is views["a"]  # both brackets 0% done: in order
    feed(scheduler, run, views, [("a", 1, 1.0)])  # bracket 0 is now 1/27 done, bracket 1 0/27
    records["a"].status = T.RUNNING
    assert scheduler.choose_trial_to_run(run) is views["d"]
    for tid in "dfgh":
        feed(scheduler, run, views, _to_milestone(tid, 3))
        records[tid].status = T.PAUSED
    records["b"].status = records["c"].status = T.TERMINATED
    # bracket 0 is the less complete now but has nothing to start (a runs); d, f, g, h wait at
    # their milestone for e
    assert scheduler.choose_trial_to_run(run) is views["e"]
    records["e"].status = T.RUNNING
    assert scheduler.choose_trial_to_run(run) is None  # d, f, g, h wait for e
    feed(scheduler, run, views, _to_milestone("e", 3))
    assert run.stopped == ["d", "g", "f"]  # the losers end where they wait
    for tid in run.stopped:
        records[tid].status = T.TERMINATED
    assert scheduler.choose_trial_to_run(run) is views["h"]  # the paused winner, un-paused
    # a restored paused trial is PENDING, but it waits at its milestone like a paused one
    scheduler2 = _hyperband()
    run2, views2 = run_of(*[f"r{i}" for i in range(8)])
    _add(scheduler2, run2, views2, views2)
    for tid in ("r3", "r4"):
        feed(scheduler2, run2, views2, [(tid, 3, 1.0)])
        views2[tid].record.status = T.TERMINATED if tid == "r4" else T.PENDING
    assert scheduler2.choose_trial_to_run(run2) is views2["r0"]
    for tid in ("r0", "r1", "r2"):
        views2[tid].record.status = T.TERMINATED
    assert scheduler2.choose_trial_to_run(run2) is views2["r5"]  # not r3, parked at 3


def _simulate(scheduler, ids, score, last_iteration=20):
    """The engine's loop, one trial at a time (max_concurrent_trials=1), for a function trainable
    that checkpoints every iteration: -> each trial's final training_iteration."""
    run, views = run_of(*ids)
    records = {tid: views[tid].record for tid in ids}
    _add(scheduler, run, views, ids)
    reached = dict.fromkeys(ids, 0)

    def end_stopped():
        for stopped in run.stopped:
            if records[stopped].status in T.UNFINISHED:
                records[stopped].status = T.TERMINATED
                scheduler.on_trial_remove(run, views[stopped])
        run.stopped.clear()

    while True:
        chosen = scheduler.choose_trial_to_run(run)
        if chosen is None:
            break
        tid = chosen.trial_id
        records[tid].status = T.RUNNING
        while True:
            reached[tid] += 1
            it = reached[tid]
            result = {"training_iteration": it, "score": score(tid, it)}
            decision = scheduler.on_trial_result(run, views[tid], result)
            stopped_now = tid in run.stopped
            end_stopped()
            if stopped_now:
                break
            if decision == P:
                records[tid].status = T.PAUSED
                break
            if decision == S or it == last_iteration:
                records[tid].status = T.TERMINATED
                scheduler.on_trial_complete(run, views[tid], result)
                break
    assert all(r.status == T.TERMINATED for r in records.values()), "a trial was left behind"
    return reached


def test_the_whole_run_ends_every_trial_where_the_policy_says():
    final = _simulate(_hyperband(), IDS, lambda tid, it: SCORES[tid] * it)
    # bracket 0 runs to 9; of bracket 1, e and h run to 9, the rest end at 3, where they waited
    assert final == {"a": 9, "b": 9, "c": 9, "d": 3, "e": 9, "f": 3, "g": 3, "h": 9}


def test_a_restore_mid_bracket_decides_as_the_uninterrupted_run():
    steps = [s for tid in "dhgf" for s in _to_milestone(tid, 3)]
    later = _to_milestone("e", 3) + [("h", 4, 28.0), ("h", 5, 35.0)]
    run, views = run_of(*IDS)
    whole = _hyperband()
    _add(whole, run, views, IDS)
    expected = feed(whole, run, views, steps + later)
    expected_stops, run.stopped[:] = list(run.stopped), []

    first = _hyperband()
    _add(first, run, views, IDS)
    decided = feed(first, run, views, steps)
    stored = cloudpickle.loads(cloudpickle.dumps(first.get_state()))  # as the experiment keeps it
    feed(first, run, views, later)  # the stored state does not move with later decisions
    run.stopped.clear()
    restored = _hyperband()
    restored.set_state(stored)
    decided += feed(restored, run, views, later)
    assert decided == expected and decided[-3:] == [C, C, C]
    assert run.stopped == expected_stops == ["d", "g", "f"]
    assert cloudpickle.dumps(restored.get_state()) == cloudpickle.dumps(whole.get_state())
    # new trials land where they would have
    more_run, more = run_of("x", "y")
    _add(restored, more_run, more, more)
    _add(whole, more_run, more, more)
    assert restored._bracket_of == whole._bracket_of


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_t": 0}, "max_t must be a number >= 1, got 0"),
        ({"max_t": "81"}, "max_t must be a number >= 1, got '81'"),
        ({"reduction_factor": 1}, "reduction_factor must be a number > 1, got 1"),
        ({"time_attr": ""}, "time_attr must be a result key"),
        ({"mode": "maximize"}, "mode must be 'min' or 'max', got 'maximize'"),
        ({"stop_last_trials": "yes"}, "stop_last_trials must be True or False"),
    ],
)
def test_bad_parameters_are_refused_naming_them(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _hyperband(**kwargs)


def test_metric_and_mode_come_from_the_tune_config_unless_they_conflict():
    scheduler = HyperBandScheduler()
    with pytest.raises(ValueError, match="needs a metric and a mode"):
        scheduler.set_search_properties(None, None)
    assert scheduler.set_search_properties("loss", "min") is True
    assert (scheduler.metric, scheduler.mode) == ("loss", "min")
    assert scheduler.set_search_properties("loss", "min") is True  # a restored Tuner's again
    assert scheduler.set_search_properties("acc", None) is False
    assert scheduler.set_search_properties(None, "max") is False
    run, views = run_of("a")
    with pytest.raises(ValueError, match="needs a metric and a mode"):
        HyperBandScheduler(mode="max").on_trial_add(run, views["a"])
    with pytest.raises(ValueError, match="differs from TuneConfig"):
        tune.Tuner(
            scored,
            tune_config=tune.TuneConfig(
                metric="loss", mode="min", scheduler=HyperBandScheduler(metric="score", mode="max")
            ),
        )


def test_a_result_without_the_metric_or_time_attr_goes_on_and_is_reported_once():
    run, views = run_of("a")
    scheduler = _hyperband(time_attr="epoch", max_t=1)
    scheduler.on_trial_add(run, views["a"])
    with pytest.warns(UserWarning, match="without 'epoch'"):
        decision = scheduler.on_trial_result(
            run, views["a"], {"training_iteration": 1, "score": 1.0}
        )
    assert decision == C
    assert scheduler.on_trial_result(run, views["a"], {"epoch": 1, "loss": 1.0}) == C
    assert scheduler.on_trial_result(run, views["a"], {"epoch": 1, "score": 1.0}) == S


def scored(config):
    """Checkpoints every iteration and resumes after its checkpoint, as a paused trial must."""
    start = 1
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as path, open(os.path.join(path, "it.json")) as src:
            start = json.load(src)["it"] + 1
    for iteration in range(start, 21):
        with tempfile.TemporaryDirectory() as path:
            with open(os.path.join(path, "it.json"), "w") as out:
                json.dump({"it": iteration}, out)
            tune.report(
                {"score": config["x"] * iteration}, checkpoint=tune.Checkpoint.from_directory(path)
            )


def test_a_real_run_ends_each_trial_where_the_policy_predicts(storage):
    xs = [SCORES[tid] for tid in IDS]
    results = tune.Tuner(
        scored,
        param_space={"x": tune.grid_search(xs)},
        tune_config=tune.TuneConfig(
            scheduler=HyperBandScheduler(max_t=9, reduction_factor=3),
            metric="score",
            mode="max",
            max_concurrent_trials=2,
        ),
        run_config=tune.RunConfig(storage_path=storage, name="hyperband"),
    ).fit()
    ran = {r.config["x"]: r.metrics["training_iteration"] for r in results}
    predicted = _simulate(_hyperband(), IDS, lambda tid, it: SCORES[tid] * it)
    assert ran == {SCORES[tid]: final for tid, final in predicted.items()}
    assert {r.status for r in results} == {T.TERMINATED} and not results.errors
    for result in results:  # paused at 3 and resumed from there: each iteration ran once
        final = result.metrics["training_iteration"]
        assert list(result.metrics_dataframe["training_iteration"]) == list(range(1, final + 1))
    assert results.get_best_result().config["x"] == 8.0


def held_scored(config):
    """`scored`, but x=8 (the last of bracket 1) holds inside its third iteration until the run
    is stopped (or `go` exists): the run is interrupted mid-bracket."""
    for iteration in range(resume_iteration() + 1, 21):
        with open(config["log"], "a") as out:
            out.write(f"{config['x']}:{iteration}\n")
        if config["x"] == 8.0 and iteration == 3:
            hold_until_stopped(config["go"])
        report_iteration(iteration, {"score": config["x"] * iteration})


@pytest.mark.slow
def test_a_run_stopped_mid_bracket_and_restored_ends_each_trial_as_the_uninterrupted_one(
    storage, tmp_path
):
    log, go = tmp_path / "log", tmp_path / "go"
    xs = [SCORES[tid] for tid in IDS]

    def bracket_one_is_waiting_for_x8() -> bool:
        started = set(log.read_text().split()) if log.exists() else set()
        return {f"{x}:3" for x in (4.0, 5.0, 6.0, 7.0, 8.0)} <= started

    ctrl_c_when(bracket_one_is_waiting_for_x8)
    stopped = tune.Tuner(
        held_scored,
        param_space={"x": tune.grid_search(xs), "log": str(log), "go": str(go)},
        tune_config=tune.TuneConfig(
            scheduler=HyperBandScheduler(max_t=9, reduction_factor=3),
            metric="score",
            mode="max",
            max_concurrent_trials=2,
        ),
        run_config=tune.RunConfig(storage_path=storage, name="hb_restore", verbose=0),
    ).fit()
    # stopped with bracket 1 at its first milestone (the held trial's iteration 3, recorded as
    # the stop let it, may have completed the bracket: then its losers ended there already)
    bracket_one = {r.config["x"]: r for r in stopped if r.config["x"] >= 4.0}
    assert {r.metrics["training_iteration"] for r in bracket_one.values()} == {3}
    assert {r.status for r in bracket_one.values()} <= {"PAUSED", "TERMINATED"}
    assert any(r.status == "PAUSED" for r in bracket_one.values())
    go.touch()
    results = tune.Tuner.restore(os.path.join(storage, "hb_restore")).fit()
    ran = {r.config["x"]: r.metrics["training_iteration"] for r in results}
    predicted = _simulate(_hyperband(), IDS, lambda tid, it: SCORES[tid] * it)
    assert ran == {SCORES[tid]: final for tid, final in predicted.items()}
    assert {r.status for r in results} == {T.TERMINATED}
    for result in results:  # resumed where each stopped: every iteration once
        final = result.metrics["training_iteration"]
        assert list(result.metrics_dataframe["training_iteration"]) == list(range(1, final + 1))


@pytest.mark.slow
def test_ray_tunes_hyperband_function_example_runs_with_rtune(tmp_path):
    proc = run_ray_example("hyperband_function_example.py", tmp_path)
    # the stop at 10 iterations comes before any milestone (200, 66, 22): nobody is left paused
    assert "rtune: 20 trials, 20 terminated, 0 errored." in proc.stdout
