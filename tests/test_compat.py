"""A script written for Ray Tune runs unchanged after swapping the import (in its own process, with
an embedded local Ray, as a user would run it)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(__file__)


@pytest.mark.slow
def test_raytune_script_runs_with_rtune(tmp_path):
    env = {**os.environ, "RAY_ADDRESS": ""}
    env.pop("RAY_ADDRESS")
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "raytune_script.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "COMPAT OK" in proc.stdout
    assert (
        "== Status ==" in proc.stdout or "Result logdir" in proc.stdout or "rtune:" in proc.stdout
    )
