"""`OptunaSearch` on real Optuna: the space conversion, its asks and tells fed directly (no Ray),
a restore of its pickled state mid-study that suggests exactly what the uninterrupted study
would, real runs whose study holds every trial and intermediate value (in memory and in an
Optuna journal file), a Ctrl-C and restore that suggests the same configs in the same order, and
Ray Tune's own Optuna examples after the import swap."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import cloudpickle
import pytest
from driver_runs import Run, crash_loop
from scheduler_helpers import ready, run_ray_example

import rtune as tune
from rtune.search.optuna import OptunaSearch
from rtune.search.optuna.space import to_distributions

optuna = pytest.importorskip("optuna")
D = optuna.distributions
optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_rtune_primitives_become_optuna_distributions_nested_keys_joined_by_slash():
    space = {
        "lr": tune.loguniform(1e-4, 1e-1),
        "drop": tune.uniform(0.0, 0.5),
        "step": tune.quniform(0.0, 1.0, 0.25),
        "layers": tune.randint(1, 4),
        "width": tune.qrandint(8, 64, 8),
        "units": tune.lograndint(1, 100),
        "act": tune.choice(["relu", "tanh", None]),
        "model": {"depth": tune.randint(2, 5), "name": "mlp"},
        "epochs": 3,
    }
    dists, constants = to_distributions(space)
    assert dists == {
        "lr": D.FloatDistribution(1e-4, 1e-1, log=True),
        "drop": D.FloatDistribution(0.0, 0.5),
        "step": D.FloatDistribution(0.0, 1.0, step=0.25),
        "layers": D.IntDistribution(1, 3),  # randint's upper is exclusive, Optuna's inclusive
        "width": D.IntDistribution(8, 64, step=8),  # qrandint's upper is inclusive
        "units": D.IntDistribution(1, 99, log=True),
        "act": D.CategoricalDistribution(["relu", "tanh", None]),
        "model/depth": D.IntDistribution(2, 4),
    }
    assert constants == {"model": {"name": "mlp"}, "epochs": 3}


@pytest.mark.parametrize(
    "space, message",
    [
        ({"x": tune.grid_search([1, 2])}, r"cannot search a grid_search \(param_space\['x'\]\)"),
        ({"a": {"f": tune.sample_from(lambda s: 1)}}, r"sample_from function \(param_space\['a'\]"),
        ({"n": tune.randn(0, 1)}, r"normal distribution \(randn, param_space\['n'\]\)"),
        ({"c": tune.choice([[1], [2]])}, r"param_space\['c'\] holds list \[1\]"),
        ({"l": [tune.uniform(0, 1)]}, r"inside a list \(param_space\['l'\]\)"),
    ],
)
def test_what_optuna_cannot_sample_is_refused_naming_the_key(space, message):
    with pytest.raises(ValueError, match=message):
        OptunaSearch(space, metric="score", mode="max")


def test_a_metric_and_mode_are_required_before_the_study_starts():
    with pytest.raises(ValueError, match="OptunaSearch needs a metric and a mode"):
        OptunaSearch().set_search_properties(None, None, {"x": tune.uniform(0, 1)})
    with pytest.raises(ValueError, match="2 metrics and 1 modes"):
        OptunaSearch(metric=["a", "b"], mode=["max"])
    with pytest.raises(ValueError, match="empty search space"):
        OptunaSearch().set_search_properties("s", "max", {"epochs": 3})


def _study_loop(searcher, n, cut=None, score=lambda c: -((c["x"] - 0.3) ** 2)):
    """Ask and tell n trials in turn, each reporting 2 intermediate results; at `cut`, go on
    with a fresh searcher restored from the pickled state (what a restore does)."""
    configs = []
    for i in range(n):
        if i == cut:
            state = cloudpickle.loads(cloudpickle.dumps(searcher.get_state()))
            searcher = OptunaSearch({"x": tune.uniform(0, 1)}, metric="score", mode="max")
            searcher.set_state(state)
        tid = f"t{i}"
        config = searcher.suggest(tid)
        configs.append(config)
        for step in (1, 2):
            searcher.on_trial_result(
                tid, {"score": score(config) / step, "training_iteration": step}
            )
        searcher.on_trial_complete(tid, {"score": score(config)})
    return configs, searcher


def test_a_restored_study_suggests_exactly_what_the_uninterrupted_one_would():
    space = {"x": tune.uniform(0, 1), "epochs": 2}
    whole, searcher = _study_loop(ready(OptunaSearch(seed=7), space), 14)
    assert all(c["epochs"] == 2 for c in whole)  # the space's constants are in every config
    trials = searcher.study.trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 14
    assert all(sorted(t.intermediate_values) == [1, 2] for t in trials)
    for cut in (3, 11):  # before and after TPE's 10 start-up trials
        again, _ = _study_loop(ready(OptunaSearch(seed=7), space), 14, cut=cut)
        assert again == whole, cut


def test_an_error_fails_the_optuna_trial_and_an_end_without_the_metric_prunes_it():
    searcher = ready(OptunaSearch({"x": tune.uniform(0, 1)}, seed=1))
    for tid in "abc":
        searcher.suggest(tid)
    searcher.on_trial_complete("a", None, error=True)
    searcher.on_trial_complete("b", {"other": 1.0})
    searcher.on_trial_complete("c", {"score": 0.5})
    searcher.on_trial_complete("c", {"score": 0.5})  # told already: ignored
    state = optuna.trial.TrialState
    assert [t.state for t in searcher.study.trials] == [state.FAIL, state.PRUNED, state.COMPLETE]


def test_points_to_evaluate_come_first_and_evaluated_rewards_are_recorded():
    points = [{"x": 0.25, "m": {"d": 2}}, {"x": 0.75, "m": {"d": 3}}]
    space = {"x": tune.uniform(0, 1), "m": {"d": tune.randint(1, 5)}}
    first = ready(OptunaSearch(space, points_to_evaluate=points, seed=1))
    assert [first.suggest("a"), first.suggest("b")] == points
    told = ready(OptunaSearch(space, points_to_evaluate=points, evaluated_rewards=[1.0, 2.0]))
    assert [(t.params, t.value) for t in told.study.trials] == [
        ({"x": 0.25, "m/d": 2}, 1.0),
        ({"x": 0.75, "m/d": 3}, 2.0),
    ]
    with pytest.raises(ValueError, match="one reward per point"):
        OptunaSearch(space, points_to_evaluate=points, evaluated_rewards=[1.0])


def test_a_define_by_run_space_and_a_multi_objective_study():
    def space(trial):
        kind = trial.suggest_categorical("kind", ["a", "b"])
        if kind == "a":
            trial.suggest_float("a/lr", 1e-3, 1e-1, log=True)
        return {"epochs": 4}

    searcher = ready(OptunaSearch(space, metric=["loss", "acc"], mode=["min", "max"], seed=3))
    config = searcher.suggest("t")
    assert config["epochs"] == 4 and config["kind"] in ("a", "b")
    assert ("a" in config) == (config["kind"] == "a")
    searcher.on_trial_result("t", {"loss": 1.0, "acc": 0.1, "training_iteration": 1})
    searcher.on_trial_complete("t", {"loss": 0.5, "acc": 0.9})
    (trial,) = searcher.study.trials
    assert trial.values == [0.5, 0.9]
    assert [d.name for d in searcher.study.directions] == ["MINIMIZE", "MAXIMIZE"]


def test_a_restore_fails_the_asks_its_experiment_lost_in_a_shared_study(tmp_path):
    def journal():
        path = str(tmp_path / "shared.log")
        return optuna.storages.journal.JournalStorage(
            optuna.storages.journal.JournalFileBackend(path)
        )

    searcher = ready(OptunaSearch({"x": tune.uniform(0, 1)}, study_name="s", storage=journal()))
    searcher.suggest("exp1_00000")
    written = cloudpickle.dumps(searcher.get_state())  # the experiment's last state write
    searcher.suggest("exp1_00001")  # asked, then the driver was killed: lost
    other = optuna.load_study(study_name="s", storage=journal()).ask()  # someone else's trial
    restored = OptunaSearch({"x": tune.uniform(0, 1)}, metric="score", mode="max")
    restored.set_state(cloudpickle.loads(written))
    states = {
        t.number: t.state.name for t in optuna.load_study(study_name="s", storage=journal()).trials
    }
    assert states == {0: "RUNNING", 1: "FAIL", other.number: "RUNNING"}


# ---- real runs ----


def quadratic(config):
    for step in range(1, config["epochs"] + 1):
        tune.report({"score": -((config["x"] - 0.3) ** 2) * (3 - step), "epoch": step})


def test_a_real_run_leaves_the_whole_study_in_the_users_searcher(storage):
    searcher = OptunaSearch(seed=5)
    grid = tune.Tuner(
        quadratic,
        param_space={"x": tune.uniform(0, 1), "epochs": 2},
        tune_config=tune.TuneConfig(
            search_alg=searcher, metric="score", mode="max", num_samples=6, max_concurrent_trials=2
        ),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    assert grid.num_terminated == 6 and all(r.config["epochs"] == 2 for r in grid)
    trials = searcher.study.trials
    assert len(trials) == 6 and all(t.state.name == "COMPLETE" for t in trials)
    assert all(sorted(t.intermediate_values) == [1, 2] for t in trials)
    assert sorted(t.params["x"] for t in trials) == sorted(r.config["x"] for r in grid)
    # an earlier run's trials, told to a new study (Searcher.add_evaluated_trials)
    fresh = ready(OptunaSearch({"x": tune.uniform(0, 1)}))
    fresh.add_evaluated_trials(grid, "score")
    told = fresh.study.trials
    assert sorted(t.params["x"] for t in told) == sorted(r.config["x"] for r in grid)
    assert all(t.state.name == "COMPLETE" and sorted(t.intermediate_values) == [1, 2] for t in told)


def test_a_study_in_an_optuna_journal_file_is_yours_after_the_run(storage, tmp_path):
    journal = str(tmp_path / "study.log")
    backend = optuna.storages.journal.JournalFileBackend(journal)
    searcher = OptunaSearch(
        {"x": tune.uniform(0, 1)},
        study_name="mine",
        storage=optuna.storages.journal.JournalStorage(backend),
        seed=2,
    )
    tune.Tuner(
        quadratic,
        param_space={"epochs": 2},
        tune_config=tune.TuneConfig(search_alg=searcher, metric="score", mode="max", num_samples=4),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    reopened = optuna.load_study(
        study_name="mine",
        storage=optuna.storages.journal.JournalStorage(
            optuna.storages.journal.JournalFileBackend(journal)
        ),
    )
    assert [t.state.name for t in reopened.trials] == ["COMPLETE"] * 4
    assert all(sorted(t.intermediate_values) == [1, 2] for t in reopened.trials)


EXAMPLES = [
    "optuna_example.py",
    "optuna_define_by_run_example.py",
    "optuna_multiobjective_example.py",
]


@pytest.mark.slow
@pytest.mark.parametrize("name", EXAMPLES)
def test_ray_tunes_optuna_examples_run_with_rtune(tmp_path, name):
    """By hand, with RTUNE_ALL_EXAMPLES=1 (they pass; 18-58 s of smoke test each here), to keep
    `make test` within its time: the tests above cover what they use, faster."""
    if not os.environ.get("RTUNE_ALL_EXAMPLES"):
        pytest.skip("RTUNE_ALL_EXAMPLES=1 runs it (it passes: 18-58 s)")
    run_ray_example(name, tmp_path)


SEARCHED = Path(__file__).parent / "drivers" / "searched.py"
CRASH_TRIALS, CRASH_STEPS = 10, 3


def _outcome(run: Run) -> dict | None:
    for line in run.stdout().splitlines():
        if line.startswith("OUTCOME "):
            return json.loads(line[len("OUTCOME ") :])
    return None


def _finished(run: Run) -> bool:
    found = _outcome(run)
    return found is not None and all(t[0] in ("TERMINATED", "ERROR") for t in found["trials"])


@pytest.mark.slow
def test_a_crash_loop_of_kill_9s_and_signals_loses_no_suggestion_and_repeats_none(tmp_path):
    """Seeded kill -9s and stop signals, each followed by a restore in a new driver: the run ends
    with exactly num_samples trials, each config once, and the study holds each as COMPLETE."""
    seed = int(os.environ.get("RTUNE_CRASH_SEED", "2026"))
    storage, steps = tmp_path / "results", tmp_path / "steps.log"

    def launch(cycle: int) -> Run:
        (tmp_path / "ray_session").unlink(missing_ok=True)
        command = [sys.executable, str(SEARCHED), str(storage), str(tmp_path)]
        command += ["--trials", str(CRASH_TRIALS), "--steps", str(CRASH_STEPS)]
        if (storage / "searched" / "tuner.pkl").exists():
            command.append("--restore")
        return Run(command, tmp_path / f"c{cycle}.out", tmp_path / f"c{cycle}.err", tmp_path)

    def started() -> int:
        return len(steps.read_text().split()) if steps.exists() else 0

    final, done = crash_loop(launch, started, _finished, seed, 2, max_delay_s=2.0)
    print(f"Optuna crash loop, seed {seed}: {done}")
    assert done, "the run finished before any interruption: nothing was tested"
    found = _outcome(final)
    trials = found["trials"]
    assert len(trials) == CRASH_TRIALS, (seed, done)
    assert all(t[:2] == ["TERMINATED", CRASH_STEPS] for t in trials), (seed, done, trials)
    configs = [tuple(t[2:]) for t in trials]
    assert len(set(configs)) == CRASH_TRIALS, (seed, done)  # no suggestion ran twice
    complete = [tuple(s[1:]) for s in found["study"] if s[0] == "COMPLETE"]
    # every config suggested was finished (or resumed, then finished), none lost or told twice
    assert sorted(complete) == sorted(configs), (seed, done, found["study"])
