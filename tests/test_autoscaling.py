"""Trials whose resource requests exceed the cluster wait as PENDING, with their demand visible to
Ray, and start when nodes join: through Ray's real autoscaler (its fake node provider, which adds
local raylets), and through a `ray.cluster_utils.Cluster` the driver grows itself."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from cluster.autoscaling import start_autoscaling_cluster

DRIVER = Path(__file__).parent / "drivers" / "autoscaled.py"


def run_driver(storage: str, mode: str, env: dict[str, str]) -> dict:
    proc = subprocess.run(
        [sys.executable, str(DRIVER), storage, mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    lines = {li.split(" ", 1)[0]: li.split(" ", 1)[-1] for li in proc.stdout.splitlines()}
    return {
        "results": json.loads(lines["RESULTS"]),
        "big_nodes": json.loads(lines["BIG_NODES"]),
        "stdout": proc.stdout,
    }


def assert_ran_on_new_nodes(run: dict, iterations: int = 3) -> None:
    assert run["big_nodes"], "no node with the 'big' resource joined"
    for trial, (status, last, node) in run["results"].items():
        assert (status, last) == ("TERMINATED", iterations), trial
        assert node in run["big_nodes"], trial


@pytest.mark.slow
def test_pending_trials_start_when_the_autoscaler_adds_nodes(tmp_path):
    root = tempfile.mkdtemp(prefix="rta_", dir="/tmp")
    cluster = start_autoscaling_cluster(root)
    try:
        env = {**cluster.driver_env(), "RAY_ADDRESS": cluster.address}
        run = run_driver(str(tmp_path / "results"), "join", env)
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    assert_ran_on_new_nodes(run)


@pytest.mark.slow
def test_pending_trials_start_when_a_node_joins(tmp_path):
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("RAY_ADDRESS", None)
    run = run_driver(str(tmp_path / "results"), "grow", env)
    assert "ALL_PENDING_BEFORE_GROWING" in run["stdout"]
    assert_ran_on_new_nodes(run)


@pytest.mark.slow
def test_trials_pinned_to_a_lost_resource_wait_for_it(tmp_path):
    """The only node with "big" is lost while a trial runs on it: the trial is retried, and with
    nowhere to run it waits as PENDING (not an error) until a node with "big" joins again."""
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("RAY_ADDRESS", None)
    run = run_driver(str(tmp_path / "results"), "vanish", env)
    assert "PENDING_AFTER_LOSS" in run["stdout"]
    assert_ran_on_new_nodes(run, iterations=20)
