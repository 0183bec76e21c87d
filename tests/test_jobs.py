"""A `ray job submit` workload, stopped with `ray job stop` and completed by a restoring job.

`ray job stop` sends SIGTERM to the entrypoint and SIGKILL 3 s later. Here every trial is held in
the middle of an iteration when the stop comes, so the drain cannot finish inside that window: what
makes the experiment restorable is the state rtune writes as soon as SIGTERM arrives.

The cluster runs from a second Ray installation with `ray[default]` (the job server), made by
`make test` in .venv-jobs (RTUNE_JOBS_VENV), as a real cluster has its own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from conftest import S3_BUCKET, experiment_path

from cluster.local_cluster import start_cluster

DRIVER = Path(__file__).parent / "drivers" / "experiment.py"
JOBS_VENV = Path(os.environ.get("RTUNE_JOBS_VENV", Path(__file__).parents[1] / ".venv-jobs"))
JOBS_PYTHON = JOBS_VENV / "bin" / "python"
RAY_CLI = JOBS_VENV / "bin" / "ray"
TRIALS, ITERATIONS, BLOCK_AT = 2, 6, 3


@pytest.fixture
def job_cluster(s3_server):
    """A one-node `ray start` cluster with its dashboard (the job server) on 127.0.0.10; started
    after the S3 server fixture so jobs inherit its credentials from the environment."""
    assert JOBS_PYTHON.exists(), f"no Ray with its job server at {JOBS_VENV}: run `make install`"
    root = tempfile.mkdtemp(prefix="rtj_", dir="/tmp")
    cluster = start_cluster(
        root, workers=0, cpus=2, port=6393, dashboard=True, python=str(JOBS_PYTHON)
    )
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def ray_job(cluster, *args: str, timeout: float = 120) -> str:
    """`ray job <args>`, retried while the freshly started job server has no agent yet."""
    deadline = time.monotonic() + 60
    while True:
        result = subprocess.run(
            [str(RAY_CLI), "job", *args],
            env={**os.environ, "RAY_ADDRESS": cluster.dashboard_url},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        out = result.stdout + result.stderr
        if "No available agent" not in out or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert result.returncode == 0, out
    return out


def job_status(cluster, job_id: str) -> str:
    """The job's status word, as `ray job status` prints it."""
    out = ray_job(cluster, "status", job_id).lower()
    for word in ("succeeded", "failed", "stopped", "running", "pending"):
        if word in out.rsplit("job", 1)[-1]:
            return word
    return out


def started(progress: Path) -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    for log in progress.glob("trial_*.log"):
        for line in log.read_text().splitlines():
            trial, iteration = map(int, line.split())
            found.setdefault(trial, []).append(iteration)
    return found


@pytest.mark.slow
def test_ray_job_stop_then_a_restoring_job_completes_the_experiment(
    job_cluster, s3_server, tmp_path
):
    storage = s3_server.uri(S3_BUCKET, tmp_path.name)
    progress = tmp_path / "progress"
    progress.mkdir()
    entrypoint = [str(JOBS_PYTHON), str(DRIVER), storage, "exp", str(progress), "--join"]
    entrypoint += ["--trials", str(TRIALS), "--iterations", str(ITERATIONS)]
    entrypoint += ["--sleep", "0.1", "--block-at", str(BLOCK_AT)]

    out = ray_job(job_cluster, "submit", "--no-wait", "--submission-id", "first", "--", *entrypoint)
    assert "first" in out
    deadline = time.monotonic() + 120
    checked = time.monotonic()
    while sum(BLOCK_AT in its for its in started(progress).values()) < TRIALS:
        assert time.monotonic() < deadline, ray_job(job_cluster, "logs", "first")
        if time.monotonic() - checked > 5:  # a job that died early fails the test now
            checked = time.monotonic()
            assert job_status(job_cluster, "first") == "running", ray_job(
                job_cluster, "logs", "first"
            )
        time.sleep(0.1)
    # every trial is now held inside iteration BLOCK_AT: the drain cannot end before SIGKILL
    ray_job(job_cluster, "stop", "first")
    assert job_status(job_cluster, "first") == "stopped"
    assert not (progress / "fit_returned").exists()

    (progress / "release").touch()
    restore = [*entrypoint, "--restore"]
    ray_job(job_cluster, "submit", "--submission-id", "second", "--", *restore, timeout=180)
    assert job_status(job_cluster, "second") == "succeeded"
    logs = ray_job(job_cluster, "logs", "second")
    results = json.loads(next(li for li in logs.splitlines() if li.startswith("RESULTS "))[8:])
    for trial, (status, last, history) in results.items():
        assert (status, last, history) == ("TERMINATED", ITERATIONS, list(range(1, 7))), trial
    for trial, iterations in started(progress).items():
        # the iteration held when the job was killed ran again; nothing else did
        assert sorted(iterations) == sorted([*range(1, ITERATIONS + 1), BLOCK_AT]), trial
    assert experiment_path(storage, "exp") in logs
