"""Search-space primitives and BasicVariantGenerator, as a user writing a param space relies on."""

from __future__ import annotations

import math
import pickle
import random

import cloudpickle
import pytest

from rtune.search import (
    BasicVariantGenerator,
    Categorical,
    Float,
    Function,
    Integer,
    Searcher,
    choice,
    grid_search,
    lograndint,
    loguniform,
    qlograndint,
    qloguniform,
    qrandint,
    qrandn,
    quniform,
    randint,
    randn,
    sample_from,
    uniform,
)


def draw(domain, n: int = 1000, seed: int = 0) -> list:
    rng = random.Random(seed)
    return [domain.sample(rng) for _ in range(n)]


def run_all(gen: BasicVariantGenerator, prefix: str = "t") -> list[dict]:
    configs = []
    while True:
        config = gen.suggest(f"{prefix}{len(configs)}")
        if config == Searcher.FINISHED:
            return configs
        configs.append(config)


def is_multiple(value: float, q: float) -> bool:
    return math.isclose(value / q, round(value / q), abs_tol=1e-9)


# --- domains ---


def test_uniform_stays_in_half_open_range():
    values = draw(uniform(2, 3))
    assert all(2 <= v < 3 for v in values)
    assert len(set(values)) > 900


def test_quniform_gives_multiples_of_q_within_bounds():
    values = draw(quniform(0.3, 0.9, 0.1))
    assert all(0.3 <= v <= 0.9 and is_multiple(v, 0.1) for v in values)
    assert {0.3, 0.9} <= set(values)  # exact decimals, both bounds reachable


def test_loguniform_covers_decades():
    values = draw(loguniform(1e-4, 1e-1))
    assert all(1e-4 <= v < 1e-1 for v in values)
    assert any(v < 1e-3 for v in values) and any(v > 1e-2 for v in values)


def test_qloguniform_multiples_in_range():
    values = draw(qloguniform(1, 1000, 5))
    assert all(5 <= v <= 1000 and is_multiple(v, 5) for v in values)


def test_randint_upper_is_exclusive():
    values = draw(randint(0, 3))
    assert set(values) == {0, 1, 2}
    assert all(isinstance(v, int) for v in values)


def test_qrandint_upper_is_inclusive_and_quantized():
    values = draw(qrandint(0, 10, 5))
    assert set(values) == {0, 5, 10}
    assert set(draw(qrandint(1, 3))) == {1, 2, 3}


def test_lograndint_upper_exclusive():
    values = draw(lograndint(1, 10))
    assert set(values) <= set(range(1, 10)) and 1 in values and 9 in values


def test_qlograndint_quantized_and_upper_inclusive():
    values = draw(qlograndint(10, 100, 10), n=3000)
    assert set(values) <= set(range(10, 101, 10)) and 100 in values


def test_randn_and_qrandn():
    values = draw(randn(5.0, 2.0), n=5000)
    assert abs(sum(values) / len(values) - 5.0) < 0.2
    assert all(is_multiple(v, 0.5) for v in draw(qrandn(0, 1, 0.5)))


def test_choice_returns_independent_copies():
    domain = choice([[1], [2]])
    a, b = draw(domain, n=2)
    assert a in ([1], [2])
    a.append(99)
    assert domain.categories == ([1], [2])


def test_constructors_return_domain_classes():
    assert isinstance(uniform(0, 1), Float) and isinstance(randn(), Float)
    assert isinstance(randint(0, 2), Integer) and isinstance(choice([1]), Categorical)
    assert isinstance(sample_from(lambda spec: 1), Function)
    assert grid_search((1, 2)) == {"grid_search": [1, 2]}


def test_domains_pickle():
    domain = pickle.loads(pickle.dumps(qloguniform(1, 100, 2, base=2)))
    assert domain == qloguniform(1, 100, 2, base=2)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: uniform(5, 1), ValueError, r"uniform\(lower=5, upper=1\): lower must be less"),
        (
            lambda: uniform("a", 1),
            TypeError,
            r"uniform\(lower='a', upper=1\): lower must be a real",
        ),
        (lambda: uniform(True, 2), TypeError, "lower must be a real number, got bool"),
        (lambda: uniform(0, math.inf), ValueError, "upper must be finite"),
        (lambda: quniform(0, 1, 0), ValueError, r"quniform\(.*q=0\): q must be greater than 0"),
        (lambda: quniform(0.1, 0.2, 1), ValueError, "no multiple of q"),
        (
            lambda: loguniform(0, 1),
            ValueError,
            r"loguniform\(lower=0.*lower must be greater than 0",
        ),
        (lambda: loguniform(1, 10, base=1), ValueError, "base must be greater than 0 and not 1"),
        (lambda: qloguniform(1, 10, -1), ValueError, "q must be greater than 0"),
        (lambda: randint(3, 3), ValueError, r"randint\(lower=3, upper=3\): lower must be less"),
        (lambda: randint(0.5, 3), ValueError, "lower must be an integer, got 0.5"),
        (lambda: randint(0, "9"), TypeError, "upper must be an integer, got str"),
        (lambda: qrandint(0, 10, 0), ValueError, "q must be greater than 0"),
        (lambda: qrandint(1, 2, 5), ValueError, "no multiple of q"),
        (lambda: lograndint(0, 10), ValueError, "lower must be greater than 0"),
        (lambda: qlograndint(1, 10, 2.5), ValueError, "q must be an integer, got 2.5"),
        (lambda: randn(0, 0), ValueError, r"randn\(mean=0, sd=0\): sd must be greater than 0"),
        (lambda: qrandn(0, 1, 0), ValueError, "q must be greater than 0"),
        (lambda: choice([]), ValueError, r"choice\(categories=\[\]\): .*non-empty"),
        (lambda: choice("abc"), ValueError, "categories must be a non-empty list"),
        (lambda: sample_from(3), TypeError, r"sample_from\(func=3\): func must be callable"),
        (lambda: grid_search([]), ValueError, "values must be a non-empty list"),
        (lambda: grid_search(5), ValueError, r"grid_search\(values=5\)"),
    ],
)
def test_constructor_validation(make, error, match):
    with pytest.raises(error, match=match):
        make()


# --- BasicVariantGenerator ---


def test_grid_times_samples_count_and_order():
    space = {"a": grid_search([1, 2]), "b": grid_search([3, 4]), "c": uniform(0, 1)}
    gen = BasicVariantGenerator(param_space=space, num_samples=2, seed=1)
    configs = run_all(gen)
    assert gen.total_trials == 8 and len(configs) == 8
    pairs = [(c["a"], c["b"]) for c in configs]
    assert pairs == [(1, 3), (2, 3), (1, 4), (2, 4)] * 2
    assert len({c["c"] for c in configs}) == 8  # sampled fresh per trial
    assert gen.suggest("again") == Searcher.FINISHED


def test_no_variables_gives_num_samples_copies():
    gen = BasicVariantGenerator(param_space={"x": 1}, num_samples=3)
    assert run_all(gen) == [{"x": 1}] * 3


def test_same_seed_same_configs_and_different_seed_differs():
    space = {"lr": loguniform(1e-4, 1e-1), "bs": choice([16, 32, 64]), "g": grid_search([0, 1])}
    first = run_all(BasicVariantGenerator(param_space=space, num_samples=5, seed=7))
    assert first == run_all(BasicVariantGenerator(param_space=space, num_samples=5, seed=7))
    assert first != run_all(BasicVariantGenerator(param_space=space, num_samples=5, seed=8))
    assert run_all(BasicVariantGenerator(param_space=space, num_samples=5)) != run_all(
        BasicVariantGenerator(param_space=space, num_samples=5)
    )


def test_ray_tunes_arguments_random_state_and_constant_grid_search():
    import numpy as np

    space = {"lr": loguniform(1e-4, 1e-1), "g": grid_search([0, 1, 2])}

    def lrs(**kw):
        return [
            c["lr"] for c in run_all(BasicVariantGenerator(num_samples=2, param_space=space, **kw))
        ]

    assert lrs(random_state=3) == lrs(random_state=3) == lrs(seed=3)
    assert lrs(random_state=np.random.default_rng(1)) == lrs(random_state=np.random.default_rng(1))
    assert lrs(random_state=np.random.RandomState(1)) == lrs(random_state=np.random.RandomState(1))
    np.random.seed(5)  # None: numpy's global generator, as in Ray Tune
    first = lrs()
    np.random.seed(5)
    assert lrs() == first
    per_combination = lrs(random_state=3)
    assert len(set(per_combination)) == 6  # each grid combination samples anew (the default)
    shared = lrs(random_state=3, constant_grid_search=True)
    assert shared[:3] == [shared[0]] * 3 and shared[3:] == [shared[3]] * 3 != shared[:3]
    configs = run_all(
        BasicVariantGenerator(
            [{"lr": 0.5}],
            0,
            True,
            3,
            param_space=space,
            num_samples=2,  # Ray's positional order
        )
    )
    assert [c["lr"] for c in configs[:3]] == [0.5] * 3 and [c["g"] for c in configs] == [
        0,
        1,
        2,
    ] * 2
    with pytest.raises(ValueError, match="seed or random_state"):
        BasicVariantGenerator(seed=1, random_state=2)
    with pytest.raises(TypeError, match="random_state must be"):
        BasicVariantGenerator(random_state="x")


def test_nested_dicts_and_lists():
    space = {
        "model": {"lr": grid_search([0.1, 0.2]), "layers": [randint(1, 4), {"w": uniform(0, 1)}]},
        "name": "fixed",
        "opts": [1, [2, 3]],
    }
    configs = run_all(BasicVariantGenerator(param_space=space, seed=0))
    assert [c["model"]["lr"] for c in configs] == [0.1, 0.2]
    for config in configs:
        layers = config["model"]["layers"]
        assert layers[0] in (1, 2, 3) and 0 <= layers[1]["w"] < 1
        assert config["name"] == "fixed" and config["opts"] == [1, [2, 3]]


def test_plain_values_are_deep_copied():
    shared = {"inner": [1, 2]}
    space = {"plain": shared}
    gen = BasicVariantGenerator(param_space=space, num_samples=2)
    first, second = run_all(gen)
    first["plain"]["inner"].append(3)
    assert second["plain"]["inner"] == [1, 2] and shared["inner"] == [1, 2]


def test_sample_from_sees_resolved_config():
    space = {
        "a": grid_search([1, 2]),
        "double": sample_from(lambda spec: spec.config.a * 2),
        "nested": {"b": uniform(0, 1)},
        "via_item": sample_from(lambda spec: spec["config"]["nested"]["b"] + 10),
        "chain": sample_from(lambda spec: spec.config.double + 1),
        "no_args": sample_from(lambda: "constant"),
    }
    for config in run_all(BasicVariantGenerator(param_space=space, seed=3)):
        assert config["double"] == config["a"] * 2
        assert config["via_item"] == config["nested"]["b"] + 10
        assert config["chain"] == config["double"] + 1
        assert config["no_args"] == "constant"


def test_circular_sample_from_is_reported():
    space = {"x": sample_from(lambda s: s.config.y), "y": sample_from(lambda s: s.config.x)}
    with pytest.raises(ValueError, match=r"param_space\['x'\].*never resolved"):
        BasicVariantGenerator(param_space=space).suggest("t0")


def test_points_to_evaluate_come_first_and_replace_samples():
    space = {"a": grid_search([1, 2]), "b": randint(0, 3), "n": {"c": 5, "d": uniform(0, 1)}}
    points = [{"a": 2, "b": 7}, {"n": {"d": 0.5}}]
    gen = BasicVariantGenerator(param_space=space, num_samples=3, seed=0, points_to_evaluate=points)
    configs = run_all(gen)
    # Point 1 sets every grid key: one trial. Point 2 leaves "a" open: two trials.
    # The one remaining sample gives two more (Ray Tune's semantics).
    assert gen.total_trials == len(configs) == 5
    assert configs[0]["a"] == 2 and configs[0]["b"] == 7 and 0 <= configs[0]["n"]["d"] < 1
    assert [c["a"] for c in configs[1:3]] == [1, 2]
    assert all(c["n"] == {"c": 5, "d": 0.5} for c in configs[1:3])
    assert [c["a"] for c in configs[3:]] == [1, 2]


@pytest.mark.parametrize("done", [0, 1, 3, 7, 8])
def test_state_round_trip_gives_exactly_the_remaining_trials(done):
    space = {
        "a": grid_search([1, 2]),
        "lr": loguniform(1e-4, 1e-1),
        "m": {"k": choice(["x", "y", "z"]), "s": sample_from(lambda spec: spec.config.a + 0.5)},
    }
    uninterrupted = run_all(BasicVariantGenerator(param_space=space, num_samples=4, seed=11))

    gen = BasicVariantGenerator(param_space=space, num_samples=4, seed=11)
    before = [gen.suggest(f"t{i}") for i in range(done)]
    state = pickle.loads(cloudpickle.dumps(gen.get_state()))

    restored = BasicVariantGenerator(param_space=space, num_samples=4, seed=999)
    restored.set_state(state)
    assert before + run_all(restored) == uninterrupted


def test_state_restores_into_a_bare_generator():
    gen = BasicVariantGenerator(param_space={"x": uniform(0, 1)}, num_samples=3, seed=5)
    expected = run_all(
        BasicVariantGenerator(param_space={"x": uniform(0, 1)}, num_samples=3, seed=5)
    )
    first = gen.suggest("t0")
    bare = BasicVariantGenerator()
    bare.set_state(pickle.loads(cloudpickle.dumps(gen.get_state())))
    assert [first, *run_all(bare)] == expected and bare.total_trials == 3


def test_unseeded_generator_state_round_trip():
    space = {"x": uniform(0, 1)}
    gen = BasicVariantGenerator(param_space=space, num_samples=4)
    state = cloudpickle.dumps(gen.get_state())
    expected = run_all(gen)
    restored = BasicVariantGenerator(param_space=space, num_samples=4)
    restored.set_state(pickle.loads(state))
    assert run_all(restored) == expected


def test_max_concurrent_waits_for_completions():
    gen = BasicVariantGenerator(param_space={"x": uniform(0, 1)}, num_samples=3, max_concurrent=2)
    assert isinstance(gen.suggest("t0"), dict) and isinstance(gen.suggest("t1"), dict)
    assert gen.suggest("t2") is None
    gen.on_trial_complete("t0", {"loss": 1.0})
    assert isinstance(gen.suggest("t2"), dict)


def test_experiment_tag_names_variable_keys_only():
    space = {
        "lr": grid_search([0.01]),
        "model": {"depth": randint(3, 4), "name": "mlp"},
        "opt": choice(["sgd"]),
    }
    gen = BasicVariantGenerator(param_space=space, seed=0)
    config = gen.suggest("t0")
    assert gen.experiment_tag("t0", config) == "lr=0.01,model/depth=3,opt=sgd"
    assert gen.experiment_tag("t0", {"x": 1}) == ""


def test_experiment_tag_formats_floats_compactly():
    gen = BasicVariantGenerator(param_space={"lr": uniform(0, 1), "m": grid_search([0.9, 1e-5])})
    assert gen.experiment_tag("t", {"lr": 0.0123456, "m": 1e-5}) == "lr=0.01235,m=1e-05"


def test_set_search_properties_adopts_space_when_none_given():
    gen = BasicVariantGenerator(points_to_evaluate=[{"a": 9}])
    space = {"a": grid_search([1, 2])}
    assert gen.set_search_properties("loss", "min", space, num_samples=2)
    assert gen.metric == "loss" and gen.mode == "min"
    assert [c["a"] for c in run_all(gen)] == [9, 1, 2]
    other = BasicVariantGenerator(param_space={"a": 1})
    assert other.set_search_properties(None, None, {"a": 1})
    assert not other.set_search_properties(None, None, {"b": 2})


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"param_space": [1]}, TypeError, "param_space must be a dict, got list"),
        ({"num_samples": 0}, ValueError, "num_samples must be >= 1, got 0"),
        ({"num_samples": 1.5}, TypeError, "num_samples must be an int, got float"),
        ({"max_concurrent": -1}, ValueError, "max_concurrent must be >= 0, got -1"),
        ({"seed": "x"}, TypeError, "seed must be an int or None, got str"),
        ({"points_to_evaluate": {"a": 1}}, TypeError, "points_to_evaluate must be a list"),
        ({"points_to_evaluate": [{}, 3]}, TypeError, r"points_to_evaluate\[1\] must be a dict"),
        (
            {"param_space": {"model": {"lr": {"grid_search": []}}}},
            ValueError,
            r"param_space\['model'\]\['lr'\]: grid_search needs a non-empty list",
        ),
        (
            {"param_space": {"l": [{"grid_search": 3}]}},
            ValueError,
            r"param_space\['l'\]\[0\]: grid_search needs a non-empty list, got 3",
        ),
        (
            {"param_space": {"a": grid_search([grid_search([1])])}},
            ValueError,
            r"param_space\['a'\]: grid_search values may not contain a grid_search",
        ),
    ],
)
def test_generator_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        BasicVariantGenerator(**kwargs)
