"""`tune.run(...)`, Ray Tune's older entry point, and `ExperimentAnalysis`, what it returns (and
what opens any rtune experiment path), on a real local Ray."""

from __future__ import annotations

import os
import tempfile

import pytest
from conftest import experiment_path

import rtune as tune
from rtune.analysis import ExperimentAnalysis


def climbing(config):
    """Three steps scoring x * step, each checkpointed."""
    for step in range(1, 4):
        with tempfile.TemporaryDirectory() as directory:
            with open(os.path.join(directory, "step"), "w") as out:
                out.write(str(step))
            tune.report(
                {"score": config["x"] * step, "neg": -config["x"] * step},
                checkpoint=tune.Checkpoint.from_directory(directory),
            )


def _step(checkpoint: tune.Checkpoint) -> int:
    with checkpoint.as_directory() as directory:
        with open(os.path.join(directory, "step")) as src:
            return int(src.read())


def test_tune_run_returns_an_analysis_of_the_best_trial_config_and_checkpoint(storage):
    analysis = tune.run(
        climbing,
        name="legacy",
        config={"x": tune.grid_search([1, 3, 2])},
        metric="score",
        mode="max",
        resources_per_trial={"cpu": 1},
        storage_path=storage,
        verbose=0,
    )
    assert isinstance(analysis, ExperimentAnalysis)
    assert analysis.experiment_path == experiment_path(storage, "legacy")
    assert analysis.best_config == {"x": 3}
    assert analysis.best_trial.last_result["score"] == 9
    assert analysis.best_result["score"] == 9
    assert _step(analysis.best_checkpoint) == 3
    assert analysis.get_best_config("neg", "max") == {"x": 1}
    worst = analysis.get_best_trial("score", "min")
    assert worst.config == {"x": 1}
    assert _step(analysis.get_best_checkpoint(worst, "score", "min")) == 1
    assert sorted(analysis.dataframe()["score"]) == [3, 6, 9]
    frames = analysis.trial_dataframes
    assert sorted(frames) == sorted(t.trial_id for t in analysis.trials)
    assert all(list(frame["training_iteration"]) == [1, 2, 3] for frame in frames.values())
    assert sorted(r["score"] for r in analysis.results.values()) == [3, 6, 9]
    assert len(analysis.get_trial_checkpoints_paths(worst, "score")) == 3

    # any experiment opens, without Ray, and agrees with what its Tuner would say
    opened = ExperimentAnalysis(analysis.experiment_path)
    grid = tune.Tuner.restore(analysis.experiment_path).get_results()
    best = grid.get_best_result("score", "max")
    assert opened.get_best_trial("score", "max").trial_id == best.metrics["trial_id"]
    assert opened.get_best_config("score", "max", scope="avg") == {"x": 3}
    with pytest.raises(ValueError, match="needs a metric and a mode"):
        opened.best_config  # noqa: B018 (a property that raises)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ExperimentAnalysis(os.path.join(storage, "nowhere"))


def breaks(config):
    tune.report({"score": 1})
    raise RuntimeError("broken on purpose")


def test_failed_trials_raise_a_tune_error_unless_told_not_to(storage):
    with pytest.raises(tune.TuneError, match="Trials did not complete"):
        tune.run(breaks, name="raising", storage_path=storage, verbose=0)
    analysis = tune.run(
        breaks, name="quiet", storage_path=storage, verbose=0, raise_on_failed_trial=False
    )
    assert [t.status for t in analysis.trials] == ["ERROR"]
    assert "broken on purpose" in analysis.trials[0].error


def test_resume_auto_continues_an_experiment_of_that_name(storage):
    first = tune.run(
        climbing, name="again", config={"x": 1}, storage_path=storage, verbose=0, resume="AUTO"
    )
    again = tune.run(climbing, name="again", storage_path=storage, verbose=0, resume="AUTO")
    assert [t.trial_id for t in again.trials] == [t.trial_id for t in first.trials]
    assert again.trials[0].last_result["training_iteration"] == 3
    with pytest.raises(ValueError, match="there is no experiment"):
        tune.run(climbing, name="never", storage_path=storage, verbose=0, resume=True)


def test_arguments_rtune_does_not_honour_are_refused_by_name(tmp_path):
    with pytest.raises(NotImplementedError, match="sync_config"):
        tune.run(climbing, storage_path=str(tmp_path), sync_config=object())
    with pytest.raises(TypeError, match="'colour'"):
        tune.run(climbing, storage_path=str(tmp_path), colour="blue")
    with pytest.raises(ValueError, match="resume must be one of"):
        tune.run(climbing, storage_path=str(tmp_path), resume="SOMETIMES")
