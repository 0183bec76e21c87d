"""Tuner.restore in-process: the restore matrix, storage as the truth for checkpoints, and one
history per trial."""

from __future__ import annotations

import json
import os
import time

import pytest
from iteration_checkpoints import (
    ctrl_c_when,
    hold_until_stopped,
    report_iteration,
    resume_iteration,
)

import rtune as tune


def counting(config):
    """Counts to 4 with a checkpoint each iteration; fails at iteration 2 while the marker file
    named in the config is absent, so a restored run can succeed."""
    start = resume_iteration()
    for it in range(start, 4):
        if it == 2 and config["fail"] and not os.path.exists(config["marker"]):
            raise RuntimeError("fails until the marker exists")
        with open(config["log"], "a") as log:
            log.write(f"{config['id']} {it + 1}\n")
        report_iteration(it + 1, {"it": it + 1, "start": start})


def _run_errored_experiment(storage, tmp_path):
    log = str(tmp_path / "log.txt")
    marker = str(tmp_path / "marker")
    tune.Tuner(
        counting,
        param_space={
            "id": tune.grid_search([0, 1]),
            "fail": tune.sample_from(lambda spec: spec.config["id"] == 1),
            "log": log,
            "marker": marker,
        },
        run_config=tune.RunConfig(storage_path=storage, name="exp", verbose=0),
    ).fit()
    open(marker, "w").close()
    return os.path.join(storage, "exp"), log


def _executions(log, trial):
    return [int(line.split()[1]) for line in open(log) if line.split()[0] == str(trial)]


@pytest.mark.parametrize(
    "flags, expect_status, expect_history, expect_start",
    [
        ({}, "ERROR", [1, 2], None),
        ({"resume_errored": True}, "TERMINATED", [1, 2, 3, 4], 2),
        ({"restart_errored": True}, "TERMINATED", [1, 2, 3, 4], 0),
    ],
)
def test_errored_trials_by_flag(
    storage, tmp_path, flags, expect_status, expect_history, expect_start
):
    path, log = _run_errored_experiment(storage, tmp_path)
    assert tune.Tuner.can_restore(path)
    results = tune.Tuner.restore(path, **flags).fit()
    by_id = {r.config["id"]: r for r in results}
    assert by_id[0].status == "TERMINATED" and _executions(log, 0) == [1, 2, 3, 4]  # not re-run
    assert by_id[1].status == expect_status
    assert list(by_id[1].metrics_dataframe["training_iteration"]) == expect_history
    if expect_start is not None:
        assert by_id[1].metrics["start"] == expect_start


def fails_then_held(config):
    """Five iterations with a checkpoint each. The first run fails at iteration 4; once the
    marker exists, a run waits before iteration 2's report until rtune asks it to stop (or `go`
    exists)."""
    start = resume_iteration()
    for it in range(start, 5):
        if it == 3 and not os.path.exists(config["marker"]):
            raise RuntimeError("fails until the marker exists")
        if it == 1 and os.path.exists(config["marker"]):
            hold_until_stopped(config["go"])
        report_iteration(it + 1, {"it": it + 1, "start": start})


@pytest.mark.slow
def test_a_restarted_trial_stopped_midway_resumes_from_its_own_checkpoints(storage, tmp_path):
    """restart_errored starts the trial over; stopped at iteration 2 of its restart, it resumes
    from its own checkpoint 2, not from checkpoint 3 that the errored run left in storage."""
    marker, go = tmp_path / "marker", tmp_path / "go"
    config = {"marker": str(marker), "go": str(go)}
    path = os.path.join(storage, "restart")
    run_config = tune.RunConfig(storage_path=storage, name="restart", verbose=0)
    errored = tune.Tuner(fails_then_held, param_space=config, run_config=run_config).fit()
    assert errored[0].status == "ERROR" and errored[0].metrics["training_iteration"] == 3

    marker.touch()
    # the errored run's checkpoints are 0..2; the restart numbers on from 3
    restarted_checkpoint = os.path.join(errored[0].path, "checkpoint_000003", ".rtune_committed")

    def restart_committed_its_first_checkpoint() -> bool:
        try:
            with open(restarted_checkpoint) as src:
                return json.load(src)["epoch"] > 0
        except (OSError, ValueError):
            return False

    ctrl_c_when(restart_committed_its_first_checkpoint)
    stopped = tune.Tuner.restore(path, restart_errored=True).fit()
    assert stopped[0].status == "PAUSED" and stopped[0].metrics["training_iteration"] == 2
    # the errored run's checkpoints are not the restarted trial's
    restarted = [os.path.basename(c.path) for c, _ in stopped[0].best_checkpoints]
    assert restarted == ["checkpoint_000003", "checkpoint_000004"]

    go.touch()
    results = tune.Tuner.restore(path).fit()
    assert results[0].status == "TERMINATED"
    assert results[0].metrics["start"] == 2
    assert list(results[0].metrics_dataframe["training_iteration"]) == [1, 2, 3, 4, 5]
    assert list(results[0].metrics_dataframe["it"]) == [1, 2, 3, 4, 5]


def test_restore_without_the_trainable_and_with_a_wrong_one(storage, tmp_path):
    path, _ = _run_errored_experiment(storage, tmp_path)

    def other(config):
        pass

    with pytest.raises(ValueError, match="was run with trainable 'counting'"):
        tune.Tuner.restore(path, trainable=other)
    with pytest.raises(ValueError, match="param_space keys changed"):
        tune.Tuner.restore(path, param_space={"x": 1})
    results = tune.Tuner.restore(path, trainable=counting, resume_errored=True).fit()
    assert results.num_errors == 0


def test_restore_bad_paths(tmp_path, ray_local):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tune.Tuner.restore(str(tmp_path / "missing"))
    (tmp_path / "not_an_experiment").mkdir()
    with pytest.raises(ValueError, match="not an rtune experiment"):
        tune.Tuner.restore(str(tmp_path / "not_an_experiment"))
    assert not tune.Tuner.can_restore(str(tmp_path / "not_an_experiment"))


def slow(config):
    for i in range(config["iterations"]):
        time.sleep(0.2)
        tune.report({"i": i})


def test_a_second_driver_on_a_live_experiment_is_refused(storage):
    import threading

    tuner = tune.Tuner(
        slow,
        param_space={"iterations": 15},
        run_config=tune.RunConfig(storage_path=storage, name="live", verbose=0),
    )
    first = threading.Thread(target=tuner.fit)
    first.start()
    path = os.path.join(storage, "live")
    try:
        deadline = time.monotonic() + 30
        while not os.path.isdir(path) or not any(
            n.startswith("experiment_state") for n in os.listdir(path)
        ):
            assert time.monotonic() < deadline, "the first run never wrote its state"
            time.sleep(0.05)
        with pytest.raises(RuntimeError, match="is being run by pid"):
            tune.Tuner.restore(path).fit()
    finally:
        first.join(timeout=60)
    assert tuner.get_results()[0].metrics["training_iteration"] == 15


@pytest.mark.smoke
def test_fail_fast_leaves_a_restorable_experiment(storage, tmp_path):
    log, marker = str(tmp_path / "log"), str(tmp_path / "marker")
    results = tune.Tuner(
        counting,
        param_space={
            "id": tune.grid_search([1, 0, 2]),
            "fail": tune.sample_from(lambda spec: spec.config["id"] == 1),
            "log": log,
            "marker": marker,
        },
        tune_config=tune.TuneConfig(max_concurrent_trials=1),
        run_config=tune.RunConfig(
            storage_path=storage,
            name="ff",
            verbose=0,
            failure_config=tune.FailureConfig(fail_fast=True),
        ),
    ).fit()
    assert results.num_errors == 1 and results.num_terminated == 0
    open(marker, "w").close()
    restored = tune.Tuner.restore(os.path.join(storage, "ff"), resume_errored=True).fit()
    assert restored.num_terminated == 3
    assert all(list(r.metrics_dataframe["training_iteration"]) == [1, 2, 3, 4] for r in restored)


def test_damaged_newest_state_falls_back_to_the_previous_one(storage, tmp_path, capfd):
    path, _ = _run_errored_experiment(storage, tmp_path)
    states = sorted(
        (os.path.join(path, n) for n in os.listdir(path) if n.startswith("experiment_state-")),
        key=os.path.getmtime,
    )
    assert len(states) == 2
    with open(states[-1], "r+") as damaged:
        damaged.truncate(20)
    results = tune.Tuner.restore(path, resume_errored=True).fit()
    assert "is damaged" in capfd.readouterr().err
    assert results.num_terminated == 2
    for name in os.listdir(path):
        if name.startswith("experiment_state-"):
            with open(os.path.join(path, name), "w") as out:
                out.write("{not json")
    with pytest.raises(ValueError, match="every experiment state file is damaged"):
        tune.Tuner.restore(path)
    assert os.path.exists(os.path.join(path, "tuner.pkl"))


def always_fails(config):
    with open(config["log"], "a") as log:
        log.write("run\n")
    raise RuntimeError("always")


def test_max_failures_count_across_restores(storage, tmp_path):
    log = str(tmp_path / "runs")
    tune.Tuner(
        always_fails,
        param_space={"log": log},
        run_config=tune.RunConfig(
            storage_path=storage,
            name="mf",
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=1),
        ),
    ).fit()
    assert len(open(log).readlines()) == 2  # the first try and one retry
    results = tune.Tuner.restore(os.path.join(storage, "mf"), resume_errored=True).fit()
    assert len(open(log).readlines()) == 3  # resumed once; the retry budget was already spent
    assert results[0].status == "ERROR"


def test_checkpoint_to_directory_and_as_directory(storage, tmp_path):
    results = tune.Tuner(
        checkpointing_twice,
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    checkpoint = results[0].checkpoint
    target = checkpoint.to_directory(str(tmp_path / "copy"))
    assert open(os.path.join(target, "it")).read() == "2"
    with checkpoint.as_directory() as directory:
        assert open(os.path.join(directory, "it")).read() == "2"
    with pytest.raises(FileNotFoundError, match="not a directory"):
        tune.Checkpoint.from_directory(str(tmp_path / "nope"))


def checkpointing_twice(config):
    for it in range(2):
        report_iteration(it + 1, {"it": it + 1})


def cooperative(config):
    """Checkpoints only when rtune asks it to stop: nothing is lost all the same."""
    start = resume_iteration()
    for it in range(start, config["iterations"]):
        time.sleep(0.1)
        with open(config["log"], "a") as log:
            log.write(f"{it + 1}\n")
        if tune.get_context().stop_requested:
            report_iteration(it + 1, {"it": it + 1})
        else:
            tune.report({"it": it + 1})


@pytest.mark.slow
def test_a_cooperating_function_loses_nothing_on_ctrl_c(storage, tmp_path):
    log = tmp_path / "executed"
    ctrl_c_when(lambda: log.exists() and len(log.read_text().split()) >= 3)
    results = tune.Tuner(
        cooperative,
        param_space={"iterations": 30, "log": str(log)},
        run_config=tune.RunConfig(storage_path=storage, name="coop", verbose=0),
    ).fit()
    assert results[0].status == "PAUSED"
    stopped_at = results[0].metrics["it"]
    assert 3 <= stopped_at < 30
    assert results[0].checkpoint is not None
    restored = tune.Tuner.restore(os.path.join(storage, "coop")).fit()
    executed = [int(x) for x in log.read_text().split()]
    assert executed == list(range(1, 31))  # no iteration ran twice
    assert list(restored[0].metrics_dataframe["training_iteration"]) == list(range(1, 31))
