"""The rest of the public surface a Ray Tune user reaches for: custom searchers and schedulers,
nested search spaces, `reset_config` reuse, and the status block."""

from __future__ import annotations

import functools
import os

import pytest

import rtune as tune
from rtune.schedulers import TrialScheduler


def echo(config):
    for i in range(config.get("iterations", 1)):
        tune.report({"x": config.get("x", 0), "i": i})


class ListSearcher(tune.Searcher):
    """Suggests the given x values in order and records what it was told."""

    def __init__(self, xs):
        super().__init__(metric="x", mode="max")
        self.xs = list(xs)
        self.completed = []

    def suggest(self, trial_id):
        if not self.xs:
            return tune.Searcher.FINISHED
        return {"x": self.xs.pop(0)}

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.completed.append(result["x"])


@pytest.mark.smoke
def test_custom_searcher_drives_the_trials(storage):
    results = tune.Tuner(
        echo,
        tune_config=tune.TuneConfig(search_alg=ListSearcher([3, 1, 2]), num_samples=10),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    assert sorted(r.config["x"] for r in results) == [1, 2, 3]
    assert results.get_best_result("x", "max").config["x"] == 3


def test_num_samples_caps_a_custom_searcher(storage):
    results = tune.Tuner(
        echo,
        tune_config=tune.TuneConfig(search_alg=ListSearcher([5, 6, 7, 8]), num_samples=2),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    assert [r.config["x"] for r in results] == [5, 6]


class StopAtTwo(TrialScheduler):
    """A scheduler's STOP decision ends the trial at that result."""

    def on_trial_result(self, tune_controller, trial, result):
        return self.STOP if result["training_iteration"] >= 2 else self.CONTINUE


def test_scheduler_stop_decision(storage):
    results = tune.Tuner(
        echo,
        param_space={"iterations": 50},
        tune_config=tune.TuneConfig(scheduler=StopAtTwo()),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    assert results[0].metrics["training_iteration"] == 2
    assert list(results[0].metrics_dataframe["training_iteration"]) == [1, 2]


def test_nested_search_space(storage):
    results = tune.Tuner(
        echo,
        param_space={
            "model": {"layers": tune.grid_search([1, 2]), "act": tune.choice(["relu"])},
            "sizes": [tune.randint(1, 2), 8],
            "x": tune.sample_from(lambda spec: spec.config["model"]["layers"] * 10),
        },
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    configs = sorted((r.config for r in results), key=lambda c: c["model"]["layers"])
    assert [c["x"] for c in configs] == [10, 20]
    assert all(c["sizes"] == [1, 8] and c["model"]["act"] == "relu" for c in configs)
    frame = results.get_dataframe()
    assert sorted(frame["config/model/layers"]) == [1, 2]


class Resettable(tune.Trainable):
    instances = 0

    def setup(self, config):
        Resettable.instances += 1
        self.created = Resettable.instances
        self.pid = os.getpid()

    def step(self):
        return {"created": self.created, "pid": self.pid, "done": True}

    def reset_config(self, new_config):
        return True


def test_reset_config_reuses_the_trainable_instance(storage):
    results = tune.Tuner(
        Resettable,
        param_space={"i": tune.grid_search([0, 1, 2])},
        tune_config=tune.TuneConfig(max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    assert {r.metrics["pid"] for r in results} == {results[0].metrics["pid"]}
    assert {r.metrics["created"] for r in results} == {1}  # one instance, reset twice


def test_status_block_and_events(storage, capfd):
    tune.Tuner(
        echo,
        param_space={"x": tune.grid_search([1, 2]), "iterations": 2},
        tune_config=tune.TuneConfig(metric="x", mode="max"),
        run_config=tune.RunConfig(storage_path=storage, name="shown", verbose=2),
    ).fit()
    out = capfd.readouterr().out
    assert "== Status ==" in out
    assert "Using FIFO scheduling algorithm." in out
    assert f"Result logdir: {os.path.join(storage, 'shown')}" in out
    assert "Number of trials: 2/2 (2 TERMINATED)" in out
    assert "| Trial name" in out and "TERMINATED" in out
    assert "completed after 2 iterations" in out
    assert "rtune: best x=2" in out


def test_verbose_zero_prints_nothing(storage, capfd):
    tune.Tuner(echo, run_config=tune.RunConfig(storage_path=storage, verbose=0)).fit()
    captured = capfd.readouterr()
    assert "rtune" not in captured.out and "== Status ==" not in captured.out


# ---- misspelled keywords (issue 11, item 5) ----


def _public_callables():
    """Every exported function and class constructor, and the public methods of the exported
    classes users call (not the hook bases they subclass), as (label, callable)."""
    import inspect

    import rtune.search
    from rtune._strict import _HOOK_BASES

    found = []
    names = [(tune, name) for name in tune.__all__]
    names += [(rtune.search, n) for n in rtune.search.__all__ if n not in tune.__all__]
    for module, name in names:
        obj = getattr(module, name)
        if inspect.isfunction(obj):
            found.append((name, obj))
        elif isinstance(obj, type) and not issubclass(obj, Exception):  # errors: rtune raises
            found.append((name, obj))
            if any(base.__name__ in _HOOK_BASES for base in obj.__mro__):
                continue
            for attr, member in vars(obj).items():
                if attr.startswith("_"):
                    continue
                if isinstance(member, (classmethod, staticmethod)):
                    found.append((f"{name}.{attr}", getattr(obj, attr)))
                elif inspect.isfunction(member):
                    found.append((f"{name}.{attr}", functools.partial(member, None)))
    takes_any = []
    for label, func in found:
        target = func.func if isinstance(func, functools.partial) else func
        params = inspect.signature(target).parameters.values()
        if any(p.kind == p.VAR_KEYWORD for p in params):
            takes_any.append(label)  # with_parameters(**objects), Trainable(**parameters)
    return [(label, func) for label, func in found if label not in takes_any]


PUBLIC = _public_callables()


@pytest.mark.parametrize("label, func", PUBLIC, ids=[label for label, _ in PUBLIC])
def test_a_misspelled_keyword_is_refused_with_the_valid_ones(label, func):
    with pytest.raises(TypeError) as raised:
        func(misspelled_argument=1)
    message = str(raised.value)
    assert "'misspelled_argument'" in message
    assert "its keyword arguments are:" in message


def test_a_close_match_is_suggested():
    with pytest.raises(TypeError, match=r"'resume_errrored' \(did you mean 'resume_errored'\?\)"):
        tune.Tuner.restore("/nowhere", resume_errrored=True)
    with pytest.raises(TypeError, match=r"did you mean 'num_to_keep'.*checkpoint_score_order"):
        tune.CheckpointConfig(num_to_kep=2)


def test_ray_tunes_resume_config_is_accepted_with_a_warning(tmp_path):
    with pytest.warns(UserWarning, match="_resume_config"):
        with pytest.raises(FileNotFoundError):
            tune.Tuner.restore(str(tmp_path / "missing"), _resume_config=object())


def test_the_checked_functions_still_pickle_as_themselves():
    """A trainable that holds `tune.report` (or a search-space function) is pickled for its trial
    actors: the wrapped functions pickle by reference, as the originals did."""
    import pickle

    import rtune.search

    for module in (tune, rtune.search):
        for name in module.__all__:
            obj = getattr(module, name)
            if callable(obj) and not isinstance(obj, type):
                assert pickle.loads(pickle.dumps(obj)) is obj, name
