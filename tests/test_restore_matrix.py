"""The full restore matrix: a finished, an unfinished (stopped by a real SIGINT) and an errored
trial, restored under each flag, on copies of one experiment."""

from __future__ import annotations

import glob
import os
import shutil
import time

import pytest
import ray
from iteration_checkpoints import ctrl_c_when, report_iteration, resume_iteration

import rtune as tune
from rtune.control import find_experiment


def mixed(config):
    """id 0 finishes, id 1 fails at iteration 3 (until a marker exists), id 2 runs until stopped."""
    start = resume_iteration()
    total = {0: 3, 1: 6, 2: 1000}[config["id"]]
    for it in range(start, total):
        if config["id"] == 1 and it == 2 and not os.path.exists(config["marker"]):
            raise RuntimeError("fails until the marker exists")
        with open(config["log"], "a") as log:
            log.write(f"{config['id']} {it + 1}\n")
        time.sleep(0.05)
        report_iteration(it + 1, {"it": it + 1})
        if config["id"] == 2 and it + 1 >= 5 and os.path.exists(config["marker"]):
            return


def _executions(log, trial):
    if not os.path.exists(log):
        return []
    return [int(line.split()[1]) for line in open(log) if line.split()[0] == str(trial)]


@pytest.fixture(scope="module")
def stopped_experiment(ray_local, tmp_path_factory):
    base = tmp_path_factory.mktemp("matrix")
    log, marker = str(base / "log"), str(base / "marker")

    def trial_0_finished() -> bool:
        """As the controller sees it: the log line of its last iteration comes before its last
        report, and a stop between the two leaves it PAUSED, not TERMINATED."""
        try:
            run = find_experiment(str(base / "results" / "exp"))
            status = ray.get(run.actor.status.remote(), timeout=5)
        except Exception:  # not started yet
            return False
        return any(r.config["id"] == 0 and r.status == "TERMINATED" for r in status.rows)

    ctrl_c_when(
        lambda: (
            glob.glob(str(base / "results" / "exp" / "*" / "error.txt"))
            and len(_executions(log, 2)) >= 4
            and trial_0_finished()
        )
    )
    results = tune.Tuner(
        mixed,
        param_space={"id": tune.grid_search([0, 1, 2]), "log": log, "marker": marker},
        run_config=tune.RunConfig(storage_path=str(base / "results"), name="exp", verbose=0),
    ).fit()
    statuses = {r.config["id"]: r.status for r in results}
    assert statuses == {0: "TERMINATED", 1: "ERROR", 2: "PAUSED"}
    open(marker, "w").close()
    return str(base / "results" / "exp"), log


@pytest.mark.slow
@pytest.mark.parametrize(
    "flags, expect",
    [
        ({}, {0: "TERMINATED", 1: "ERROR", 2: "TERMINATED"}),
        ({"resume_unfinished": False}, {0: "TERMINATED", 1: "ERROR", 2: "TERMINATED"}),
        ({"resume_errored": True}, {0: "TERMINATED", 1: "TERMINATED", 2: "TERMINATED"}),
        ({"restart_errored": True}, {0: "TERMINATED", 1: "TERMINATED", 2: "TERMINATED"}),
    ],
)
def test_restore_matrix(stopped_experiment, tmp_path, flags, expect):
    original, original_log = stopped_experiment
    path = str(tmp_path / "exp")
    shutil.copytree(original, path)
    log = original_log
    before = {t: _executions(log, t) for t in (0, 1, 2)}
    results = tune.Tuner.restore(path, **flags).fit()
    by_id = {r.config["id"]: r for r in results}
    assert {i: r.status for i, r in by_id.items()} == expect
    after = {t: _executions(log, t)[len(before[t]) :] for t in (0, 1, 2)}
    assert after[0] == []  # a finished trial is never run again
    paused_at = by_id[2].metrics_dataframe["training_iteration"]
    if flags.get("resume_unfinished", True):
        assert after[2][0] == before[2][-1] + 1 or after[2][0] == before[2][-1]
        assert list(paused_at) == list(range(1, len(paused_at) + 1))
    else:
        assert after[2] == []
    if flags.get("resume_errored"):
        assert after[1] == [3, 4, 5, 6]  # from its checkpoint at iteration 2
    elif flags.get("restart_errored"):
        assert after[1] == [1, 2, 3, 4, 5, 6]  # from scratch
    else:
        assert after[1] == []
    for result in results:
        history = list(result.metrics_dataframe["training_iteration"])
        assert history == list(range(1, len(history) + 1))


def short(config):
    for i in range(3):
        time.sleep(0.05)
        tune.report({"x": config["x"], "i": i})


@pytest.mark.slow
def test_a_restored_run_creates_exactly_the_missing_trials(ray_local, tmp_path):
    space = {"x": tune.uniform(0, 1), "y": tune.grid_search(["a", "b"])}
    config = tune.TuneConfig(num_samples=3, seed=5, max_concurrent_trials=1)
    reference = tune.Tuner(
        short,
        param_space=space,
        tune_config=config,
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="whole", verbose=0),
    ).fit()
    expected = sorted((r.config["x"], r.config["y"]) for r in reference)
    path = tmp_path / "stopped"

    ctrl_c_when(lambda: len(glob.glob(str(path / "*" / "results" / "*.jsonl"))) >= 2)
    stopped = tune.Tuner(
        short,
        param_space=space,
        tune_config=tune.TuneConfig(num_samples=3, seed=5, max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="stopped", verbose=0),
    ).fit()
    assert stopped.num_terminated < 6
    restored = tune.Tuner.restore(str(path)).fit()
    assert len(restored) == 6 and restored.num_terminated == 6
    assert sorted((r.config["x"], r.config["y"]) for r in restored) == expected


def test_restore_refuses_an_experiment_of_another_format(ray_local, tmp_path):
    import cloudpickle

    tune.Tuner(
        short,
        param_space={"x": 1},
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="old", verbose=0),
    ).fit()
    metadata_path = tmp_path / "old" / "tuner.pkl"
    metadata = cloudpickle.loads(metadata_path.read_bytes())
    metadata["format_version"] = 999
    metadata_path.write_bytes(cloudpickle.dumps(metadata))
    with pytest.raises(ValueError, match="experiment format 999"):
        tune.Tuner.restore(str(tmp_path / "old"))


def uses_ref(config):
    import ray

    value = ray.get(config["data"])["v"]
    if value == 1:
        raise RuntimeError("stale data")
    tune.report({"value": value})


def test_param_space_may_be_given_again_to_refresh_object_references(ray_local, tmp_path):
    import ray

    results = tune.Tuner(
        uses_ref,
        param_space={"data": ray.put({"v": 1}), "n": tune.grid_search([1, 2])},
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="refs", verbose=0),
    ).fit()
    assert results.num_errors == 2
    path = str(tmp_path / "refs")
    with pytest.raises(ValueError, match="changed"):
        tune.Tuner.restore(
            path, param_space={"data": ray.put({"v": 2}), "n": tune.grid_search([1, 3])}
        )
    refreshed = {"data": ray.put({"v": 2}), "n": tune.grid_search([1, 2])}
    restored = tune.Tuner.restore(path, param_space=refreshed, restart_errored=True).fit()
    assert [r.metrics["value"] for r in restored] == [2, 2]
