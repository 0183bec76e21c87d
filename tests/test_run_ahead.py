"""Trials run ahead of decisions that only stop them, and a stop still ends them where it was
decided: the result, the history and the checkpoints end at that result, as when the trial waits
for each decision; decisions that may pause or exploit still get one result at a time."""

from __future__ import annotations

import os
import tempfile

import pytest

import rtune as tune
from rtune._config import CheckpointConfig
from rtune._execution.intake import RUN_AHEAD_RESULTS, STOP_LEAD_S, ack_window
from rtune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule, TrialScheduler
from rtune.stopper import DictStopper, Stopper

STOP_AT = 400
CHECKPOINT_EVERY = 25


class StopAt(Stopper):
    """Stops every trial at STOP_AT: a decision taken in the controller."""

    def __call__(self, trial_id, result):
        return result["training_iteration"] >= STOP_AT

    def stop_all(self):
        return False


def fast(config):
    """Trivial iterations with a checkpoint every CHECKPOINT_EVERY; it writes down how far it
    really ran, which is past STOP_AT when it ran ahead of the stop."""
    executed = 0
    try:
        for i in range(1, 100_000):
            executed = i
            if i % CHECKPOINT_EVERY == 0:
                with tempfile.TemporaryDirectory() as directory:
                    with open(os.path.join(directory, "i"), "w") as f:
                        f.write(str(i))
                    tune.report({"i": i}, checkpoint=tune.Checkpoint.from_directory(directory))
            else:
                tune.report({"i": i})
    finally:
        with open(os.path.join(config["out"], f"executed_{config['t']}"), "w") as f:
            f.write(str(executed))


def test_a_stop_decided_in_the_controller_ends_the_trial_at_that_result(storage, tmp_path):
    results = tune.Tuner(
        fast,
        param_space={"out": str(tmp_path), "t": tune.grid_search([0, 1])},
        run_config=tune.RunConfig(
            storage_path=storage,
            verbose=0,
            stop=StopAt(),
            checkpoint_config=CheckpointConfig(num_to_keep=3),
        ),
    ).fit()
    assert results.num_errors == 0 and len(results) == 2
    ran_past = []
    for result in results:
        assert result.metrics["training_iteration"] == STOP_AT
        history = result.metrics_dataframe["training_iteration"].tolist()
        assert history == list(range(1, STOP_AT + 1))  # each iteration once, none past the stop
        assert result.checkpoint is not None
        with result.checkpoint.as_directory() as directory:
            with open(os.path.join(directory, "i")) as f:
                assert int(f.read()) == STOP_AT  # the newest checkpoint is the stop's
        # retention kept 3, all at or before the stop; those committed past it are gone
        kept = sorted(name for name in os.listdir(result.path) if name.startswith("checkpoint_"))
        assert len(kept) == 3
        with open(os.path.join(str(tmp_path), f"executed_{result.config['t']}")) as f:
            ran_past.append(int(f.read()) > STOP_AT)
    # it did run ahead of the decision (else this test shows nothing): the cut is what ended it
    assert any(ran_past)


class Saving(tune.Trainable):
    """A class trainable whose checkpoint holds the iteration it was saved at."""

    def step(self):
        return {"i": self.iteration + 1}

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "i"), "w") as f:
            f.write(str(self.iteration))

    def load_checkpoint(self, checkpoint_dir):
        pass


class StopAtFive(Stopper):
    def __call__(self, trial_id, result):
        return result["training_iteration"] >= 5

    def stop_all(self):
        return False


def test_checkpoint_at_end_after_a_stop_decided_in_the_controller_is_kept(storage):
    """The end checkpoint is taken after the stop was decided, at the result it was decided on:
    it is the trial's, not work past the stop."""
    results = tune.Tuner(
        Saving,
        param_space={"t": tune.grid_search([0, 1])},
        run_config=tune.RunConfig(
            storage_path=storage,
            verbose=0,
            stop=StopAtFive(),
            checkpoint_config=CheckpointConfig(checkpoint_at_end=True),
        ),
    ).fit()
    assert results.num_errors == 0 and len(results) == 2
    for result in results:
        assert result.metrics["training_iteration"] == 5
        assert result.checkpoint is not None, result.path
        with result.checkpoint.as_directory() as directory:
            with open(os.path.join(directory, "i")) as f:
                assert int(f.read()) == 5


class MayPause(TrialScheduler):
    """Overrides on_trial_result and declares nothing: it may pause or exploit."""

    def on_trial_result(self, tune_controller, trial, result):
        return self.CONTINUE


@pytest.mark.parametrize(
    ("scheduler", "stop", "checkpoint_at_end", "window"),
    [
        (FIFOScheduler(), {"training_iteration": 3}, False, (RUN_AHEAD_RESULTS, 0.0)),
        (FIFOScheduler(), StopAt(), False, (RUN_AHEAD_RESULTS, STOP_LEAD_S)),
        (ASHAScheduler(metric="m", mode="max"), None, False, (RUN_AHEAD_RESULTS, STOP_LEAD_S)),
        (MedianStoppingRule(metric="m", mode="max"), None, False, (RUN_AHEAD_RESULTS, STOP_LEAD_S)),
        # it may pause: one result at a time, so a pause finds the trial where it decided
        (MedianStoppingRule(metric="m", mode="max", hard_stop=False), None, False, (1, 0.0)),
        (MayPause(), None, False, (1, 0.0)),
        # a checkpoint at the end must be the stop's result's: no running past it
        (FIFOScheduler(), StopAt(), True, (1, 0.0)),
    ],
)
def test_how_far_a_trial_may_run_ahead_follows_what_the_decisions_may_be(
    scheduler, stop, checkpoint_at_end, window
):
    class Setup:  # the two fields ack_window reads of an ExperimentSetup
        pass

    setup = Setup()
    setup.scheduler = scheduler
    setup.stopper = DictStopper(stop) if isinstance(stop, dict) else stop
    setup.checkpoint_config = CheckpointConfig(checkpoint_at_end=checkpoint_at_end)
    assert ack_window(setup) == window


class ClaimsOnlyStops(TrialScheduler):
    """Declares only_stops, then pauses: a scheduler bug, refused by name."""

    @property
    def needs(self):
        from rtune.schedulers import SchedulerNeeds

        return SchedulerNeeds(decides_each_result=True, only_stops=True)

    def on_trial_result(self, tune_controller, trial, result):
        return self.PAUSE if result["training_iteration"] == 2 else self.CONTINUE


def counting(config):
    for i in range(1, 6):
        tune.report({"i": i})


def test_a_scheduler_that_declares_only_stops_and_pauses_is_refused_by_name(storage):
    with pytest.raises(ValueError, match="ClaimsOnlyStops declares needs.only_stops"):
        tune.Tuner(
            counting,
            tune_config=tune.TuneConfig(scheduler=ClaimsOnlyStops()),
            run_config=tune.RunConfig(storage_path=storage, verbose=0),
        ).fit()
