"""Population-based training: its decisions as a pure policy (who exploits whom, with what
config, when it pauses for the trials behind), a restore that decides as the uninterrupted run,
real runs of function and class trainables that take their donors' checkpoints, the policy
replayed, and Ray Tune's own PBT examples after the import swap."""

from __future__ import annotations

import json
import os
import random
import tempfile
import warnings

import cloudpickle
import pytest
from iteration_checkpoints import ctrl_c_when, hold_until_stopped
from scheduler_helpers import add_all, feed, run_of, run_ray_example

import rtune as tune
from rtune._execution.views import ControllerView
from rtune.schedulers import (
    Exploit,
    PopulationBasedTraining,
    PopulationBasedTrainingReplay,
)
from rtune.schedulers.pbt_mutations import explore

C, P, S = "CONTINUE", "PAUSE", "STOP"


def _run_of(*ids: str, status: str = "RUNNING", on_exploit=None) -> tuple[ControllerView, dict]:
    return run_of(
        *ids,
        config={"lr": 1.0, "bs": 32},
        status=status,
        storage=_FakeStorage(),
        on_exploit=on_exploit,
        checkpoints=True,
    )


class _FakeStorage:
    """Only what TrialView.checkpoint reads: a path and a filesystem (no I/O happens)."""

    filesystem = None

    def path(self, relpath: str) -> str:
        return "/nowhere/" + relpath


def _pbt(**kw) -> PopulationBasedTraining:
    args = dict(
        time_attr="training_iteration",
        metric="score",
        mode="max",
        perturbation_interval=2,
        hyperparam_mutations={"lr": tune.uniform(0.1, 10.0), "bs": [16, 32, 64]},
        quantile_fraction=0.25,
    )
    return PopulationBasedTraining(**{**args, **kw})


# the population of 4 at iteration 2, worst first, so none is the bottom one when it arrives:
# d is worst, a best; quantile 0.25 of 4 -> one trial each way
ROUND = [("d", 2, 1.0), ("c", 2, 2.0), ("b", 2, 3.0), ("a", 2, 4.0)]
NEXT = ("d", 4, 1.0)  # d at its next perturbation point, still the bottom one


def test_the_bottom_trial_exploits_the_top_one_at_its_perturbation_point():
    scheduler = _pbt()
    run, views = _run_of("a", "b", "c", "d")
    add_all(scheduler, run, views)
    assert feed(scheduler, run, views, [("a", 1, 4.0)]) == [C]  # before the interval
    assert feed(scheduler, run, views, ROUND) == [C, C, C, C]
    assert feed(scheduler, run, views, [("d", 3, 1.0)]) == [C]  # within the interval
    (exploit,) = feed(scheduler, run, views, [NEXT])
    assert isinstance(exploit, Exploit) and exploit.donor == "a" and exploit.log is True
    assert exploit.config["bs"] in (16, 32, 64) and exploit.config != {"lr": 1.0, "bs": 32}
    # the recipient took the donor's perturbation time, as in Ray Tune
    assert scheduler._trial_state["d"]["last_train_time"] == 2
    assert "1 perturbs" in scheduler.debug_string()


def test_two_trials_arriving_better_first_exploit_at_once():
    scheduler = _pbt()
    run, views = _run_of("a", "b")
    add_all(scheduler, run, views)
    first, second = feed(scheduler, run, views, [("a", 2, 4.0), ("b", 2, 3.0)])
    assert first == C and isinstance(second, Exploit) and second.donor == "a"


def test_min_mode_exploits_the_lowest_value():
    scheduler = _pbt(mode="min")
    run, views = _run_of("a", "b", "c", "d")
    add_all(scheduler, run, views)
    decisions = feed(scheduler, run, views, [(t, 2, 5.0 - v) for t, _, v in ROUND])
    assert decisions == [C, C, C, C]
    (exploit,) = feed(scheduler, run, views, [("d", 4, 4.0)])
    assert isinstance(exploit, Exploit) and exploit.donor == "a"


def test_a_trial_pauses_at_its_perturbation_point_while_others_wait_to_run():
    scheduler = _pbt()
    run, views = _run_of("a", "b", "c", "d")
    add_all(scheduler, run, views)
    views["c"].record.status = views["d"].record.status = "PENDING"
    assert feed(scheduler, run, views, [("a", 1, 1.0), ("a", 2, 1.0)]) == [C, P]
    views["a"].record.status = "PAUSED"
    assert feed(scheduler, run, views, [("b", 2, 2.0)]) == [P]
    # the one furthest behind runs next: the pending ones (0), then the paused by time
    chosen = scheduler.choose_trial_to_run(run)
    assert chosen.trial_id == "c"
    views["c"].record.status = views["d"].record.status = "TERMINATED"
    views["b"].record.status = "PAUSED"
    scheduler.on_trial_result(run, views["b"], {"training_iteration": 1, "score": 0.0})
    scheduler._trial_state["b"]["last_train_time"] = 1
    assert scheduler.choose_trial_to_run(run).trial_id == "b"


def _synch_population(*ids):
    """A synchronous PBT over `ids` and the exploits it asks of waiting trials."""
    asked = []
    scheduler = _pbt(synch=True)
    run, views = _run_of(*ids, on_exploit=lambda tid, exploit: asked.append((tid, exploit)))
    add_all(scheduler, run, views)
    return scheduler, run, views, asked


def _arrive(scheduler, run, views, steps):
    """Results in order; a trial told to pause is paused, as the engine would."""
    decisions = feed(scheduler, run, views, steps)
    for (tid, _, _), decision in zip(steps, decisions, strict=True):
        if decision == P:
            views[tid].record.status = "PAUSED"
    return decisions


def test_synch_pauses_each_trial_at_the_point_and_the_last_one_perturbs_them_all():
    scheduler, run, views, asked = _synch_population("a", "b", "c", "d")
    assert _arrive(scheduler, run, views, [("a", 1, 9.0)]) == [C]  # short of the point
    # in rank order, best first: the worst arrives last and exploits through its decision
    assert _arrive(scheduler, run, views, ROUND[::-1][:3]) == [P, P, P]
    assert scheduler.choose_trial_to_run(run) is None  # d runs; the others wait for it
    (exploit,) = feed(scheduler, run, views, [ROUND[0]])
    assert isinstance(exploit, Exploit) and exploit.donor == "a" and not asked
    assert scheduler._next_sync == 4
    assert {t: s["last_perturbation_time"] for t, s in scheduler._trial_state.items()} == {
        "a": 2, "b": 2, "c": 2, "d": 2
    }  # fmt: skip


def test_synch_exploits_a_paused_bottom_trial_through_the_controller():
    scheduler, run, views, asked = _synch_population("a", "b", "c", "d")
    # worst first: d waits paused at the point when the best, a, arrives last
    assert _arrive(scheduler, run, views, ROUND) == [P, P, P, P]
    ((tid, exploit),) = asked
    assert tid == "d" and isinstance(exploit, Exploit) and exploit.donor == "a"
    # the population resumes furthest behind first; all are behind the next point now
    views["a"].record.status = "PAUSED"
    assert scheduler.choose_trial_to_run(run).trial_id in ("a", "b", "c", "d")
    assert scheduler._next_sync == 4


def test_synch_runs_the_trials_behind_first_and_perturbs_when_the_last_one_ends():
    scheduler, run, views, asked = _synch_population("a", "b", "c", "d")
    views["d"].record.status = "PENDING"
    assert _arrive(scheduler, run, views, [("a", 2, 4.0)]) == [P]
    assert scheduler.choose_trial_to_run(run).trial_id == "d"  # not a: it is at the point
    assert _arrive(scheduler, run, views, [("b", 2, 3.0), ("c", 2, 1.0)]) == [P, P]
    views["d"].record.status = "TERMINATED"  # d ends before the point: nobody else will come
    scheduler.on_trial_complete(run, views["d"], {"training_iteration": 1, "score": 0.0})
    ((tid, exploit),) = asked
    assert tid == "c" and exploit.donor == "a"
    assert scheduler.choose_trial_to_run(run) is not None


def test_no_exploit_during_burn_in_or_without_a_donor_checkpoint():
    scheduler = _pbt(burn_in_period=5)
    run, views = _run_of("a", "b", "c", "d")
    add_all(scheduler, run, views)
    assert feed(scheduler, run, views, [*ROUND, NEXT]) == [C, C, C, C, C]
    scheduler = _pbt()
    run, views = _run_of("a", "b", "c", "d")
    add_all(scheduler, run, views)
    views["a"].record.latest_checkpoint = None  # the donor has committed nothing yet
    assert feed(scheduler, run, views, [*ROUND, NEXT]) == [C, C, C, C, C]


def test_explore_follows_ray_tunes_rules():
    rng = random.Random(1)
    mutations = {
        "lr": tune.uniform(0.0, 1.0),
        "bs": [16, 32, 64],
        "opt": tune.choice(["adam", "sgd", "rms"]),
        "nested": {"depth": [1, 2, 3]},
        "units": lambda: 7,
    }
    config = {"lr": 0.5, "bs": 32, "opt": "sgd", "nested": {"depth": 1}, "units": 10, "keep": "x"}
    seen = {"lr": set(), "bs": set(), "opt": set(), "depth": set(), "units": set()}
    for _ in range(200):
        new = explore(config, mutations, 0.25, (1.2, 0.8), rng)
        assert new["keep"] == "x" and config["lr"] == 0.5  # unmutated keys kept; a copy
        seen["lr"].add(round(new["lr"], 6))
        seen["bs"].add(new["bs"])
        seen["opt"].add(new["opt"])
        seen["depth"].add(new["nested"]["depth"])
        seen["units"].add(new["units"])
        assert isinstance(new["units"], int)  # an int stays an int
    assert {0.6, 0.4} <= seen["lr"] and len(seen["lr"]) > 2  # perturbed, and resampled
    assert seen["bs"] == {16, 32, 64}  # shifted to a neighbour or resampled
    assert seen["opt"] == {"adam", "sgd", "rms"}  # a tune.choice explores like a list
    assert seen["depth"] == {1, 2, 3}
    assert seen["units"] == {12, 8, 7}  # 10 * 1.2, 10 * 0.8, or the function's value
    # a value the list does not hold is resampled from it
    assert explore({"bs": 5}, {"bs": [16, 32]}, 0.0, (1.2,), rng)["bs"] in (16, 32)


def test_custom_explore_fn_gets_the_explored_config():
    def explore(config):
        return {**config, "lr": min(config["lr"], 2.0), "custom": True}

    scheduler = _pbt(custom_explore_fn=explore, hyperparam_mutations={"lr": [1.0, 5.0]})
    run, views = _run_of("a", "b", "c", "d")
    add_all(scheduler, run, views)
    exploit = feed(scheduler, run, views, [*ROUND, NEXT])[4]
    assert exploit.config["custom"] is True and exploit.config["lr"] <= 2.0
    only_custom = PopulationBasedTraining(metric="s", mode="max", custom_explore_fn=explore)
    assert only_custom.debug_string().startswith("PopulationBasedTraining")


def test_a_restore_mid_run_decides_as_the_uninterrupted_run():
    steps = [
        (tid, it, random.Random(f"{tid}{it}").random()) for it in range(1, 13) for tid in "abcd"
    ]

    def run_through(cut: int | None):
        scheduler = _pbt(quantile_fraction=0.5)
        run, views = _run_of("a", "b", "c", "d")
        add_all(scheduler, run, views)
        decisions = []
        for i, step in enumerate(steps):
            if i == cut:  # stopped here: a new scheduler object from the stored state
                state = cloudpickle.loads(cloudpickle.dumps(scheduler.get_state()))
                scheduler = _pbt(quantile_fraction=0.5)
                scheduler.set_state(state)
            decisions += feed(scheduler, run, views, [step])
        return decisions

    whole = run_through(None)
    assert sum(isinstance(d, Exploit) for d in whole) >= 4
    for cut in (5, 17, 30):
        assert run_through(cut) == whole


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"quantile_fraction": 0.6}, ValueError, "quantile_fraction must be between 0 and 0.5"),
        ({"perturbation_interval": 0}, ValueError, "perturbation_interval must be a number > 0"),
        ({"hyperparam_mutations": {}}, ValueError, "needs hyperparam_mutations or custom"),
        (
            {"hyperparam_mutations": {"lr": tune.sample_from(lambda spec: 1)}},
            ValueError,
            r"hyperparam_mutations\['lr'\]: tune.sample_from is not supported",
        ),
        ({"hyperparam_mutations": {"lr": 3}}, TypeError, r"hyperparam_mutations\['lr'\] must be"),
        ({"hyperparam_mutations": {"a": {"b": "x"}}}, TypeError, r"\['a'\]\['b'\] must be"),
        ({"synch": 1}, TypeError, "synch must be True or False"),
        ({"mode": "maximum"}, ValueError, "mode must be 'min' or 'max'"),
        ({"resample_probability": 2}, ValueError, "resample_probability must be between"),
    ],
)
def test_bad_parameters_are_refused_naming_them(kwargs, error, message):
    args = {"metric": "s", "mode": "max", "hyperparam_mutations": {"lr": [1, 2]}, **kwargs}
    with pytest.raises(error, match=message):
        PopulationBasedTraining(**args)


def test_metric_and_mode_come_from_the_tune_config_unless_they_conflict():
    scheduler = PopulationBasedTraining(hyperparam_mutations={"lr": [1, 2]})
    assert scheduler.set_search_properties("acc", "max", config={"lr": 1})
    assert (scheduler.metric, scheduler.mode) == ("acc", "max")
    assert not scheduler.set_search_properties("loss", "min", config={"lr": 1})
    with pytest.raises(ValueError, match="needs a metric and a mode"):
        PopulationBasedTraining(hyperparam_mutations={"lr": [1]}).set_search_properties(
            None, None, config={}
        )
    with pytest.raises(ValueError, match="differs from TuneConfig"):
        tune.Tuner(
            lambda config: None,
            param_space={"lr": 1},
            tune_config=tune.TuneConfig(metric="loss", mode="min", scheduler=_pbt()),
        )


def test_mutations_are_checked_against_the_param_space_before_the_run():
    scheduler = _pbt(hyperparam_mutations={"opt": {"lr": [1, 2]}})
    with pytest.raises(ValueError, match=r"hyperparam_mutations\['opt'\] is a dict.*not a dict"):
        scheduler.set_search_properties("score", "max", config={"opt": "adam"})
    # a key the space lacks is sampled from its mutation (Ray Tune's documented behaviour); a
    # misspelt key does that too, so the user is told which, before any trial runs
    scheduler = _pbt(hyperparam_mutations={"lrr": [0.1, 0.2]})
    with pytest.warns(UserWarning, match="'lrr' is not in param_space"):
        scheduler.set_search_properties("score", "max", config={"lr": 1})
    run, views = _run_of("a")
    scheduler.on_trial_add(run, views["a"])
    assert views["a"].config["lrr"] in (0.1, 0.2)


def test_a_result_without_the_metric_fails_unless_require_attrs_is_off():
    run, views = _run_of("a")
    scheduler = _pbt()
    with pytest.raises(RuntimeError, match="without 'score'.*require_attrs=False"):
        scheduler.on_trial_result(run, views["a"], {"training_iteration": 1})
    lenient = _pbt(require_attrs=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for it in (1, 2):
            assert lenient.on_trial_result(run, views["a"], {"training_iteration": it}) == C
    assert len([w for w in caught if "without 'score'" in str(w.message)]) == 1


# ---- real runs ----


def pbt_counter(config):
    """Accumulates `lr` per step: a recipient resumes from its donor's total."""
    total, start = 0.0, 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as directory:
            with open(os.path.join(directory, "state.json")) as src:
                saved = json.load(src)
        total, start = saved["total"], saved["step"]
    for step in range(start + 1, 13):
        total += config["lr"]
        with tempfile.TemporaryDirectory() as directory:
            with open(os.path.join(directory, "state.json"), "w") as out:
                json.dump({"total": total, "step": step, "lr": config["lr"]}, out)
            tune.report(
                {"total": total, "lr": config["lr"]},
                checkpoint=tune.Checkpoint.from_directory(directory),
            )


def _lr_pbt() -> PopulationBasedTraining:
    """The real runs' PBT: every 3 iterations, half the population against the other half."""
    return PopulationBasedTraining(
        time_attr="training_iteration",
        perturbation_interval=3,
        hyperparam_mutations={"lr": [1.0, 2.0, 4.0, 8.0]},
        quantile_fraction=0.5,
    )


def _real_pbt(storage, name, trainable=pbt_counter, **tune_kw):
    scheduler = _lr_pbt()
    results = tune.Tuner(
        trainable,
        param_space={"lr": tune.grid_search([1.0, 2.0, 4.0, 8.0])},
        tune_config=tune.TuneConfig(
            scheduler=scheduler, metric="total", mode="max", max_concurrent_trials=2, **tune_kw
        ),
        run_config=tune.RunConfig(
            storage_path=storage,
            name=name,
            verbose=0,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        ),
    ).fit()
    return scheduler, results


@pytest.mark.smoke
def test_a_real_run_exploits_committed_checkpoints_with_num_to_keep_1(storage):
    scheduler, results = _real_pbt(storage, "pbt")
    assert results.num_errors == 0 and len(results) == 4
    experiment = results.experiment_path
    with open(os.path.join(experiment, "pbt_global.txt")) as src:
        exploits = [json.loads(line) for line in src]
    # each exploit carried out is logged; one decided at a trial's last result is not carried out
    assert 1 <= len(exploits) <= scheduler._num_perturbations
    for result in results:
        history = result.metrics_dataframe
        assert list(history["training_iteration"]) == list(range(1, 13))  # each once
        # every step added the lr it ran with to the total it resumed from: no lost state
        totals, lrs = list(history["total"]), list(history["lr"])
        for prev, now, lr in zip(totals, totals[1:], lrs[1:]):
            assert now == pytest.approx(prev + lr) or now > prev  # a jump: the donor's total
        assert result.metrics["lr"] in (1.0, 2.0, 4.0, 8.0)
    taken = [
        r
        for r in results
        if os.path.exists(os.path.join(experiment, f"pbt_policy_{r.metrics['trial_id']}.txt"))
    ]
    assert taken  # some trial took another's checkpoint, recorded where Ray Tune writes it
    for result in taken:
        starts = os.listdir(os.path.join(result.path, "results"))
        origins = []
        for name in starts:
            if "-start-" in name:
                with open(os.path.join(result.path, "results", name)) as src:
                    text = src.read()
                origins += [json.loads(text)["restored_from"]] if text else []
        assert origins  # its history says where it came from


def test_a_class_trainable_gets_the_donors_checkpoint_through_load_or_reset_config(storage):
    class Accumulate(tune.Trainable):
        def setup(self, config):
            self.lr, self.total = config["lr"], 0.0

        def step(self):
            self.total += self.lr
            return {"total": self.total, "lr": self.lr}

        def save_checkpoint(self, checkpoint_dir):
            return {"total": self.total}

        def load_checkpoint(self, checkpoint):
            self.total = checkpoint["total"]

        def reset_config(self, new_config):
            self.lr = new_config["lr"]
            return True

    scheduler = _lr_pbt()
    results = tune.Tuner(
        Accumulate,
        param_space={"lr": tune.grid_search([1.0, 2.0, 4.0, 8.0])},
        tune_config=tune.TuneConfig(
            scheduler=scheduler, metric="total", mode="max", max_concurrent_trials=2
        ),
        run_config=tune.RunConfig(
            storage_path=storage,
            verbose=0,
            stop={"training_iteration": 12},
            checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=3, num_to_keep=1),
        ),
    ).fit()
    assert results.num_errors == 0 and scheduler._num_perturbations >= 1
    for result in results:
        history = result.metrics_dataframe
        steps = list(history["training_iteration"])
        assert steps[0] == 1 and steps[-1] == 12
        # a recipient goes on from its donor's checkpoint (every 3 iterations), which may be
        # ahead of it when the donor ran meanwhile, as in Ray Tune; never back, never twice
        for a, b in zip(steps, steps[1:]):
            assert b == a + 1 or (b > a and a % 3 == 0 and (b - 1) % 3 == 0), steps
        # a recipient's total continues from its donor's: it never drops back to a restart
        assert all(b > a for a, b in zip(history["total"], history["total"][1:]))


def test_the_policy_of_an_exploited_trial_replays_its_config_schedule(storage):
    _, results = _real_pbt(storage, "pbt_source")
    experiment = results.experiment_path
    policies = [n for n in os.listdir(experiment) if n.startswith("pbt_policy_")]
    assert policies
    path = os.path.join(experiment, policies[0])
    replay = PopulationBasedTrainingReplay(path)
    with open(path) as src:
        lines = [json.loads(line) for line in src]
    assert replay.config == lines[0][4]  # the first config of the chain
    replayed = tune.Tuner(
        pbt_counter,
        tune_config=tune.TuneConfig(scheduler=replay),
        run_config=tune.RunConfig(storage_path=storage, name="replay", verbose=0),
    ).fit()
    assert replayed.num_errors == 0 and len(replayed) == 1
    history = replayed[0].metrics_dataframe
    assert list(history["training_iteration"]) == list(range(1, 13))
    lr_at = dict(zip(history["training_iteration"], history["lr"]))
    assert lr_at[1] == replay.config["lr"]
    for _, _, _, change_at, _, new_config in lines:
        if change_at < 12:
            assert lr_at[change_at + 1] == new_config["lr"]  # changed where the PBT run did


def test_replay_refuses_a_missing_or_damaged_file_and_a_second_trial(tmp_path, storage):
    with pytest.raises(ValueError, match="policy file not found: .*nope.txt"):
        PopulationBasedTrainingReplay(str(tmp_path / "nope.txt"))
    bad = tmp_path / "bad.txt"
    bad.write_text('["1", "0", 3, 3, {}, {}]\nnot json\n')
    with pytest.raises(ValueError, match=r"bad.txt, line 2: not a PBT policy line"):
        PopulationBasedTrainingReplay(str(bad))
    good = tmp_path / "good.txt"
    good.write_text('["1", "0", 3, 3, {"lr": 1.0}, {"lr": 2.0}]\n')
    results = tune.Tuner(
        pbt_counter,
        tune_config=tune.TuneConfig(
            scheduler=PopulationBasedTrainingReplay(str(good)), num_samples=2
        ),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    )
    with pytest.raises(Exception, match="replays one trial's schedule"):
        results.fit()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["pbt_function.py", "pbt_example.py"])
def test_ray_tunes_pbt_examples_run_with_rtune(tmp_path, name):
    """pbt_function.py in every run; pbt_example.py (it passes) by hand, with
    RTUNE_ALL_EXAMPLES=1, to keep `make test` within its time."""
    if name == "pbt_example.py" and not os.environ.get("RTUNE_ALL_EXAMPLES"):
        pytest.skip("RTUNE_ALL_EXAMPLES=1 runs it")
    run_ray_example(name, tmp_path)
    (experiment,) = os.listdir(tmp_path / "results")
    trials = [
        n
        for n in os.listdir(tmp_path / "results" / experiment)
        if n.startswith("PBT") or n.startswith("pbt_function_")
    ]
    assert len(trials) == 8  # num_samples=8 (whether any exploited depends on the noise)


def held_counter(config):
    """`pbt_counter` that logs each step it starts and, at the `hold_at`-th step started in
    the run, holds until the run is stopped: the test stops it at a known point."""
    total, start = 0.0, 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as directory:
            with open(os.path.join(directory, "state.json")) as src:
                saved = json.load(src)
        total, start = saved["total"], saved["step"]
    for step in range(start + 1, 13):
        with open(config["log"], "a") as out:
            out.write(f"{step}\n")
        with open(config["log"]) as src:
            started = len(src.read().split())
        if started == config["hold_at"]:
            hold_until_stopped(config["go"])
        total += config["lr"]
        with tempfile.TemporaryDirectory() as directory:
            with open(os.path.join(directory, "state.json"), "w") as out:
                json.dump({"total": total, "step": step}, out)
            tune.report(
                {"total": total, "lr": config["lr"]},
                checkpoint=tune.Checkpoint.from_directory(directory),
            )


def _pbt_outcome(results, experiment):
    """What a user compares: each trial's final config, last iteration and total, and the
    exploits in order (tags, iterations, configs' lr)."""
    finals = sorted(
        (r.metrics["lr"], r.metrics["training_iteration"], round(r.metrics["total"], 6))
        for r in results
    )
    with open(os.path.join(experiment, "pbt_global.txt")) as src:
        exploits = [json.loads(line) for line in src]
    return finals, [(a, b, i, j, old["lr"], new["lr"]) for a, b, i, j, old, new in exploits]


@pytest.mark.slow
def test_a_run_stopped_by_ctrl_c_and_restored_perturbs_as_the_uninterrupted_one(storage, tmp_path):
    def tuner(name, hold_at):
        scheduler = _lr_pbt()
        space = {
            "lr": tune.grid_search([1.0, 2.0, 4.0, 8.0]),
            "log": str(tmp_path / f"{name}.log"),
            "go": str(tmp_path / f"{name}.go"),
            "hold_at": hold_at,
        }
        return tune.Tuner(
            held_counter,
            param_space=space,
            tune_config=tune.TuneConfig(
                scheduler=scheduler, metric="total", mode="max", max_concurrent_trials=1
            ),
            run_config=tune.RunConfig(
                storage_path=storage,
                name=name,
                verbose=0,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            ),
        )

    whole = tuner("whole", 0).fit()
    expected = _pbt_outcome(whole, whole.experiment_path)
    assert expected[1]  # it exploited

    hold_at = 20  # a step of the third round of perturbations, with exploits behind it
    log = tmp_path / "cut.log"
    ctrl_c_when(lambda: log.exists() and len(log.read_text().split()) >= hold_at)
    stopped = tuner("cut", hold_at).fit()
    assert any(r.status != "TERMINATED" for r in stopped)  # it did stop partway
    (tmp_path / "cut.go").touch()
    restored = tune.Tuner.restore(os.path.join(storage, "cut")).fit()
    assert restored.num_errors == 0
    assert _pbt_outcome(restored, restored.experiment_path) == expected
    for result in restored:  # each iteration once in every history
        assert list(result.metrics_dataframe["training_iteration"]) == list(range(1, 13))
