"""What the scheduler tests share: a run of trial records to feed a scheduler's policy directly
(no Ray), and Ray Tune's own example scripts, taken from the installed ray wheel, with the import
swapped to rtune and run as a user would run them."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rtune._durable.trial import Trial
from rtune._execution.resources import ResourceRequest
from rtune._execution.views import ControllerView, view_of

REPO = Path(__file__).resolve().parent.parent


def run_of(
    *ids: str,
    config: dict | None = None,
    status: str | None = None,
    storage: Any = None,
    on_exploit: Any = None,
    checkpoints: bool = False,
) -> tuple[ControllerView, dict]:
    """The run and its trials' views, one 1-CPU trial record per id. `run.stopped` collects the
    trials the scheduler asked to end through `tune_controller.stop_trial` (the engine carries
    that out when the call returns). `checkpoints`: each trial has a committed checkpoint (for
    PBT, whose recipients take one)."""
    records = {
        tid: Trial(
            trial_id=tid,
            index=i,
            trial_name=f"f_{tid}",
            relpath=f"{tid}dir",
            config=dict(config or {}),
            experiment_tag=str(i),
            resources=ResourceRequest(((("CPU", 1.0),),)),
            **({"status": status} if status else {}),
        )
        for i, tid in enumerate(ids)
    }
    if checkpoints:
        for record in records.values():
            record.latest_checkpoint = {"path": f"{record.relpath}/checkpoint_000000"}
    stopped: list[str] = []
    run = ControllerView(records, storage, stopped.append, on_exploit)
    run.stopped = stopped
    return run, {tid: view_of(rec, storage) for tid, rec in records.items()}


def feed(scheduler, run, views, steps) -> list:
    """(trial id, iteration, score) results in order -> the decisions."""
    return [
        scheduler.on_trial_result(run, views[tid], {"training_iteration": it, "score": score})
        for tid, it, score in steps
    ]


def add_all(scheduler, run, views) -> None:
    for view in views.values():
        scheduler.on_trial_add(run, view)


def ray_example(name: str) -> str:
    """A file of Ray Tune's examples in the installed ray wheel, found without importing
    ray.tune (which this environment may not be able to import)."""
    ray_dir = os.path.dirname(importlib.util.find_spec("ray").origin)
    path = os.path.join(ray_dir, "tune", "examples", name)
    if not os.path.exists(path):
        pytest.skip(f"the installed ray has no {name}")
    return path


def run_ray_example(name: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Ray Tune's example `name` with `--smoke-test`, its `ray.tune` imports swapped to rtune (at
    test time: nothing of Ray Tune is copied into the project), run with this checkout's rtune
    and its results under tmp_path/results. It gets a Ray of its own (the examples call
    `ray.init(num_cpus=...)`), never a cluster running on this machine."""
    with open(ray_example(name)) as src:
        code = src.read()
    code = code.replace("from ray import tune", "import rtune as tune")
    code = re.sub(r"\bfrom ray\.tune(\.[\w.]+)? import", r"from rtune\1 import", code)
    assert "ray.tune" not in code and "from ray import" not in code
    script = tmp_path / name
    script.write_text(code)
    env = {
        **os.environ,
        "RTUNE_STORAGE_PATH": str(tmp_path / "results"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "RAY_ADDRESS": "local",
    }
    proc = subprocess.run(
        [sys.executable, str(script), "--smoke-test"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Best hyperparameters" in proc.stdout  # "... found were", "... for loss found were"
    assert os.listdir(tmp_path / "results")  # the results went where RTUNE_STORAGE_PATH says
    return proc


def ready(searcher: Any, space: dict | None = None, metric: str = "score", mode: str = "max"):
    """A searcher given its metric, mode and (optionally) param_space, as the Tuner does."""
    assert searcher.set_search_properties(metric, mode, space)
    return searcher
