"""Smoke runs of every script in benchmarks/ at tiny sizes, rtune only: each exits 0 and prints
its figures. No timing is asserted."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RUNS = {
    "throughput.py": (
        ["--trials", "20", "--results", "50", "--repeat", "1", "--warmup", "0"],
        "trials/s rtune",
    ),
    "stop_latency.py": (["--repeat", "1", "--iteration-s", "0.05"], "SIGINT->fit() returned"),
    "overhead.py": (
        ["--trials", "4", "--iterations", "2", "--iteration-s", "0.05"],
        "x the minimum",
    ),
    "state_overhead.py": (
        ["--trials", "10", "--iterations", "3"],
        "time writing experiment state",
    ),
    "checkpoint_sync.py": (["--mb", "4", "--files", "2"], "rtune commit_checkpoint"),
    "scale.py": (["--trials", "200"], "controller peak RSS"),
    "pbt.py": (["--trials", "4", "--iterations", "10"], "exploits"),
    "searchers.py": (["--trials", "12"], "searcher state at the end"),
    "loggers.py": (
        ["--trials", "20", "--results", "50", "--sleepy", "0", "--repeat", "1"],
        "default loggers on / off",
    ),
}


def test_every_benchmark_has_a_smoke_run():
    scripts = {
        n
        for n in os.listdir(os.path.join(REPO, "benchmarks"))
        if n.endswith(".py") and not n.startswith("_")  # _common.py: shared code, not a script
    }
    assert scripts == set(RUNS)


@pytest.mark.parametrize("script", sorted(RUNS))
def test_benchmark_runs(script):
    args, label = RUNS[script]
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    done = subprocess.run(
        [sys.executable, os.path.join("benchmarks", script), *args, "--skip-raytune"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert label in done.stdout, done.stdout[-3000:]
