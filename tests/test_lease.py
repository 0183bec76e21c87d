"""One writer per experiment, through the lease file in its storage (rtune/_durable/lease.py).

A second driver is refused whether or not it shares the first one's Ray; a dead owner never locks
a restore out: at once when it is known dead (its pid gone on this host, its controller gone on
this Ray), after the lease's TTL when it ran elsewhere. The subprocess drivers are those of
tests/test_signals.py; restores run in this process, on the session's Ray.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time

import pytest
import ray
import test_signals
from driver_runs import EXIT_TIMEOUT_S, RUN_TIMEOUT_S, reap, wait_until
from test_signals import assert_completed

import rtune as tune
from rtune._durable.lease import LEASE_FILE, ExperimentLeased
from rtune._durable.storage import Storage

experiment = test_signals.experiment  # the fixture: drivers on local or S3 storage, cleaned up
ITERATIONS = 24  # long enough that the first run is still going while the second is tried


def lease_of(path: str) -> bytes | None:
    storage = Storage.at(path)
    return storage.read_bytes(LEASE_FILE) if storage.exists(LEASE_FILE) else None


def quick(config: dict) -> None:
    for i in range(2):
        tune.report({"i": i})


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["local", "s3"], indirect=True)
def test_a_second_driver_on_another_ray_is_refused_and_the_first_finishes(experiment):
    first = experiment.launch("--iterations", str(ITERATIONS))
    experiment.wait_for_iterations(first, 3)
    storage = Storage.at(experiment.path)
    metadata = storage.read_bytes("tuner.pkl") if storage.exists("tuner.pkl") else None
    lease = lease_of(experiment.path)
    assert lease is not None and json.loads(lease)["pid"] == first.proc.pid

    # this process has a Ray of its own (the session's), as a second script on the machine would
    owner = f"pid {first.proc.pid} on host"
    with pytest.raises(ExperimentLeased, match=owner) as refused:
        tune.Tuner(
            quick,
            run_config=tune.RunConfig(storage_path=experiment.storage, name="exp", verbose=0),
        ).fit()
    assert experiment.path.split("?")[0] in str(refused.value)
    with pytest.raises(ExperimentLeased, match=owner):
        tune.Tuner.restore(experiment.path).fit()
    if metadata is not None:  # the refused runs wrote nothing
        assert storage.read_bytes("tuner.pkl") == metadata

    first.succeed(RUN_TIMEOUT_S)
    assert_completed(first.results(), experiment.executions(), 0, ITERATIONS)
    assert lease_of(experiment.path) is None  # released at the end


@pytest.mark.slow
def test_a_restore_right_after_kill_9_on_the_same_ray_proceeds_at_once(
    experiment, monkeypatch, capfd
):
    monkeypatch.setenv("RAY_ADDRESS", ray.get_runtime_context().gcs_address)
    first = experiment.launch("--iterations", str(ITERATIONS), "--join")
    experiment.wait_for_iterations(first, 3)
    first.send(signal.SIGKILL)
    first.wait(EXIT_TIMEOUT_S)
    assert lease_of(experiment.path) is not None  # a kill -9 releases nothing

    results = experiment.restore_here()
    err = capfd.readouterr().err
    assert "its holder is gone" in err and "waiting up to" not in err, err
    assert_completed(results, experiment.executions(), 2, ITERATIONS)


@pytest.mark.slow
def test_a_restore_right_after_kill_9_on_another_ray_proceeds_at_once(experiment, capfd):
    """The owner's Ray is not this one, but it ran on this host: its pid is known gone."""
    first = experiment.launch("--iterations", str(ITERATIONS))
    experiment.wait_for_iterations(first, 3)
    session = first.session_dir
    first.send(signal.SIGKILL)
    first.wait(EXIT_TIMEOUT_S)
    # its Ray goes with it, as when its machine is lost: the orphaned trial actors of a Ray left
    # running write on (superseded by the restore's epoch) for as long as that Ray takes to see
    # its driver gone, seconds on a loaded machine, and would count as re-executed iterations
    os.killpg(first.proc.pid, signal.SIGKILL)
    reap(session)
    results = experiment.restore_here()
    err = capfd.readouterr().err
    assert "its holder is gone" in err and "waiting up to" not in err, err
    assert_completed(results, experiment.executions(), 2, ITERATIONS)


def finished_experiment(storage_path: str) -> str:
    tune.Tuner(
        quick, run_config=tune.RunConfig(storage_path=storage_path, name="done", verbose=0)
    ).fit()
    return os.path.join(storage_path, "done")


def foreign_lease(path: str, ttl_s: float, renewals: int = 0) -> None:
    """A lease as a driver on another machine leaves it."""
    record = {
        "token": "f" * 32,
        "host": "another-host.example",
        "pid": 4242,
        "started_at": 1_700_000_000.0,
        "ttl_s": ttl_s,
        "cluster": "10.0.0.9:6379",
        "cluster_id": "ab" * 28,
        "controller": "done.0123456789abcdef",
        "controller_started": True,
        "renewals": renewals,
        "renewed_at": 1_700_000_100.0,
    }
    Storage.at(path).write_atomic(LEASE_FILE, json.dumps(record).encode())


def test_a_lease_from_another_host_is_taken_over_once_it_expired(storage, capfd):
    path = finished_experiment(storage)
    assert lease_of(path) is None
    foreign_lease(path, ttl_s=2)
    tune.Tuner.restore(path).fit()
    err = capfd.readouterr().err
    assert "held by pid 4242 on host another-host.example" in err, err
    assert "waiting up to 2 s" in err and "not renewed for 2 s" in err, err
    assert lease_of(path) is None


def test_a_lease_an_ended_fit_of_this_process_could_not_release_is_taken_at_once(storage, capfd):
    """A fit() that ended while storage was down leaves its lease behind (its release failed): a
    restore in the same process takes it over at once instead of waiting out its TTL."""
    path = finished_experiment(storage)
    record = {
        "token": "e" * 32,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started_at": time.time(),
        "ttl_s": 30.0,
        "controller_started": True,
        "renewals": 3,
        "renewed_at": time.time(),
    }
    Storage.at(path).write_atomic(LEASE_FILE, json.dumps(record).encode())
    tune.Tuner.restore(path).fit()
    err = capfd.readouterr().err
    assert "its holder is gone" in err and "waiting up to" not in err, err
    assert lease_of(path) is None


def test_a_lease_renewed_from_another_host_is_refused(storage):
    path = finished_experiment(storage)
    foreign_lease(path, ttl_s=3)
    state_before = sorted(os.listdir(path))
    stop = threading.Event()

    def renew() -> None:  # the other host's controller, renewing
        count = 0
        while not stop.wait(0.5):
            count += 1
            foreign_lease(path, ttl_s=3, renewals=count)

    renewer = threading.Thread(target=renew)
    renewer.start()
    try:
        with pytest.raises(ExperimentLeased, match="another-host.example.*10.0.0.9:6379"):
            tune.Tuner.restore(path).fit()
    finally:
        stop.set()
        renewer.join()
    assert json.loads(lease_of(path))["token"] == "f" * 32
    assert sorted(os.listdir(path)) == state_before


def test_a_damaged_lease_counts_as_expired(storage, capfd):
    path = finished_experiment(storage)
    foreign_lease(path, ttl_s=10)
    whole = lease_of(path)
    Storage.at(path).write_atomic(LEASE_FILE, whole[: len(whole) // 2])
    tune.Tuner.restore(path).fit()
    err = capfd.readouterr().err
    assert f"the lease file {os.path.join(path, LEASE_FILE)} is damaged" in err, err
    assert "Traceback" not in err
    assert lease_of(path) is None


def slow(config: dict) -> None:
    for i in range(60):
        time.sleep(0.25)
        tune.report({"i": i})


def test_a_run_whose_lease_was_taken_stops_writing_and_says_why(storage):
    """Two starters raced on an object store, or this run's lease expired while it was cut off:
    the lease names another holder, and this run stops instead of interleaving its state."""
    path = os.path.join(storage, "taken")
    tuner = tune.Tuner(
        slow, run_config=tune.RunConfig(storage_path=storage, name="taken", verbose=0)
    )
    outcome: list = []
    run = threading.Thread(target=lambda: outcome.append(_outcome(tuner.fit)))
    run.start()
    try:
        wait_until(lambda: controller_renews(path), "the controller's renewal", 60)

        def taken() -> bool:  # as a taker does: write, then verify (a renewal may overwrite it)
            foreign_lease(path, ttl_s=15)
            time.sleep(0.2)
            return json.loads(lease_of(path))["token"] == "f" * 32

        wait_until(taken, "the lease taken", 30)
    finally:
        run.join(timeout=90)
    assert not run.is_alive()
    assert isinstance(outcome[0], ExperimentLeased), outcome
    assert "another-host.example" in str(outcome[0])
    assert json.loads(lease_of(path))["token"] == "f" * 32  # the new holder's, untouched


def controller_renews(path: str) -> bool:
    lease = lease_of(path)
    return lease is not None and json.loads(lease)["controller_started"]


def _outcome(call):
    try:
        return call()
    except Exception as exc:
        return exc
