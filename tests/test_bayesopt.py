"""`BayesOptSearch` on real bayesian-optimization 3.x: the space conversion (bayes_opt's typed
parameters for randint and choice), Ray's utility_kwargs as 3.x acquisition functions, its
suggestions and registrations fed directly (no Ray), a restore of its pickled state mid-search
that suggests exactly what the uninterrupted search would, duplicates and patience, a real run,
and Ray Tune's BayesOpt example after the import swap."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import os
from pathlib import Path

import cloudpickle
import pytest
from scheduler_helpers import ready, run_ray_example

import rtune as tune
from rtune.search.bayesopt import BayesOptSearch
from rtune.search.bayesopt.space import to_pbounds

bayes_opt = pytest.importorskip("bayes_opt")
acquisition = bayes_opt.acquisition


def test_a_nested_space_becomes_flat_pbounds_named_by_slash_joined_keys():
    space = {
        "lr": tune.uniform(0, 1),
        "model": {"depth": tune.randint(2, 5), "act": tune.choice(["relu", [1, 2], {"k": 3}])},
        "only": tune.choice(["this"]),  # bayes_opt needs two categories: a constant
        "epochs": 3,
        "tags": ["a"],
    }
    converted = to_pbounds(space)
    pbounds = converted.pbounds
    assert list(pbounds) == ["lr", "model/depth", "model/act"]
    assert pbounds["lr"] == (0.0, 1.0)
    assert pbounds["model/depth"] == (2, 4, int)  # randint's upper is exclusive, bayes_opt's not
    assert pbounds["model/act"].categories == [0, 1, 2]  # recorded by index: any value can be one
    assert converted.choices == {"model/act": ["relu", [1, 2], {"k": 3}]}
    assert converted.constants == {"only": "this", "epochs": 3, "tags": ["a"]}
    # bayes_opt's own bounds in the searcher's own space, as bayes_opt reads them
    own = to_pbounds({"x": (0, 2), "n": (1, 9, int), "k": ("a", "b")}).pbounds
    assert [type(p).__name__ for p in own.values()] == [
        "FloatParameter",
        "IntParameter",
        "CategoricalParameter",
    ]
    # a Tuner's param_space: a tuple is a constant there, as for every other searcher
    assert to_pbounds({"x": tune.uniform(0, 1), "t": (0, 2)}, bounds_allowed=False).constants == {
        "t": (0, 2)
    }


def test_suggestions_are_plain_python_values_within_the_bounds():
    space = {"x": tune.uniform(-1, 1), "m": {"n": tune.randint(2, 5)}, "c": tune.choice([[8], 16])}
    searcher = ready(BayesOptSearch(space, random_search_steps=100, random_state=3))
    configs = [searcher.suggest(f"t{i}") for i in range(40)]
    assert all(type(c["x"]) is float and -1 <= c["x"] <= 1 for c in configs)
    assert {c["m"]["n"] for c in configs} == {2, 3, 4} and all(
        type(c["m"]["n"]) is int for c in configs
    )
    assert {json.dumps(c["c"]) for c in configs} == {"[8]", "16"}
    lists = [c["c"] for c in configs if c["c"] == [8]]
    assert lists[0] is not lists[1]  # each trial gets its own copy of the choice


@pytest.mark.parametrize(
    "space, message",
    [
        ({"x": tune.grid_search([1, 2])}, r"grid_search \(param_space\['x'\]\)"),
        ({"a": {"f": tune.sample_from(lambda s: 1)}}, r"sample_from .*\['a'\]\['f'\]"),
        ({"n": tune.randn(0, 1)}, r"normal \(randn\) \(param_space\['n'\]\).*bounded range"),
        ({"lr": tune.loguniform(1e-4, 1e-1)}, r"log-uniform .*\['lr'\].*linear scale.*exponent"),
        ({"u": tune.lograndint(1, 100)}, r"log-uniform parameter \(param_space\['u'\]\)"),
        ({"q": tune.quniform(0, 1, 0.1)}, r"quantized parameter \(param_space\['q'\]\)"),
        ({"m": {"w": tune.qrandint(8, 64, 8)}}, r"quantized parameter \(param_space\['m'\]\['w'\]"),
        ({"l": [tune.uniform(0, 1)]}, r"inside a list \(param_space\['l'\]\)"),
        ({"c": tune.choice([tune.uniform(0, 1), 2])}, r"\['c'\] is a choice holding"),
        ({"a/b": tune.uniform(0, 1)}, r"the key 'a/b' .* holds '/'"),
        ({"k": (1,)}, r"param_space\['k'\] = \(1,\) is not a bayes_opt bound"),
        ({"epochs": 3}, "empty search space"),
    ],
)
def test_what_bayesopt_cannot_search_is_refused_naming_the_key(space, message):
    with pytest.raises(ValueError, match=message):
        BayesOptSearch(space)


def test_the_arguments_are_ray_tunes_in_its_order_with_its_defaults():
    """Read from the installed ray wheel's source (ast: nothing of ray.tune is imported)."""
    path = Path(importlib.util.find_spec("ray").origin).parent / "tune/search/bayesopt"
    tree = ast.parse((path / "bayesopt_search.py").read_text())
    cls = next(n for n in ast.walk(tree) if getattr(n, "name", None) == "BayesOptSearch")
    init = next(n for n in cls.body if getattr(n, "name", None) == "__init__")
    ray_args = [
        (a.arg, ast.literal_eval(d)) for a, d in zip(init.args.args[1:], init.args.defaults)
    ]
    ours = inspect.signature(BayesOptSearch).parameters.values()
    assert [(p.name, p.default) for p in ours] == ray_args


def test_a_metric_and_mode_are_required_and_a_space_in_both_places_is_refused():
    with pytest.raises(ValueError, match="BayesOptSearch needs a metric and a mode"):
        BayesOptSearch().set_search_properties(None, None, {"x": tune.uniform(0, 1)})
    own = BayesOptSearch({"x": tune.uniform(0, 1)})
    assert own.set_search_properties("s", "max", {"y": tune.uniform(0, 1)}) is False
    assert own.set_search_properties("s", "max", {"epochs": 3}) is True  # constants only: fine
    with pytest.raises(ValueError, match="random_search_steps must be an int >= 0"):
        BayesOptSearch(random_search_steps=-1)
    with pytest.raises(ValueError, match="patience must be an int >= 1"):
        BayesOptSearch(patience=0)


def test_utility_kwargs_become_bayes_opts_acquisition_functions():
    def acq(**kwargs):
        space = {"x": tune.uniform(0, 1)}
        return ready(BayesOptSearch(space, **kwargs)).optimizer.acquisition_function

    default = acq()  # Ray's default: ucb, kappa 2.576
    assert type(default) is acquisition.UpperConfidenceBound and default.kappa == 2.576
    example = acq(utility_kwargs={"kind": "ucb", "kappa": 2.5, "xi": 0.0})  # Ray's example
    assert type(example) is acquisition.UpperConfidenceBound and example.kappa == 2.5
    ei = acq(utility_kwargs={"kind": "ei", "xi": 0.1})
    assert type(ei) is acquisition.ExpectedImprovement and ei.xi == 0.1
    poi = acq(utility_kwargs={"kind": "poi"})
    assert type(poi) is acquisition.ProbabilityOfImprovement and poi.xi == 0.0
    decayed = acq(utility_kwargs={"kappa": 5.0, "kappa_decay": 0.9, "kappa_decay_delay": 3})
    assert (decayed.exploration_decay, decayed.exploration_decay_delay) == (0.9, 3)
    with pytest.raises(ValueError, match=r"kind must be one of 'ucb', 'ei', 'poi', got 'pi'"):
        BayesOptSearch(utility_kwargs={"kind": "pi"})
    with pytest.raises(ValueError, match=r"utility_kwargs has no key 'kapa'"):
        BayesOptSearch(utility_kwargs={"kind": "ucb", "kapa": 2.5})


def _search_loop(searcher, n, cut=None, score=lambda c: -((c["x"] - 0.3) ** 2)):
    """Suggest and complete n trials in turn; at `cut`, go on with a bare searcher restored from
    the pickled state (what a restore does)."""
    configs = []
    for i in range(n):
        if i == cut:
            state = cloudpickle.loads(cloudpickle.dumps(searcher.get_state()))
            searcher = BayesOptSearch()
            searcher.set_state(state)
        config = searcher.suggest(f"t{i}")
        configs.append(config)
        searcher.on_trial_complete(f"t{i}", {"score": score(config)})
    return configs, searcher


def test_a_restored_search_suggests_exactly_what_the_uninterrupted_one_would():
    def fresh():
        return ready(BayesOptSearch(random_search_steps=4, random_state=7), space)

    space = {"x": tune.uniform(0, 1), "epochs": 2}
    whole, searcher = _search_loop(fresh(), 14)
    assert all(c["epochs"] == 2 and type(c["x"]) is float for c in whole)
    assert len(searcher.optimizer.space) == 14
    for cut in (2, 9):  # within the random steps, and with the GP suggesting
        again, _ = _search_loop(fresh(), 14, cut=cut)
        assert again == whole, cut
    other = ready(BayesOptSearch(random_search_steps=4, random_state=8), space)
    assert _search_loop(other, 6)[0] != whole[:6]  # the seed made them equal


@pytest.mark.parametrize("mode, optimum", [("min", 0.3), ("max", 0.7)])
def test_bayes_opt_maximises_the_metric_or_its_negation(mode, optimum):
    sign = 1 if mode == "min" else -1

    def score(config):
        return sign * (config["x"] - optimum) ** 2

    searcher = BayesOptSearch(random_search_steps=3, random_state=1)
    ready(searcher, {"x": tune.uniform(0, 1)}, mode=mode)
    configs, searcher = _search_loop(searcher, 10, score=score)
    scores = [score(c) for c in configs]
    best = searcher.optimizer.max
    assert best["target"] == (-min(scores) if mode == "min" else max(scores))
    assert abs(best["params"]["x"] - optimum) < 0.05


def test_an_error_or_an_end_without_a_number_registers_nothing():
    searcher = ready(BayesOptSearch({"x": tune.uniform(0, 1)}), mode="min")
    for tid in "abcde":
        searcher.suggest(tid)
    searcher.on_trial_complete("a", {"score": 1.0}, error=True)
    searcher.on_trial_complete("b", {"other": 1.0})
    searcher.on_trial_complete("c", {"score": float("nan")})
    searcher.on_trial_complete("d", {"score": "high"})
    searcher.on_trial_complete("e", {"score": 0.5})
    searcher.on_trial_complete("e", {"score": 0.7})  # ended already: ignored
    assert [r["target"] for r in searcher.optimizer.res] == [-0.5]


def test_points_to_evaluate_come_first_and_a_repeated_point_is_skipped():
    space = {"x": tune.uniform(0, 1), "m": {"act": tune.choice(["relu", "tanh"])}, "epochs": 2}
    points = [
        {"x": 0.25, "m": {"act": "tanh"}},
        {"x": 0.25, "m": {"act": "tanh"}},  # the same again: skipped (None, ask later)
        {"x": 0.75, "m": {"act": "relu"}, "note": "mine"},
    ]
    searcher = ready(BayesOptSearch(space, points_to_evaluate=points), space=None)
    got = [searcher.suggest(t) for t in "abcd"]
    assert got[:3] == [{**points[0], "epochs": 2}, None, {**points[2], "epochs": 2}]
    assert got[3]["epochs"] == 2 and got[3] not in got[:3]
    searcher.on_trial_complete("a", {"score": 1.0})
    searcher.on_trial_complete("c", {"score": 2.0})
    assert [(r["params"], r["target"]) for r in searcher.optimizer.res] == [
        ({"x": 0.25, "m/act": 1}, 1.0),
        ({"x": 0.75, "m/act": 0}, 2.0),
    ]
    close = [{"x": 0.5, "m": {"act": "relu"}}, {"x": 0.500001, "m": {"act": "relu"}}]
    coarse = ready(BayesOptSearch(space, points_to_evaluate=close))
    assert [coarse.suggest("a") is None, coarse.suggest("b") is None] == [False, True]
    fine = ready(BayesOptSearch(space, points_to_evaluate=close, repeat_float_precision=6))
    assert fine.suggest("a")["x"] == 0.5 and fine.suggest("b")["x"] == 0.500001
    with pytest.raises(ValueError, match=r"point to evaluate has no value for param_space\['x'\]"):
        BayesOptSearch(space, points_to_evaluate=[{"m": {"act": "relu"}}])
    with pytest.raises(ValueError, match=r"\['m'\]\['act'\] = 'elu', which is not one of"):
        BayesOptSearch(space, points_to_evaluate=[{"x": 0.1, "m": {"act": "elu"}}])


def test_a_search_that_keeps_proposing_what_it_evaluated_ends_after_patience_repeats():
    searcher = ready(BayesOptSearch({"n": tune.randint(0, 3)}, random_state=0, patience=3))
    got = []
    for i in range(100):
        config = searcher.suggest(f"t{i}")
        got.append(config)
        if config == BayesOptSearch.FINISHED:
            break
        if config is not None:
            searcher.on_trial_complete(f"t{i}", {"score": config["n"]})
    configs = [c for c in got if isinstance(c, dict)]
    assert got[-1] == BayesOptSearch.FINISHED and None in got
    assert sorted(c["n"] for c in configs) == [0, 1, 2]  # each point of the space once
    assert searcher.suggest("later") == BayesOptSearch.FINISHED


def test_a_running_trials_point_waits_for_its_result_and_never_ends_the_search():
    searcher = ready(BayesOptSearch({"n": tune.randint(0, 2)}, random_state=0, patience=2))
    got = {f"t{i}": searcher.suggest(f"t{i}") for i in range(20)}
    live = {tid: c for tid, c in got.items() if c is not None}
    assert sorted(c["n"] for c in live.values()) == [0, 1]  # both running: the rest wait (None)
    for tid in live:
        searcher.on_trial_complete(tid, {"score": 1.0})
    ends = [searcher.suggest(f"u{i}") for i in range(20)]
    assert BayesOptSearch.FINISHED in ends  # now they are evaluated, repeats count


def test_points_evaluated_elsewhere_are_registered_with_the_metrics_sign():
    searcher = ready(BayesOptSearch({"x": tune.uniform(0, 1), "k": 1}), mode="min")
    searcher.add_evaluated_point({"x": 0.2, "k": 1}, 3.0)
    searcher.add_evaluated_point({"x": 0.4}, 1.0, error=True)
    searcher.add_evaluated_point({"x": 0.6}, 1.0, pruned=True)
    searcher.add_evaluated_point({"x": 0.2}, 4.0)  # evaluated already: the first value stands
    assert searcher.optimizer.res == [{"target": -3.0, "params": {"x": 0.2}}]
    with pytest.raises(RuntimeError, match="needs its space, metric and mode first"):
        BayesOptSearch().add_evaluated_point({"x": 0.2}, 1.0)


# ---- real runs ----


def quadratic(config):
    for step in range(1, config["epochs"] + 1):
        tune.report({"score": -((config["x"] - 0.3) ** 2) * step, "epoch": step})


def test_a_real_run_registers_every_trial_and_an_earlier_runs_results(storage):
    searcher = BayesOptSearch(random_state=5, random_search_steps=3)  # 3 from the GP
    grid = tune.Tuner(
        quadratic,
        param_space={"x": tune.uniform(0, 1), "epochs": 2},
        tune_config=tune.TuneConfig(
            search_alg=searcher, metric="score", mode="max", num_samples=6, max_concurrent_trials=2
        ),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    assert grid.num_terminated == 6 and all(r.config["epochs"] == 2 for r in grid)
    registered = searcher.optimizer.res
    assert len(registered) == 6
    by_x = {r.config["x"]: r.metrics["score"] for r in grid}
    assert {r["params"]["x"]: r["target"] for r in registered} == by_x  # the last result's
    # an earlier run's results, the optimizer's start (Ray's `analysis`)
    again = ready(BayesOptSearch(analysis=grid), {"x": tune.uniform(0, 1)})
    assert sorted(r["target"] for r in again.optimizer.res) == sorted(by_x.values())


@pytest.mark.slow
def test_ray_tunes_bayesopt_example_runs_with_rtune(tmp_path):
    """By hand, with RTUNE_ALL_EXAMPLES=1, to keep `make test` within its time: the tests above
    cover the utility_kwargs, ConcurrencyLimiter-free runs and constants it uses."""
    if not os.environ.get("RTUNE_ALL_EXAMPLES"):
        pytest.skip("RTUNE_ALL_EXAMPLES=1 runs it")
    run_ray_example("bayesopt_example.py", tmp_path)
