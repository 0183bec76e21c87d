"""The execution engine on a real local Ray: trainables, results, resources, reuse, failures."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
from iteration_checkpoints import report_iteration, resume_iteration

import rtune as tune


def quadratic(config):
    for step in range(config.get("steps", 3)):
        tune.report({"score": config["x"] ** 2 + step, "step": step})


@pytest.mark.smoke
def test_grid_search_runs_every_config_with_autofilled_metrics(storage):
    tuner = tune.Tuner(
        quadratic,
        param_space={"x": tune.grid_search([1, 2, 3]), "steps": 3},
        run_config=tune.RunConfig(storage_path=storage, name="grid", verbose=0),
    )
    results = tuner.fit()
    assert len(results) == 3
    assert sorted(r.config["x"] for r in results) == [1, 2, 3]
    for result in results:
        assert result.metrics["score"] == result.config["x"] ** 2 + 2
        assert result.metrics["training_iteration"] == 3
        assert result.metrics["done"] is True
        for key in (
            "time_this_iter_s",
            "time_total_s",
            "timestamp",
            "date",
            "trial_id",
            "experiment_tag",
            "hostname",
            "node_ip",
            "pid",
            "iterations_since_restore",
            "time_since_restore",
        ):
            assert key in result.metrics, key
        frame = result.metrics_dataframe
        assert list(frame["training_iteration"]) == [1, 2, 3]
        assert list(frame["step"]) == [0, 1, 2]
    assert results.experiment_path == os.path.join(storage, "grid")
    assert results.num_terminated == 3 and results.num_errors == 0


def test_random_search_is_reproducible_with_a_seed(storage):
    def run(name):
        return tune.Tuner(
            quadratic,
            param_space={"x": tune.uniform(-1, 1), "steps": 1},
            tune_config=tune.TuneConfig(num_samples=4, seed=11),
            run_config=tune.RunConfig(storage_path=storage, name=name, verbose=0),
        ).fit()

    first = sorted(r.config["x"] for r in run("a"))
    second = sorted(r.config["x"] for r in run("b"))
    assert first == second and len(set(first)) == 4


def test_best_result_and_dataframe(storage):
    results = tune.Tuner(
        quadratic,
        param_space={"x": tune.grid_search([-3, 1, 2])},
        tune_config=tune.TuneConfig(metric="score", mode="min"),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    best = results.get_best_result()
    assert best.config["x"] == 1
    assert results.get_best_result("score", "max").config["x"] == -3
    assert results.get_best_result("score", "min", scope="all").metrics["score"] == 3
    frame = results.get_dataframe()
    assert len(frame) == 3
    assert sorted(frame["config/x"]) == [-3, 1, 2]
    assert {"score", "trial_id", "logdir"} <= set(frame.columns)


class Counter(tune.Trainable):
    def setup(self, config):
        self.value = config.get("start", 0)

    def step(self):
        self.value += 1
        return {"value": self.value, "done": self.value >= self.config["limit"]}

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "value.json"), "w") as out:
            json.dump({"value": self.value}, out)

    def load_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "value.json")) as src:
            self.value = json.load(src)["value"]


@pytest.mark.smoke
def test_class_trainable_with_checkpoints(storage):
    results = tune.Tuner(
        Counter,
        param_space={"limit": tune.grid_search([4, 6])},
        run_config=tune.RunConfig(
            storage_path=storage,
            verbose=0,
            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=2, checkpoint_at_end=True),
        ),
    ).fit()
    for result in results:
        limit = result.config["limit"]
        assert result.metrics["value"] == limit
        assert result.metrics["training_iteration"] == limit
        checkpoint = result.checkpoint
        assert checkpoint is not None
        with checkpoint.as_directory() as directory:
            with open(os.path.join(directory, "value.json")) as src:
                assert json.load(src)["value"] == limit
        assert len(result.best_checkpoints) == limit // 2


def checkpointing_fn(config):
    start = resume_iteration()
    for it in range(start, 6):
        report_iteration(it + 1, {"loss": abs(it - 3) + config["bias"]})


def test_checkpoint_retention_keeps_best_and_latest(storage):
    results = tune.Tuner(
        checkpointing_fn,
        param_space={"bias": 0},
        run_config=tune.RunConfig(
            storage_path=storage,
            verbose=0,
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=2, checkpoint_score_attribute="loss", checkpoint_score_order="min"
            ),
        ),
    ).fit()
    result = results[0]
    kept = sorted(os.path.basename(c.path) for c, _ in result.best_checkpoints)
    # losses by iteration 1..6: 3, 2, 1, 0, 1, 2 -> best two are iterations 4 and 5 (a tie goes to
    # the later one, as in Ray Tune); the latest (6) stays on disk but is not among the best
    # checkpoints are numbered from 0, as Ray Tune's: iteration i's is checkpoint_<i - 1>
    assert kept == ["checkpoint_000003", "checkpoint_000004"]
    on_disk = sorted(d for d in os.listdir(result.path) if d.startswith("checkpoint_"))
    assert on_disk == [*kept, "checkpoint_000005"]
    assert os.path.basename(result.checkpoint.path) == "checkpoint_000005"


def context_fn(config):
    ctx = tune.get_context()
    tune.report(
        {
            "trial_id": ctx.get_trial_id(),
            "name": ctx.get_trial_name(),
            "dir": ctx.get_trial_dir(),
            "exp": ctx.get_experiment_name(),
        }
    )


def test_get_context(storage):
    results = tune.Tuner(
        context_fn, run_config=tune.RunConfig(storage_path=storage, name="ctx", verbose=0)
    ).fit()
    metrics = results[0].metrics
    assert metrics["exp"] == "ctx"
    assert metrics["dir"] == results[0].path
    assert metrics["name"].startswith("context_fn_")
    assert metrics["name"].endswith(metrics["trial_id"])


def parameter_fn(config, data):
    tune.report({"total": float(data.sum()) * config["scale"]})


def test_with_parameters_passes_large_objects(storage):
    data = np.ones(1_000_000)
    results = tune.Tuner(
        tune.with_parameters(parameter_fn, data=data),
        param_space={"scale": tune.grid_search([1, 2])},
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    assert sorted(r.metrics["total"] for r in results) == [1_000_000.0, 2_000_000.0]


def timed_fn(config):
    import time

    started = time.time()
    time.sleep(config.get("sleep", 0.3))
    tune.report({"started": started, "ended": time.time()})


def _max_overlap(results):
    events = []
    for r in results:
        events += [(r.metrics["started"], 1), (r.metrics["ended"], -1)]
    running = peak = 0
    for _, delta in sorted(events):
        running += delta
        peak = max(peak, running)
    return peak


def test_custom_resources_limit_concurrency(storage):
    results = tune.Tuner(
        tune.with_resources(timed_fn, {"cpu": 0, "slot": 1}),
        param_space={"i": tune.grid_search(list(range(6)))},
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    assert results.num_terminated == 6
    assert _max_overlap(results) == 2  # the cluster has 2 "slot" resources


def test_max_concurrent_trials(storage):
    results = tune.Tuner(
        timed_fn,
        param_space={"i": tune.grid_search(list(range(4))), "sleep": 0.1},
        tune_config=tune.TuneConfig(max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    assert _max_overlap(results) == 1


def pid_fn(config):
    tune.report({"worker_pid": os.getpid()})


@pytest.mark.parametrize("reuse", [True, False])
def test_actor_reuse(storage, reuse):
    results = tune.Tuner(
        pid_fn,
        param_space={"i": tune.grid_search(list(range(4)))},
        tune_config=tune.TuneConfig(max_concurrent_trials=1, reuse_actors=reuse),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    pids = {r.metrics["worker_pid"] for r in results}
    assert (len(pids) == 1) if reuse else (len(pids) == 4)


def test_placement_group_factory_trial(storage):
    trainable = tune.with_resources(pid_fn, tune.PlacementGroupFactory([{"CPU": 1}, {"CPU": 1}]))
    results = tune.Tuner(
        trainable, run_config=tune.RunConfig(storage_path=storage, verbose=0)
    ).fit()
    assert results.num_terminated == 1


def sometimes_fails(config):
    if config["x"] == 2:
        raise ValueError("bad x=2")
    tune.report({"ok": 1})


@pytest.mark.smoke
def test_a_failing_trial_is_an_error_and_others_go_on(storage):
    results = tune.Tuner(
        sometimes_fails,
        param_space={"x": tune.grid_search([1, 2, 3])},
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    assert results.num_errors == 1 and results.num_terminated == 2
    failed = [r for r in results if r.error is not None][0]
    assert "bad x=2" in str(failed.error)
    with open(os.path.join(failed.path, "error.txt")) as src:
        assert "ValueError: bad x=2" in src.read()


def every_seventh_fails(config):
    if config["i"] % 7 == 6:
        raise ValueError(f"bad i={config['i']}")
    tune.report({"ok": 1})


def test_failures_among_many_short_trials_cost_no_other_trial(storage):
    """Short trials are queued on actors behind the running one; a failure replaces its actor,
    and the trials queued there run elsewhere, once each."""
    results = tune.Tuner(
        every_seventh_fails,
        param_space={"i": tune.grid_search(list(range(80)))},
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    by_i = {r.config["i"]: r for r in results}
    failing = {i for i in range(80) if i % 7 == 6}
    assert {i for i, r in by_i.items() if r.error is not None} == failing
    assert all(by_i[i].metrics["training_iteration"] == 1 for i in set(by_i) - failing)
    assert results.num_terminated == 80 - len(failing)
    assert all(len(by_i[i].metrics_dataframe) == 1 for i in set(by_i) - failing)


def uneven_short(config):
    if config["i"] >= 60:
        time.sleep(0.03)
    tune.report({"ok": 1})


def test_short_trials_of_uneven_length_each_run_once(storage):
    """The last, slower trials sit queued on one actor while another goes idle: the idle one
    takes some back (each comes back from the busy actor unstarted). Whichever actor runs a
    trial, it runs once and ends TERMINATED."""
    results = tune.Tuner(
        uneven_short,
        param_space={"i": tune.grid_search(list(range(80)))},
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    assert results.num_terminated == 80
    assert sorted(r.config["i"] for r in results) == list(range(80))
    assert all(len(r.metrics_dataframe) == 1 for r in results)
    assert all(r.metrics["training_iteration"] == 1 for r in results)


def mostly_one_second(config):
    time.sleep(3.0 if config["i"] == 5 else 1.0)
    tune.report({"ok": 1})


def test_long_trials_get_their_successor_queued_and_taken_back_from_a_slow_one(storage):
    """With 1 s trials, an actor gets its next trial shortly before the running one is expected
    to end; trial 5 runs three times as long, so the trial queued behind it is taken back for
    another actor. Every trial still runs exactly once. Two at a time, so trials are still
    pending when trial 5's successor is due (with four actors due at once and two pending, trial
    5's actor could be one left without a successor)."""
    tuner = tune.Tuner(
        mostly_one_second,
        param_space={"i": tune.grid_search(list(range(10)))},
        tune_config=tune.TuneConfig(max_concurrent_trials=2),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    )
    results = tuner.fit()
    assert results.num_terminated == 10
    assert sorted(r.config["i"] for r in results) == list(range(10))
    assert all(len(r.metrics_dataframe) == 1 for r in results)
    assert tuner.last_run_stats["trials_queued_ahead"] >= 1
    assert tuner.last_run_stats["trials_asked_back"] >= 1


def flaky_until_checkpoint(config):
    """Fails once at iteration 3 (marker file), then resumes from its checkpoint."""
    start = resume_iteration()
    for it in range(start, 5):
        if it == 3 and not os.path.exists(config["marker"]):
            open(config["marker"], "w").close()
            raise RuntimeError("transient failure")
        report_iteration(it + 1, {"it": it + 1, "restored_from": start})


def test_max_failures_retries_from_the_latest_checkpoint(storage, tmp_path):
    results = tune.Tuner(
        flaky_until_checkpoint,
        param_space={"marker": str(tmp_path / "failed_once")},
        run_config=tune.RunConfig(
            storage_path=storage, verbose=0, failure_config=tune.FailureConfig(max_failures=1)
        ),
    ).fit()
    result = results[0]
    assert result.error is None
    assert result.metrics["it"] == 5 and result.metrics["restored_from"] == 3
    assert list(result.metrics_dataframe["training_iteration"]) == [1, 2, 3, 4, 5]


def test_report_outside_a_trial_is_a_clear_error():
    with pytest.raises(RuntimeError, match="outside a trial"):
        tune.report({"x": 1})
