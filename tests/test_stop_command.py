"""`rtune stop` answers at once: with no live Ray where it looks, it says so within seconds (never
a hang on a stale address), and given a path it reads the experiment from storage to say whether
it is running (its lease names the owner's cluster, which it then asks to drain), stopped (and how
to resume) or finished."""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest
import test_signals
from driver_runs import EXIT_TIMEOUT_S
from test_signals import RTUNE_CLI, assert_stopped_early

import rtune as tune
from rtune._durable.lease import LEASE_FILE
from rtune._durable.storage import Storage

experiment = test_signals.experiment  # the fixture: drivers on local storage, cleaned up
ANSWER_TIMEOUT_S = 30.0  # "within a few seconds" on an idle machine; generous under load


def dead_address() -> str:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def rtune_stop(target: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run(
        [str(RTUNE_CLI), "stop", target],
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=ANSWER_TIMEOUT_S,
    )


def assert_refused(stop: subprocess.CompletedProcess, *expected: str) -> None:
    assert stop.returncode == 2, stop.stdout + stop.stderr
    for text in expected:
        assert text in stop.stderr, stop.stderr
    assert "Traceback" not in stop.stderr and "gcs" not in stop.stderr.lower(), stop.stderr


def test_a_stale_address_file_is_reported_not_joined(tmp_path):
    # Ray's own address file, in a temp dir of this test's (RAY_TMPDIR), never the machine's
    address_file = tmp_path / "ray" / "ray_current_cluster"
    address_file.parent.mkdir()
    address = dead_address()
    address_file.write_text(address)
    stop = rtune_stop("my_experiment", RAY_TMPDIR=str(tmp_path))
    assert_refused(
        stop,
        f"No live Ray cluster at {address}",
        str(address_file),
        "'my_experiment' is not running",
    )


def test_a_ray_address_pointing_at_nothing_is_reported():
    address = dead_address()
    stop = rtune_stop("my_experiment", RAY_ADDRESS=address)
    assert_refused(stop, f"No live Ray cluster at {address} (RAY_ADDRESS)", "is not running")


def quick(config: dict) -> None:
    tune.report({"i": 1})


def test_a_finished_experiment_is_reported_finished(storage):
    tune.Tuner(
        quick,
        param_space={"x": tune.grid_search([1, 2])},
        run_config=tune.RunConfig(storage_path=storage, name="done", verbose=0),
    ).fit()
    path = os.path.join(storage, "done")
    assert_refused(rtune_stop(path), f"{path} is not running", "It is finished (2 TERMINATED)")


@pytest.mark.slow
def test_stop_by_path_reaches_the_owner_through_its_lease_then_reports_it_stopped(experiment):
    """No RAY_ADDRESS: the lease names the owner's own Ray, which the CLI joins to drain it."""
    first = experiment.launch("--iterations", "24")
    experiment.wait_for_iterations(first, 2)
    stop = rtune_stop(experiment.path)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert f"rtune resume {experiment.path}" in stop.stdout
    first.succeed(EXIT_TIMEOUT_S)
    assert_stopped_early(first.results())

    again = rtune_stop(experiment.path)
    assert_refused(again, "is not running", "It is stopped", f"rtune resume {experiment.path}")

    # a kill -9 leaves the lease behind; its owner's cluster gone, the run is reported stopped
    record = {
        "token": "0" * 32,
        "host": "gone-host",
        "pid": 1,
        "started_at": 0.0,
        "ttl_s": 15,
        "cluster": dead_address(),
        "renewals": 3,
    }
    Storage.at(experiment.path).write_atomic(LEASE_FILE, json.dumps(record).encode())
    stale = rtune_stop(experiment.path)
    assert_refused(
        stale, f"No live Ray cluster at {record['cluster']}", "gone-host", "It is stopped"
    )
