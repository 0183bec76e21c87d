"""Real multi-node runs: a `ray start` cluster on 127.0.0.x (cluster/local_cluster.py) and a
subprocess driver joined to it, as a `ray job submit` entrypoint would be."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from cluster.local_cluster import start_cluster

HERE = os.path.dirname(__file__)


@pytest.fixture
def cluster():
    # a short root: Ray's unix sockets live under each node's temp dir (108-byte path limit)
    root = tempfile.mkdtemp(prefix="rtc_", dir="/tmp")
    cluster = start_cluster(root, workers=2, resources={"worker": 1})
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def _executions(progress):
    if not os.path.exists(progress):
        return []
    return [line.split() for line in open(progress).read().splitlines()]


@pytest.mark.slow
def test_a_lost_node_costs_only_the_iteration_in_flight(cluster, tmp_path):
    progress = str(tmp_path / "progress")
    env = {**os.environ, "RAY_ADDRESS": cluster.address}
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    driver = subprocess.Popen(
        [
            sys.executable,
            os.path.join(HERE, "drivers", "node_loss.py"),
            str(tmp_path / "results"),
            progress,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 90
    while len(_executions(progress)) < 3:
        assert driver.poll() is None, driver.stdout.read()
        assert time.monotonic() < deadline, "the trial never ran 3 iterations"
        time.sleep(0.1)
    first_ip = _executions(progress)[0][0]
    lost = next(node for node in cluster.nodes if node.ip == first_ip)
    cluster.remove_node(lost.name)
    out, _ = driver.communicate(timeout=120)
    assert driver.returncode == 0, out
    assert "HISTORY [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]" in out
    assert "STATUS TERMINATED 10" in out
    executions = _executions(progress)
    iterations = [int(it) for _, it in executions]
    assert len(iterations) - len(set(iterations)) <= 1  # at most the iteration in flight re-ran
    assert executions[-1][0] != first_ip  # finished on the surviving node
