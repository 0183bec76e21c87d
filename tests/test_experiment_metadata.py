"""The experiment's metadata from `Tuner(...)` on, and what a restore takes from the user again
(issue 11, item 6): real runs on the session Ray, and a real Ray restart in a subprocess driver."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import rtune as tune


def counts(config):
    for it in range(2):
        tune.report({"x": config["x"], "it": it + 1})


def test_a_new_tuner_is_restorable_before_fit(storage):
    """`Tuner(...)` writes the metadata; a driver that dies before or while `fit()` starts
    leaves an experiment that `Tuner.restore` runs in full."""
    tuner = tune.Tuner(
        counts,
        param_space={"x": tune.grid_search([1, 2, 3])},
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    )
    name = tuner.run_config.name  # generated at Tuner(...), kept by its fit()
    path = os.path.join(storage, name)
    assert tune.Tuner.can_restore(path)
    results = tune.Tuner.restore(path).fit()
    assert sorted(r.config["x"] for r in results) == [1, 2, 3]
    assert all(r.status == "TERMINATED" and r.metrics["it"] == 2 for r in results)
    assert os.listdir(storage) == [name]


def test_fit_runs_the_experiment_its_tuner_named(storage):
    tuner = tune.Tuner(
        counts, param_space={"x": 5}, run_config=tune.RunConfig(storage_path=storage, verbose=0)
    )
    results = tuner.fit()
    assert os.listdir(storage) == [tuner.run_config.name]
    assert results[0].path.startswith(os.path.join(storage, tuner.run_config.name))
    restored = tune.Tuner.restore(os.path.join(storage, tuner.run_config.name)).get_results()
    assert [r.metrics["x"] for r in restored] == [5]


def test_a_new_tuner_never_replaces_existing_metadata(storage):
    """A Tuner made on an experiment that exists (a live run's, or an earlier one's) leaves its
    metadata alone: only fit(), once it is the one writer, writes a fresh run's."""
    run_config = tune.RunConfig(storage_path=storage, name="exp", verbose=0)
    tune.Tuner(counts, param_space={"x": 1}, run_config=run_config).fit()
    path = os.path.join(storage, "exp")
    before = {n: open(os.path.join(path, n), "rb").read() for n in ("tuner.pkl", "tuner_copy.pkl")}
    tune.Tuner(counts, param_space={"x": 2}, run_config=run_config)
    after = {n: open(os.path.join(path, n), "rb").read() for n in ("tuner.pkl", "tuner_copy.pkl")}
    assert after == before


def test_an_unpicklable_trainable_is_refused_at_tuner(tmp_path):
    import threading

    lock = threading.Lock()

    def holds_a_lock(config):
        with lock:
            tune.report({"x": 1})

    with pytest.raises(TypeError, match="holds_a_lock cannot be pickled.*lock"):
        tune.Tuner(holds_a_lock, run_config=tune.RunConfig(storage_path=str(tmp_path)))
    assert os.listdir(tmp_path) == []


RESTART_DRIVER = textwrap.dedent(
    """
    import sys

    import ray

    import rtune as tune


    def reads_data(config):
        value = ray.get(config["nested"]["data"])["v"]
        if value == 1:
            raise RuntimeError("the first run's data: fail, to be restarted")
        tune.report({"value": value})


    def start_ray():
        ray.init(address="local", num_cpus=2, include_dashboard=False)


    path = sys.argv[1]
    start_ray()
    tune.Tuner(
        reads_data,
        param_space={"nested": {"data": ray.put({"v": 1})}, "n": tune.grid_search([1, 2])},
        run_config=tune.RunConfig(storage_path=path, name="exp", verbose=0),
    ).fit()
    ray.shutdown()  # every object of the first run is gone with its Ray
    start_ray()
    fresh = {"nested": {"data": ray.put({"v": 2})}, "n": tune.grid_search([1, 2])}
    results = tune.Tuner.restore(path + "/exp", param_space=fresh, restart_errored=True).fit()
    print("RESULT", sorted((r.status, r.metrics.get("value")) for r in results))
    """
)


@pytest.mark.slow
def test_fresh_object_references_replace_the_dead_ones_after_a_ray_restart(tmp_path):
    driver = tmp_path / "driver.py"
    driver.write_text(RESTART_DRIVER)
    env = {**os.environ, "RAY_ADDRESS": ""}
    run = subprocess.run(
        [sys.executable, str(driver), str(tmp_path / "results")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "RESULT [('TERMINATED', 2), ('TERMINATED', 2)]" in run.stdout, run.stderr[-3000:]
