"""The decision contract: what a scheduler's answers do to a run (PAUSE, Exploit), what strategies
declare instead of the engine reading their types, and how a checkpoint another trial restores
from is kept (provenance, pinning) across retention and a restore."""

from __future__ import annotations

import json
import os

import pytest

import rtune as tune
from rtune._durable import checkpoints as retention
from rtune._durable.restore import reconcile_with_storage
from rtune._durable.storage import Storage
from rtune._durable.trial import Trial
from rtune._execution.resources import ResourceRequest
from rtune.schedulers import Exploit, FIFOScheduler, SchedulerNeeds, TrialScheduler
from rtune.search import BasicVariantGenerator, Searcher, SearcherNeeds


class Counter(tune.Trainable):
    """Counts iterations; its checkpoint holds the count and which trial's run wrote it."""

    def setup(self, config):
        self.count = 0
        self.origin = self.trial_id
        self.x = config["x"]

    def step(self):
        self.count += 1
        return {"count": self.count, "x": self.x, "origin": self.origin}

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "state.json"), "w") as f:
            json.dump({"count": self.count, "origin": self.origin}, f)

    def load_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "state.json")) as f:
            state = json.load(f)
        self.count, self.origin = state["count"], state["origin"]

    def reset_config(self, new_config):
        self.x = new_config["x"]
        return True


class PauseFirstAtTwo(TrialScheduler):
    """Pauses the first trial at its second result and runs it again once the others are done."""

    def __init__(self):
        self.first = None
        self.paused = []
        self.completed = []

    def on_trial_add(self, tune_controller, trial):
        self.first = self.first or trial  # a trial kept in the scheduler's state

    def on_trial_result(self, tune_controller, trial, result):
        if trial is self.first and result["training_iteration"] == 2 and not self.paused:
            self.paused.append(trial.trial_id)
            return self.PAUSE
        return self.CONTINUE

    def on_trial_complete(self, tune_controller, trial, result):
        self.completed.append(trial.trial_id)

    def choose_trial_to_run(self, tune_controller):
        """Pending trials first, then paused ones, as Ray Tune's FIFO picks."""
        trials = tune_controller.get_trials()
        for status in ("PENDING", "PAUSED"):
            for candidate in trials:
                if candidate.status == status:
                    return candidate
        return None


def test_a_paused_trial_resumes_from_its_checkpoint_and_runs_each_iteration_once(storage):
    scheduler = PauseFirstAtTwo()
    results = tune.Tuner(
        Counter,
        param_space={"x": tune.grid_search([1, 2, 3])},
        tune_config=tune.TuneConfig(scheduler=scheduler, max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=storage, verbose=0, stop={"training_iteration": 4}),
    ).fit()
    assert results.num_errors == 0 and results.num_terminated == 3
    first = next(r for r in results if r.config["x"] == 1)
    assert scheduler.paused  # the user's scheduler object got its final state back
    assert list(first.metrics_dataframe["training_iteration"]) == [1, 2, 3, 4]
    assert list(first.metrics_dataframe["count"]) == [1, 2, 3, 4]  # resumed, not restarted
    # it waited while the others ran (pending trials come first in line), then ended last
    assert scheduler.completed[-1] == scheduler.first.trial_id and len(scheduler.completed) == 3


class ExploitOnce(TrialScheduler):
    """The second trial, at its third result, takes the first trial's newest checkpoint and a new
    config (what PBT does); `num_to_keep=1` would delete that checkpoint but for its pin."""

    def __init__(self):
        self.ids = []
        self.done = False

    def on_trial_add(self, tune_controller, trial):
        self.ids.append(trial.trial_id)

    def on_trial_result(self, tune_controller, trial, result):
        trial_id = trial.trial_id
        if len(self.ids) == 2 and trial_id == self.ids[1] and result["training_iteration"] == 3:
            if not self.done:
                self.done = True
                return Exploit(donor=self.ids[0], config={"x": 100})
        return self.CONTINUE

    def on_trial_complete(self, tune_controller, trial, result):
        pass


def test_an_exploit_restarts_a_trial_from_the_donors_checkpoint_with_the_new_config(storage):
    results = tune.Tuner(
        Counter,
        param_space={"x": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(scheduler=ExploitOnce(), max_concurrent_trials=1),
        run_config=tune.RunConfig(
            storage_path=storage,
            verbose=0,
            stop={"training_iteration": 5},
            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1, num_to_keep=1),
        ),
    ).fit()
    assert results.num_errors == 0
    donor = next(r for r in results if r.config["x"] == 1)
    taker = next(r for r in results if r.config["x"] == 100)
    # the donor ran first, to 5: the taker continued from the donor's count and origin
    assert taker.metrics["origin"] == donor.metrics["origin"] != taker.metrics["trial_id"]
    # the donor's count went on: 5 from the donor, then one step to the stop at iteration 5+
    assert taker.metrics["count"] == 6 and taker.metrics["training_iteration"] == 6
    assert taker.metrics["x"] == 100
    # what it became is written where a user (and PopulationBasedTrainingReplay) looks
    taker_id = taker.metrics["trial_id"]
    experiment = results.experiment_path
    with open(os.path.join(experiment, f"pbt_policy_{taker_id}.txt")) as f:
        (line,) = [json.loads(row) for row in f]
    # [its tag, the donor's tag, its iteration, the donor's checkpoint iteration, configs]
    assert line[2:] == [3, 5, {"x": 1}, {"x": 100}]
    with open(os.path.join(experiment, "pbt_global.txt")) as f:
        assert [json.loads(row) for row in f] == [line]
    with open(os.path.join(taker.path, "params.json")) as f:
        assert json.load(f) == {"x": 100}  # the config it runs with now
    # its history says where its rows after the exploit came from: the donor's checkpoint
    starts = [n for n in os.listdir(os.path.join(taker.path, "results")) if "-start-" in n]
    (start,) = starts
    assert start.endswith("-start-00000005")
    with open(os.path.join(taker.path, "results", start)) as f:
        origin = json.load(f)["restored_from"]
    assert origin.startswith(os.path.basename(donor.path) + "/checkpoint_")
    assert os.path.exists(os.path.join(experiment, origin))  # pinned: num_to_keep=1 kept it


def test_an_exploit_naming_no_such_trial_stops_the_run_with_an_error_naming_it(storage):
    class BadExploit(TrialScheduler):
        def on_trial_result(self, tune_controller, trial, result):
            return Exploit(donor="nobody", config={"x": 0})

    with pytest.raises(ValueError, match="nobody"):
        tune.Tuner(
            Counter,
            param_space={"x": 1},
            tune_config=tune.TuneConfig(scheduler=BadExploit()),
            run_config=tune.RunConfig(
                storage_path=storage, verbose=0, stop={"training_iteration": 3}
            ),
        ).fit()


# declared needs, without Ray


def test_schedulers_declare_needs_and_subclasses_default_safely():
    assert FIFOScheduler().needs == SchedulerNeeds(decides_each_result=False, runs_in_order=True)
    assert TrialScheduler().needs == SchedulerNeeds(decides_each_result=False, runs_in_order=True)
    assert PauseFirstAtTwo().needs == SchedulerNeeds(decides_each_result=True, runs_in_order=False)

    class Wrapper(TrialScheduler):  # e.g. a logging wrapper around FIFO keeps FIFO's fast path
        def __init__(self, inner):
            self.inner = inner

        @property
        def needs(self):
            return self.inner.needs

        def on_trial_result(self, tune_controller, trial, result):
            return self.inner.on_trial_result(tune_controller, trial, result)

    assert Wrapper(FIFOScheduler()).needs == FIFOScheduler().needs


def test_searchers_declare_needs():
    assert BasicVariantGenerator(param_space={"x": 1}).needs == SearcherNeeds(True, True)
    assert Searcher.needs == SearcherNeeds(suggests_ahead=False, counts_trials=False)


# provenance and pinning, without Ray


def _entry(path, iteration, score, **extra):
    return {"path": path, "training_iteration": iteration, "metrics": {"s": score}, **extra}


def test_retention_never_deletes_a_pinned_checkpoint():
    config = tune.CheckpointConfig(num_to_keep=1)
    entries = [_entry("c0", 1, 0), _entry("c1", 2, 0), _entry("c2", 3, 0)]
    assert [e["path"] for e in retention.to_delete(entries, config)] == ["c0", "c1"]
    pinned = retention.to_delete(entries, config, pinned={"c0": 1})
    assert [e["path"] for e in pinned] == ["c1"]


def test_provenance_tells_a_trials_own_checkpoint_from_a_donors():
    assert not retention.is_foreign(_entry("c", 1, 0), "t1")  # the first stored format
    assert not retention.is_foreign(_entry("c", 1, 0, **retention.provenance("t1", 0)), "t1")
    assert retention.is_foreign(_entry("c", 1, 0, **retention.provenance("t0", 0)), "t1")


def _trial(relpath: str) -> Trial:
    return Trial(
        trial_id="t1",
        index=1,
        trial_name="Counter_t1",
        relpath=relpath,
        config={"x": 100},
        experiment_tag="1",
        resources=ResourceRequest(((("CPU", 1.0),),)),
    )


def test_a_restore_keeps_an_exploit_until_the_trial_commits_its_own(tmp_path):
    storage = Storage.at(str(tmp_path / "exp"))
    src = tmp_path / "staged"
    src.mkdir()
    (src / "state.json").write_text("{}")
    storage.commit_checkpoint(
        str(src), "t1dir/checkpoint_000000", {"training_iteration": 2, "epoch": 0}
    )
    storage.commit_checkpoint(
        str(src), "t0dir/checkpoint_000004", {"training_iteration": 5, "epoch": 0}
    )
    donor = {
        **_entry("t0dir/checkpoint_000004", 5, 0),
        **retention.provenance("t0", 0),
        "adopted_at": 0,
    }
    trial = _trial("t1dir")
    trial.latest_checkpoint = donor
    trial.epoch = 0
    reconcile_with_storage(storage, trial)
    assert trial.latest_checkpoint["path"] == "t0dir/checkpoint_000004"  # not its own older one
    # its run after the exploit (epoch 1) committed one of its own: that one is the latest now
    storage.commit_checkpoint(
        str(src), "t1dir/checkpoint_000001", {"training_iteration": 6, "epoch": 1}
    )
    trial.latest_checkpoint = donor
    reconcile_with_storage(storage, trial)
    assert trial.latest_checkpoint["path"] == "t1dir/checkpoint_000001"


def test_a_schedulers_saved_trials_pickle_as_their_ids_and_come_back_as_the_same_views():
    import cloudpickle

    from rtune._execution.views import ControllerView, view_for, view_of

    trial = _trial("t1dir")
    view = view_of(trial)
    state = {"brackets": [[view]], "by_trial": {view: 1}}
    again = cloudpickle.loads(cloudpickle.dumps(state))
    assert again["brackets"][0][0] is view and again["by_trial"][view] == 1
    assert view.config == {"x": 100} and view.status == "PENDING" and view.checkpoint is None
    assert ControllerView({"t1": trial}).get_trials() == [view]
    with pytest.raises(RuntimeError, match="not part of the run"):
        _ = view_for("t-unknown").config


class StopsByController(TrialScheduler):
    """Ray Tune's other way to end trials: `tune_controller.stop_trial`. At the first trial's
    second result it ends the last trial (still pending) and the first itself (running)."""

    def __init__(self):
        self.removed = []

    def on_trial_result(self, tune_controller, trial, result):
        trials = tune_controller.get_trials()
        if trial is trials[0] and result["training_iteration"] == 2:
            tune_controller.stop_trial(trials[-1])
            tune_controller.stop_trial(trial)
        return self.CONTINUE

    def on_trial_remove(self, tune_controller, trial):
        self.removed.append(trial.trial_id)


def test_a_scheduler_ends_running_and_waiting_trials_through_stop_trial(storage):
    scheduler = StopsByController()
    results = tune.Tuner(
        Counter,
        param_space={"x": tune.grid_search([1, 2, 3])},
        tune_config=tune.TuneConfig(scheduler=scheduler, max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=storage, verbose=0, stop={"training_iteration": 4}),
    ).fit()
    by_x = {r.config["x"]: r for r in results}
    assert {r.status for r in results} == {"TERMINATED"} and not results.errors
    assert by_x[1].metrics["training_iteration"] == 2  # ended at the result it was asked on
    assert by_x[2].metrics["training_iteration"] == 4
    assert by_x[3].metrics.get("training_iteration") is None  # ended before it ever ran
    # as in Ray Tune, a waiting trial's end reaches the scheduler through on_trial_remove
    ran = {by_x[1].metrics["trial_id"], by_x[2].metrics["trial_id"]}
    assert len(scheduler.removed) == 1 and scheduler.removed[0] not in ran


class ExploitsByController(TrialScheduler):
    """rtune's `tune_controller.exploit_trial`: at the first trial's second result, the trial
    waiting to run (`target`: the second, pending) takes the first's checkpoint with x=50."""

    def __init__(self, target: int = 1):
        self.target = target

    def on_trial_result(self, tune_controller, trial, result):
        trials = tune_controller.get_trials()
        if trial is trials[0] and result["training_iteration"] == 2:
            exploit = Exploit(donor=trial.trial_id, config={"x": 50})
            tune_controller.exploit_trial(trials[self.target], exploit)
        return self.CONTINUE


def _exploited_run(storage, target):
    return tune.Tuner(
        Counter,
        param_space={"x": tune.grid_search([1, 2])},
        tune_config=tune.TuneConfig(
            scheduler=ExploitsByController(target), max_concurrent_trials=1
        ),
        run_config=tune.RunConfig(
            storage_path=storage,
            verbose=0,
            stop={"training_iteration": 4},
            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1, num_to_keep=1),
        ),
    )


def test_a_waiting_trial_exploited_through_the_controller_resumes_from_the_donor(storage):
    results = _exploited_run(storage, target=1).fit()
    assert not results.errors
    first, second = sorted(results, key=lambda r: r.metrics["trial_id"])
    assert first.config == {"x": 1} and first.metrics["count"] == 4
    # the pending trial began from the donor's iteration-2 checkpoint, with the new config
    assert second.config == {"x": 50} and second.metrics["x"] == 50
    assert second.metrics["origin"] == first.metrics["trial_id"]
    assert list(second.metrics_dataframe["training_iteration"]) == [3, 4]
    with open(os.path.join(results.experiment_path, "pbt_global.txt")) as src:
        assert len(src.readlines()) == 1


def test_exploit_trial_on_a_running_trial_is_refused_naming_it(storage):
    with pytest.raises(ValueError, match=r"exploit_trial\(\) takes a trial that waits.*RUNNING"):
        _exploited_run(storage, target=0).fit()
