"""Real multi-node runs: a `ray start` cluster on 127.0.0.x (cluster/local_cluster.py) and a
subprocess driver joined to it, as a `ray job submit` entrypoint would be."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
from conftest import S3_BUCKET

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


@pytest.mark.slow
def test_checkpoints_written_on_a_lost_node_restore_on_another(tmp_path, s3_server):
    """Run on node B with S3 storage, stop, lose node B and its scratch directory: the restored
    experiment continues from B's checkpoints on node C, re-running nothing."""
    root = tempfile.mkdtemp(prefix="rtb_", dir="/tmp")
    cluster = start_cluster(root, workers=1, resources={"worker": 1})
    try:
        node_b = cluster.nodes[-1]
        progress = tmp_path / "progress"
        progress.mkdir()
        storage = s3_server.uri(S3_BUCKET, tmp_path.name)
        env = {**cluster.driver_env(), **_aws_env(), "RAY_ADDRESS": cluster.address}
        command = [sys.executable, os.path.join(HERE, "drivers", "experiment.py"), storage, "exp"]
        command += [str(progress), "--join", "--trials", "1", "--iterations", "6"]
        command += ["--sleep", "0.3", "--resources", '{"cpu": 1, "worker": 1}']
        first = subprocess.Popen(
            command,
            env=env,
            text=True,
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 90
        while len(_node_log(progress)) < 3:
            assert first.poll() is None, first.stdout.read()
            assert time.monotonic() < deadline, "the trial never ran 3 iterations"
            time.sleep(0.1)
        first.send_signal(signal.SIGINT)
        out, _ = first.communicate(timeout=60)
        assert first.returncode == 0, out
        ran_on_b = _node_log(progress)
        assert {ip for _, _, ip in ran_on_b} == {node_b.ip}

        node_c = cluster.add_worker(resources={"worker": 1})
        cluster.remove_node(node_b.name)
        shutil.rmtree(node_b.temp_dir)  # its scratch copies are gone with it
        second = subprocess.run(
            [*command, "--restore"],
            env=env,
            text=True,
            timeout=120,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert second.returncode == 0, second.stdout
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    results = json.loads(
        next(li for li in second.stdout.splitlines() if li.startswith("RESULTS "))[8:]
    )
    assert results == {"0": ["TERMINATED", 6, [1, 2, 3, 4, 5, 6]]}
    after = _node_log(progress)[len(ran_on_b) :]
    assert {ip for _, _, ip in after} == {node_c.ip}
    # nothing ran twice: B's last checkpoint, read back from S3, was where C began
    assert sorted(it for _, it, _ in _node_log(progress)) == [1, 2, 3, 4, 5, 6]


def _node_log(progress) -> list[tuple[int, int, str]]:
    path = progress / "nodes.log"
    if not path.exists():
        return []
    return [
        (int(t), int(i), ip)
        for t, i, ip in (li.split() for li in path.read_text().split("\n") if li)
    ]


def _aws_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key.startswith("AWS_")}
