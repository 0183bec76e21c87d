"""`HyperOptSearch` on real HyperOpt: the space conversion (sampled by HyperOpt itself), TPE's
suggestions and losses fed directly (no Ray), a restore of its pickled state mid-search that
suggests exactly what the uninterrupted search would, points to evaluate in a conditional space,
a real run, and Ray Tune's conditional-space example after the import swap."""

from __future__ import annotations

import os

import cloudpickle
import pytest
from scheduler_helpers import ready, run_ray_example

import rtune as tune
from rtune.search.hyperopt import HyperOptSearch
from rtune.search.hyperopt.space import to_hyperopt

hyperopt = pytest.importorskip("hyperopt")
hp = hyperopt.hp


def test_rtune_primitives_sample_within_their_bounds_through_hyperopt():
    space = {
        "lr": tune.loguniform(1e-4, 1e-1),
        "q": tune.quniform(0.1, 1.0, 0.25),
        "net": {"width": tune.randint(2, 5), "depth": tune.qrandint(2, 8, 3)},
        "units": tune.lograndint(1, 100),
        "layers": tune.choice([[64, 64], [128]]),
        "noise": tune.randn(0.0, 1.0),
        "epochs": 3,
        "tags": ["a", "b"],
    }
    sampled, constants = to_hyperopt(space)
    assert constants == {"epochs": 3, "tags": ["a", "b"]}
    labels = set(hyperopt.Domain(lambda s: s, sampled).params)
    assert labels == {"lr", "q", "net/width", "net/depth", "units", "layers", "noise"}
    searcher = ready(HyperOptSearch(random_state_seed=0, n_initial_points=100), space)
    configs = [searcher.suggest(f"t{i}") for i in range(120)]
    assert all(1e-4 <= c["lr"] <= 1e-1 for c in configs)
    assert {c["q"] for c in configs} <= {0.25, 0.5, 0.75, 1.0}
    assert {c["net"]["width"] for c in configs} == {2, 3, 4}  # upper exclusive, as randint
    assert {c["net"]["depth"] for c in configs} == {3, 6}  # multiples of 3, upper inclusive
    assert all(1 <= c["units"] <= 99 and isinstance(c["units"], int) for c in configs)
    assert {tuple(c["layers"]) for c in configs} == {(64, 64), (128,)}
    assert all(type(c["layers"]) is list for c in configs)  # HyperOpt would give tuples
    assert all(c["epochs"] == 3 and c["tags"] == ["a", "b"] for c in configs)
    assert all(type(c["lr"]) is float for c in configs)  # not numpy scalars


@pytest.mark.parametrize(
    "space, message",
    [
        ({"a": tune.grid_search([1, 2])}, r"grid_search \(param_space\['a'\]\)"),
        ({"m": {"f": tune.sample_from(lambda s: 1)}}, r"sample_from.*\['m'\]\['f'\]"),
        ({"l": [tune.uniform(0, 1)]}, r"inside a list \(param_space\['l'\]\)"),
        ({"c": tune.choice([tune.uniform(0, 1), 2])}, r"\['c'\] is a choice holding"),
        ({"epochs": 3}, "empty search space"),
    ],
)
def test_what_hyperopt_cannot_sample_is_refused_naming_the_key(space, message):
    with pytest.raises(ValueError, match=message):
        HyperOptSearch(space)


def test_a_metric_and_mode_are_required_and_bad_arguments_are_named():
    with pytest.raises(ValueError, match="needs a metric and a mode"):
        HyperOptSearch().set_search_properties(None, None, {"x": tune.uniform(0, 1)})
    with pytest.raises(ValueError, match="gamma must be in"):
        HyperOptSearch(gamma=1.5)
    with pytest.raises(ValueError, match="n_initial_points"):
        HyperOptSearch(n_initial_points=-1)
    with pytest.raises(TypeError, match="space must be a dict"):
        HyperOptSearch(hp.uniform("x", 0, 1))
    with pytest.raises(ValueError, match="the label"):
        searcher = HyperOptSearch({"x": tune.uniform(0, 1), "y": hp.uniform("x", 0, 1)}, "s", "max")
        searcher.suggest("t")


def _search_loop(searcher, n, cut=None):
    """Suggest and complete n trials in turn; at `cut`, go on with a fresh searcher restored
    from the pickled state (what a restore does)."""
    configs = []
    for i in range(n):
        if i == cut:
            state = cloudpickle.loads(cloudpickle.dumps(searcher.get_state()))
            searcher = HyperOptSearch({"x": tune.uniform(0, 1)}, metric="score", mode="max")
            searcher.set_state(state)
        config = searcher.suggest(f"t{i}")
        configs.append(config)
        searcher.on_trial_complete(f"t{i}", {"score": -((config["x"] - 0.3) ** 2)})
    return configs, searcher


def test_a_restored_search_suggests_exactly_what_the_uninterrupted_one_would():
    def fresh():
        return ready(HyperOptSearch(n_initial_points=5, random_state_seed=7), space)

    space = {"x": tune.uniform(0, 1), "epochs": 2}
    whole, searcher = _search_loop(fresh(), 30)
    assert all(c["epochs"] == 2 for c in whole)
    assert searcher.trials.losses() == [(c["x"] - 0.3) ** 2 for c in whole]  # max: negated
    # TPE has learnt: its last 15 samples are nearer the optimum than uniform ones (0.29 apart)
    assert sum(abs(c["x"] - 0.3) for c in whole[15:]) / 15 < 0.22
    for cut in (3, 11):  # before and after the random start-up trials
        again, _ = _search_loop(fresh(), 30, cut=cut)
        assert again == whole, cut
    seeded = HyperOptSearch(n_initial_points=5, random_state_seed=8)
    assert _search_loop(ready(seeded, space), 30)[0] != whole  # the seed made them equal


def test_an_error_and_an_end_without_the_metric_teach_tpe_nothing():
    searcher = ready(HyperOptSearch({"x": tune.uniform(0, 1)}, random_state_seed=1), mode="min")
    for tid in "abcd":
        searcher.suggest(tid)
    searcher.on_trial_complete("a", None, error=True)
    searcher.on_trial_complete("b", {"other": 1.0})
    searcher.on_trial_complete("c", {"score": float("nan")})
    searcher.on_trial_complete("d", {"score": 0.5})
    searcher.on_trial_complete("d", {"score": 0.7})  # ended already: ignored
    docs = searcher.trials.trials  # HyperOpt leaves errored trials out of its view
    assert [d["tid"] for d in docs] == [1, 2, 3]
    assert [d["state"] for d in docs] == [hyperopt.JOB_STATE_DONE] * 3
    assert [d["result"]["status"] for d in docs] == ["fail", "fail", "ok"]
    assert searcher.trials.losses()[2] == 0.5  # min: the metric itself


def test_points_to_evaluate_come_first_in_a_conditional_space():
    space = {
        "activation": hp.choice(
            "activation",
            [{"activation": "relu", "mult": hp.uniform("mult", 1, 2)}, {"activation": "tanh"}],
        ),
        "width": hp.uniform("width", 0, 20),
        "steps": 100,
    }
    points = [
        {"activation": {"activation": "tanh"}, "width": 3.0},
        {"activation": {"activation": "relu", "mult": 1.5}, "width": 7.0},
    ]
    searcher = HyperOptSearch(space, "loss", "min", points_to_evaluate=points, random_state_seed=2)
    assert [searcher.suggest("a"), searcher.suggest("b")] == [{**p, "steps": 100} for p in points]
    vals = [d["misc"]["vals"] for d in searcher.trials.trials]
    assert vals == [  # as HyperOpt records a conditional space: the unchosen branch is empty
        {"activation": [1], "mult": [], "width": [3.0]},
        {"activation": [0], "mult": [1.5], "width": [7.0]},
    ]
    later = searcher.suggest("c")
    assert later["steps"] == 100 and ("mult" in later["activation"]) == (
        later["activation"]["activation"] == "relu"
    )
    with pytest.raises(ValueError, match=r"param_space\['activation'\] = .*none of the choice"):
        HyperOptSearch(
            space, points_to_evaluate=[{"activation": {"activation": "elu"}, "width": 1}]
        )
    with pytest.raises(ValueError, match=r"no value for param_space\['width'\]"):
        HyperOptSearch(space, points_to_evaluate=[{"activation": {"activation": "tanh"}}])


# ---- real runs ----


def quadratic(config):
    for step in range(1, config["epochs"] + 1):
        tune.report({"score": -((config["x"] - 0.3) ** 2) * (3 - step), "epoch": step})


def test_a_real_run_records_every_trial_and_takes_an_earlier_runs_results(storage):
    searcher = HyperOptSearch(random_state_seed=5, n_initial_points=3)
    grid = tune.Tuner(
        quadratic,
        param_space={"x": tune.uniform(0, 1), "epochs": 2},
        tune_config=tune.TuneConfig(
            search_alg=searcher, metric="score", mode="max", num_samples=6, max_concurrent_trials=2
        ),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    assert grid.num_terminated == 6 and all(r.config["epochs"] == 2 for r in grid)
    docs = searcher.trials.trials
    assert len(docs) == 6 and all(d["result"]["status"] == "ok" for d in docs)
    assert sorted(searcher.trials.losses()) == sorted(-r.metrics["score"] for r in grid)
    # an earlier run's trials, told to a new searcher (Searcher.add_evaluated_trials)
    fresh = ready(HyperOptSearch({"x": tune.uniform(0, 1)}))
    fresh.add_evaluated_trials(grid, "score")
    assert sorted(fresh.trials.losses()) == sorted(searcher.trials.losses())


@pytest.mark.slow
def test_ray_tunes_hyperopt_example_runs_with_rtune(tmp_path):
    """By hand, with RTUNE_ALL_EXAMPLES=1, to keep `make test` within its time: the tests above
    cover the conditional space, ConcurrencyLimiter and ASHA it uses."""
    if not os.environ.get("RTUNE_ALL_EXAMPLES"):
        pytest.skip("RTUNE_ALL_EXAMPLES=1 runs it")
    run_ray_example("hyperopt_conditional_search_space_example.py", tmp_path)
