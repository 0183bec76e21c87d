"""Behaviours a Ray Tune 2.60 script relies on, checked after `import rtune as tune`."""

from __future__ import annotations

import pickle
import time

import pytest

import rtune as tune
from rtune.search import BasicVariantGenerator
from rtune.search.sample import sample_from, uniform


def _configs(space: dict, n: int = 4) -> list[dict]:
    searcher = BasicVariantGenerator(param_space=space, num_samples=n, seed=1)
    configs = []
    for i in range(n * 2):
        config = searcher.suggest(f"t{i}")
        if config == searcher.FINISHED or config is None:
            break
        configs.append(config)
    return configs


def test_sample_from_gets_the_config_as_well_as_the_old_spec():
    space = {
        "a": tune.grid_search([1, 2]),
        "nested": {"b": uniform(0, 1)},
        "by_key": sample_from(lambda config: config["a"] * 10),
        "nested_key": sample_from(lambda config: config["nested"]["b"] + 1),
        "old_style": sample_from(lambda spec: spec.config.nested.b + 2),
        "old_item": sample_from(lambda spec: spec["config"]["a"] + 3),
        "chained": sample_from(lambda config: config["by_key"] + 1),
        "has": sample_from(lambda config: "a" in config and config.get("missing", 7) == 7),
    }
    configs = _configs(space, n=1)
    assert len(configs) == 2
    for config in configs:
        assert config["by_key"] == config["a"] * 10
        assert config["nested_key"] == config["nested"]["b"] + 1
        assert config["old_style"] == config["nested"]["b"] + 2
        assert config["old_item"] == config["a"] + 3
        assert config["chained"] == config["by_key"] + 1
        assert config["has"] is True


def _one(config):
    tune.report({"score": config["x"]})


def test_get_best_result_without_metric_on_one_trial_returns_it(storage):
    results = tune.Tuner(
        _one, param_space={"x": 3}, run_config=tune.RunConfig(storage_path=storage, verbose=0)
    ).fit()
    assert results.get_best_result().metrics["score"] == 3


def test_get_best_result_without_metric_on_two_trials_is_still_an_error(storage):
    results = tune.Tuner(
        _one,
        param_space={"x": tune.grid_search([1, 2])},
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    with pytest.raises(ValueError, match="needs a metric and a mode"):
        results.get_best_result()
    assert results.get_best_result("score", "max").metrics["score"] == 2


def test_timeout_stopper_reads_the_clock_when_called(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    stopper = tune.TimeoutStopper(10)
    now[0] += 9
    assert not stopper.stop_all()
    now[0] += 2
    assert stopper.stop_all()


def test_timeout_stopper_pickles_and_keeps_the_time_used(monkeypatch):
    now = [50.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    stopper = tune.TimeoutStopper(10)
    now[0] += 4
    restored = pickle.loads(pickle.dumps(stopper))
    assert restored.elapsed() == pytest.approx(4.0)
    now[0] += 5
    assert not restored.stop_all()
    now[0] += 2
    assert restored.stop_all()


class _Seen(tune.Stopper):
    def __init__(self) -> None:
        self.results: list[dict] = []

    def __call__(self, trial_id, result):
        self.results.append({k: result.get(k) for k in ("score", "_metric", "training_iteration")})
        return False


def _returns(config):
    tune.report({"score": 1})
    return config["out"]


def _yields(config):
    yield {"score": 1}
    yield 2.5


@pytest.mark.parametrize(
    ("out", "last"),
    [
        ({"score": 7}, {"score": 7, "_metric": None, "training_iteration": 2}),
        (0.5, {"score": None, "_metric": 0.5, "training_iteration": 2}),
        (None, {"score": 1, "_metric": None, "training_iteration": 1}),
    ],
)
def test_a_function_trainables_return_value_is_its_final_result(storage, out, last):
    seen = _Seen()
    results = tune.Tuner(
        _returns,
        param_space={"out": out},
        run_config=tune.RunConfig(storage_path=storage, verbose=0, stop=seen),
    ).fit()
    (result,) = results
    assert seen.results[-1] == last
    assert len(seen.results) == last["training_iteration"]
    for key, value in last.items():
        assert result.metrics.get(key) == value
    assert len(result.metrics_dataframe) == last["training_iteration"]
    assert result.metrics["done"] is True


def test_a_generator_trainables_yields_are_results(storage):
    results = tune.Tuner(_yields, run_config=tune.RunConfig(storage_path=storage, verbose=0)).fit()
    (result,) = results
    assert result.metrics["_metric"] == 2.5 and result.metrics["training_iteration"] == 2


def test_a_function_trainable_returning_something_else_is_an_error(storage):
    results = tune.Tuner(
        _returns,
        param_space={"out": "text"},
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    (result,) = results
    assert "may return or yield a number or a dict" in str(result.error)


class _StopAllAfter(tune.Stopper):
    """Ends the run once it has seen `total` results; remembers what it had seen of each trial
    when it decided (read back from the object after fit(): it runs in the controller)."""

    def __init__(self, total: int):
        self.total = total
        self.seen: dict[str, int] = {}
        self.at_decision: dict[str, int] | None = None

    def __call__(self, trial_id, result):
        self.seen[trial_id] = result["training_iteration"]
        return False

    def stop_all(self):
        if self.at_decision is None and sum(self.seen.values()) >= self.total:
            self.at_decision = dict(self.seen)
        return self.at_decision is not None


def _steady(config):
    for i in range(50):
        time.sleep(0.2)
        tune.report({"i": i})


def test_stop_all_ends_trials_at_their_next_iteration_boundary(storage):
    """As in Ray Tune: the trial whose result made stop_all() true runs no further iteration, and
    a trial mid-iteration ends with what it had reported by then (one result in flight at most)."""
    stopper = _StopAllAfter(total=8)
    results = tune.Tuner(
        _steady,
        param_space={"id": tune.grid_search([0, 1])},
        run_config=tune.RunConfig(storage_path=storage, name="stop_all", stop=stopper, verbose=0),
    ).fit()
    assert stopper.at_decision is not None
    ended = {r.trial_id: r.metrics["training_iteration"] for r in results}
    assert all(r.status == "TERMINATED" for r in results)
    for trial_id, iteration in ended.items():
        seen = stopper.at_decision.get(trial_id, 0)
        assert seen <= iteration <= seen + 1, (ended, stopper.at_decision)
        assert list(results[0].metrics_dataframe["training_iteration"]) == list(
            range(1, ended[results[0].trial_id] + 1)
        )
    # the trial whose result tipped it recorded nothing after it
    assert min(ended[t] - stopper.at_decision[t] for t in ended) == 0
