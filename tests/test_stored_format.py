"""Experiments written by an earlier stored format still restore: `fixtures/format_v1` was written
by rtune's first format (before checkpoint provenance) and stopped by SIGINT, see
`fixtures/make_format_v1.py`."""

import shutil
from pathlib import Path

import pytest

import rtune as tune

FIXTURE = Path(__file__).parent / "fixtures" / "format_v1"


@pytest.fixture
def old_experiment(tmp_path):
    target = tmp_path / "format_v1"
    shutil.copytree(FIXTURE, target)
    return str(target)


def test_format_v1_restores_and_finishes(ray_local, old_experiment):
    assert tune.Tuner.can_restore(old_experiment)
    grid = tune.Tuner.restore(old_experiment).fit()  # the trainable comes from the metadata
    by_iters = {r.config["iters"]: r for r in grid}
    assert sorted(by_iters) == [2, 3, 6]
    # the stopped trial resumed from its checkpoint at iteration 3: each iteration once
    resumed = by_iters[6]
    assert resumed.error is None
    assert list(resumed.metrics_dataframe["training_iteration"]) == [1, 2, 3, 4, 5, 6]
    assert resumed.metrics["score"] == pytest.approx(9.0)
    assert resumed.checkpoint is not None
    # the finished trial was not run again; the failed one stays failed (no resume_errored)
    assert list(by_iters[3].metrics_dataframe["training_iteration"]) == [1, 2, 3]
    assert by_iters[2].error is not None
    assert grid.get_best_result().config["iters"] == 6


def test_format_v1_restart_errored(ray_local, old_experiment):
    grid = tune.Tuner.restore(old_experiment, restart_errored=True).fit()
    failed = next(r for r in grid if r.config["iters"] == 2)
    # it fails at iteration 2 again, from scratch: its history is the new run's
    assert failed.error is not None
    assert list(failed.metrics_dataframe["training_iteration"]) == [1]
