"""Faults a long run meets, injected for real: the controller actor's or a trial actor's process
killed, the storage server unreachable, slow, or out of space. What a user checks afterwards: a
clear error or a completed run, every committed checkpoint intact, each iteration recorded once,
and an experiment that `Tuner.restore` completes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pyarrow.fs as pafs
import pytest
import ray
from conftest import S3_BUCKET, experiment_path

import rtune as tune
from cluster.fault_proxy import FaultProxy
from rtune.control import find_experiment

ITERATIONS = 6


def steady(config):
    """Deterministic, checkpointed every iteration; its metric depends only on the iteration."""
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as directory:
            start = int(open(os.path.join(directory, "it")).read())
    for it in range(start + 1, config.get("iterations", ITERATIONS) + 1):
        time.sleep(config.get("sleep", 0.2))
        if it == config.get("die_at") and start == 0:
            os.kill(os.getpid(), signal.SIGKILL)  # the trial actor's own worker process
        with tempfile.TemporaryDirectory() as directory:
            with open(os.path.join(directory, "it"), "w") as out:
                out.write(str(it))
            with open(os.path.join(directory, "weights.bin"), "wb") as out:
                out.write(bytes([it % 256]) * config.get("kb", 1) * 1024)
            tune.report(
                {"score": it * 10 + config["id"], "start": start},
                checkpoint=tune.Checkpoint.from_directory(directory),
            )


def assert_complete_and_intact(results, iterations=ITERATIONS):
    """Every trial reached its last iteration, recorded each iteration once, and each checkpoint
    a result points to holds all of its files."""
    for result in results:
        assert result.status == "TERMINATED", result.error
        history = list(result.metrics_dataframe["training_iteration"])
        assert history == list(range(1, iterations + 1))
        assert result.metrics["score"] == iterations * 10 + result.config["id"]
        with result.checkpoint.as_directory() as directory:
            assert open(os.path.join(directory, "it")).read() == str(iterations)
            size = os.path.getsize(os.path.join(directory, "weights.bin"))
            assert size == result.config.get("kb", 1) * 1024


def _run_in_thread(target):
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = target()
        except BaseException as exc:  # handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


# ---- actor deaths ----


def test_a_killed_trial_actor_is_retried_from_its_checkpoint(storage):
    results = tune.Tuner(
        steady,
        param_space={"id": tune.grid_search([0, 1]), "die_at": 4},
        run_config=tune.RunConfig(
            storage_path=storage,
            name="actor_kill",
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=1),
        ),
    ).fit()
    assert_complete_and_intact(results)
    for result in results:
        assert result.metrics["start"] == 3  # resumed from the checkpoint of iteration 3


def test_a_killed_trial_actor_beyond_max_failures_is_an_error(storage):
    results = tune.Tuner(
        steady,
        param_space={"id": 0, "die_at": 2},
        run_config=tune.RunConfig(storage_path=storage, name="actor_kill_err", verbose=0),
    ).fit()
    assert results[0].status == "ERROR"
    assert "actor died" in str(results[0].error)
    resumed = tune.Tuner.restore(
        os.path.join(storage, "actor_kill_err"), steady, resume_errored=True
    ).fit()
    assert_complete_and_intact(resumed)


def test_a_killed_controller_gives_a_clear_error_and_a_restorable_experiment(storage):
    name = "controller_kill"
    tuner = tune.Tuner(
        steady,
        param_space={"id": tune.grid_search([0, 1, 2]), "iterations": 8},
        tune_config=tune.TuneConfig(max_concurrent_trials=2),
        run_config=tune.RunConfig(storage_path=storage, name=name, verbose=0),
    )

    fit_returned = threading.Event()

    def kill_controller_after_some_checkpoints():
        while not fit_returned.is_set():
            try:
                status = ray.get(find_experiment(name).actor.status.remote(), timeout=5)
            except Exception:  # not started yet
                time.sleep(0.1)
                continue
            if any(r.last_result.get("training_iteration", 0) >= 3 for r in status.rows):
                os.kill(status.controller_pid, signal.SIGKILL)
                return
            time.sleep(0.1)

    killer = threading.Thread(target=kill_controller_after_some_checkpoints, daemon=True)
    killer.start()
    try:
        with pytest.raises(RuntimeError, match="controller") as info:
            tuner.fit()
    finally:
        fit_returned.set()
        killer.join()
    path = os.path.join(storage, name)
    assert path in str(info.value) and "Tuner.restore" in str(info.value)

    results = tune.Tuner.restore(path).fit()  # without re-passing the trainable
    assert_complete_and_intact(results, iterations=8)


# ---- storage faults ----


@pytest.fixture
def proxied_s3(s3_server, tmp_path, ray_local):
    """A storage URI on the test S3 server reached through a proxy the test can take down."""
    proxy = FaultProxy(s3_server.port).start()
    uri = s3_server.uri(S3_BUCKET, tmp_path.name).replace(s3_server.endpoint, proxy.endpoint)
    yield proxy, uri
    proxy.stop()


def _when_checkpoints_exist(fs, prefix, count, action, timeout_s=60):
    """Run `action` once `count` committed checkpoints exist under `prefix` on the real server."""

    def watch():
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            selector = pafs.FileSelector(prefix, recursive=True, allow_not_found=True)
            found = fs.get_file_info(selector)
            if sum(1 for i in found if i.base_name == ".rtune_committed") >= count:
                action()
                return
            time.sleep(0.1)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_storage_down_for_a_while_then_back(proxied_s3, s3_server, tmp_path):
    proxy, uri = proxied_s3

    outage_began = threading.Event()

    def outage():
        proxy.down()
        outage_began.set()
        time.sleep(4)  # the outage's length, not an assertion
        proxy.up()

    watcher = _when_checkpoints_exist(
        s3_server.filesystem(), f"{S3_BUCKET}/{tmp_path.name}", 2, outage
    )
    results = tune.Tuner(
        steady,
        param_space={"id": tune.grid_search([0, 1])},
        run_config=tune.RunConfig(storage_path=uri, name="outage", verbose=0),
    ).fit()
    assert outage_began.is_set()  # while the trials still had checkpoints to write
    watcher.join()
    assert_complete_and_intact(results)


def test_slow_storage(proxied_s3):
    proxy, uri = proxied_s3
    proxy.slow(0.02)
    results = tune.Tuner(
        steady,
        param_space={"id": tune.grid_search([0, 1]), "kb": 64, "sleep": 0.05},
        run_config=tune.RunConfig(storage_path=uri, name="slow", verbose=0),
    ).fit()
    assert_complete_and_intact(results)


def test_storage_down_too_long_stops_with_a_clear_error(
    proxied_s3, s3_server, tmp_path, monkeypatch
):
    proxy, uri = proxied_s3
    monkeypatch.setenv("RTUNE_STORAGE_RETRY_S", "1")  # each operation: the outage outlasts it
    watcher = _when_checkpoints_exist(
        s3_server.filesystem(), f"{S3_BUCKET}/{tmp_path.name}", 2, proxy.down
    )
    tuner = tune.Tuner(
        steady,
        param_space={"id": tune.grid_search([0, 1]), "sleep": 0.1},
        run_config=tune.RunConfig(storage_path=uri, name="long_outage", verbose=0),
    )
    with pytest.raises(tune.StorageError, match="long_outage") as info:
        tuner.fit()
    watcher.join()
    assert "Tuner.restore" in str(info.value)

    proxy.up()
    monkeypatch.delenv("RTUNE_STORAGE_RETRY_S")
    results = tune.Tuner.restore(experiment_path(uri, "long_outage")).fit()
    assert_complete_and_intact(results)


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB tmpfs: a disk that fills. Needs the right to mount (root in CI's VM)."""
    mount_point = tmp_path / "small_disk"
    mount_point.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_full_disk_stops_the_run_cleanly_and_it_resumes_once_space_is_freed(
    small_disk, ray_local, monkeypatch
):
    monkeypatch.setenv("RTUNE_STORAGE_RETRY_S", "1")
    ballast = small_disk / "ballast.bin"
    ballast.write_bytes(b"\0" * (2560 * 1024))  # leaves ~1.5 MB: room for a few checkpoints
    storage = str(small_disk / "results")
    tuner = tune.Tuner(
        steady,
        param_space={"id": tune.grid_search([0, 1]), "kb": 300, "sleep": 0.05},
        run_config=tune.RunConfig(
            storage_path=storage,
            name="full",
            verbose=0,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
        ),
    )
    with pytest.raises(tune.StorageError, match="full") as info:
        tuner.fit()
    assert "No space left" in str(info.value) or "space" in str(info.value).lower()

    path = os.path.join(storage, "full")
    for trial_dir in [d for d in os.listdir(path) if d.startswith("steady_")]:
        for name in os.listdir(os.path.join(path, trial_dir)):
            checkpoint = os.path.join(path, trial_dir, name)
            if name.startswith("checkpoint_") and os.path.exists(
                os.path.join(checkpoint, ".rtune_committed")
            ):  # committed means whole
                assert os.path.getsize(os.path.join(checkpoint, "weights.bin")) == 300 * 1024

    ballast.unlink()
    monkeypatch.delenv("RTUNE_STORAGE_RETRY_S")
    results = tune.Tuner.restore(path).fit()
    assert_complete_and_intact(results)
    shutil.rmtree(path)


def test_a_full_scratch_disk_fails_the_trial_naming_the_path_and_loses_nothing(
    small_disk, tmp_path
):
    """The node's scratch directory (where a class trainable's checkpoint is staged before its
    upload) fills up: the trial fails with an error naming the scratch path, no half-written
    checkpoint is recorded, and once space is freed `resume_errored` completes the trial from its
    last committed checkpoint."""
    ballast = small_disk / "ballast.bin"
    ballast.write_bytes(b"\0" * (3746 * 1024))  # 350 kB left: checkpoints 1-3 fit, 4 does not
    storage = str(tmp_path / "results")
    env = {**os.environ, "TMPDIR": str(small_disk), "PYTHONPATH": os.path.dirname(__file__)}
    driver = [sys.executable, os.path.join(os.path.dirname(__file__), "drivers", "scratch_full.py")]

    def run(*args):
        done = subprocess.run(
            [*driver, storage, *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        return [
            line.split(" ", 4)[1:] for line in done.stdout.splitlines() if line.startswith("RESULT")
        ]

    ((_, status, iteration, error),) = run()
    assert status == "ERROR" and iteration == "3"
    assert "No space left" in error and str(small_disk) in error
    path = os.path.join(storage, "scratch")
    for trial_dir in [d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d))]:
        for name in os.listdir(os.path.join(path, trial_dir)):
            checkpoint = os.path.join(path, trial_dir, name)
            if name.startswith("checkpoint_") and os.path.exists(
                os.path.join(checkpoint, ".rtune_committed")
            ):  # committed means whole
                with open(os.path.join(checkpoint, ".rtune_committed")) as marker:
                    it = json.load(marker)["training_iteration"]
                assert os.path.getsize(os.path.join(checkpoint, "weights.bin")) == it * 100 * 1024

    ballast.unlink()
    second = run("--restore")
    assert [(trial, status, it) for trial, status, it, _ in second] == [("0", "TERMINATED", "5")]
    history = tune.Tuner.restore(path).get_results()
    for result in history:
        assert list(result.metrics_dataframe["training_iteration"]) == [1, 2, 3, 4, 5]
