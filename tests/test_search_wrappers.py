"""The Searcher base's persistence methods, `ConcurrencyLimiter` and `Repeater`: their policies
fed directly (no Ray), their state restored mid-run deciding as the uninterrupted one, real runs,
and a run stopped by Ctrl-C and restored that suggests no config twice and none too few."""

from __future__ import annotations

import math
import os
import time

import cloudpickle
import pytest
from iteration_checkpoints import ctrl_c_when

import rtune as tune
from rtune.search import ConcurrencyLimiter, Repeater, Searcher
from rtune.search.repeater import TRIAL_INDEX
from rtune.search.suggestions import complete_suggestion, split_space


class ListSearcher(Searcher):
    """Suggests the given x values in order and logs every call it gets, in order."""

    def __init__(self, xs, metric="score", mode="max"):
        super().__init__(metric=metric, mode=mode)
        self.xs = list(xs)
        self.log: list[tuple] = []

    def suggest(self, trial_id):
        if not self.xs:
            return Searcher.FINISHED
        x = self.xs.pop(0)
        self.log.append(("suggest", trial_id, x))
        return {"x": x}

    def on_trial_complete(self, trial_id, result=None, error=False):
        score = None if result is None else result.get(self.metric)
        self.log.append(("complete", trial_id, score, error))


class SelfLimiting(ListSearcher):
    def set_max_concurrency(self, max_concurrent):
        self.limit = max_concurrent
        return True


def _roundtrip(searcher):
    """A fresh wrapper of a fresh searcher, given the pickled state: what a restore does."""
    return cloudpickle.loads(cloudpickle.dumps(searcher.get_state()))


def _replay(wrapper, fresh, steps, cut):
    """Feed `steps` ("s": suggest, "c": complete, with a trial id) to `wrapper`; at step `cut`,
    go on with `fresh()` given the pickled state (what a restore does). -> (the answers to the
    suggestions, what the wrapped searcher was told)."""
    wrapper.set_search_properties(None, None, None)
    answers = []
    for i, (kind, tid) in enumerate(steps):
        if i == cut:
            state = _roundtrip(wrapper)
            wrapper = fresh()
            wrapper.set_state(state)
        if kind == "s":
            answers.append(wrapper.suggest(tid))
        else:
            wrapper.on_trial_complete(tid, {"score": float(ord(tid))})
    return answers, wrapper.searcher.log


# ---- ConcurrencyLimiter ----


def test_the_limiter_suggests_only_while_fewer_than_max_concurrent_trials_are_live():
    inner = ListSearcher([1, 2, 3, 4])
    limiter = ConcurrencyLimiter(inner, max_concurrent=2)
    limiter.set_search_properties(None, None, None)
    assert limiter.suggest("a") == {"x": 1} and limiter.suggest("b") == {"x": 2}
    assert limiter.suggest("c") is None  # two live: the searcher is not even asked
    assert [entry[0] for entry in inner.log] == ["suggest", "suggest"]
    limiter.on_trial_complete("a", {"score": 1.0})
    assert inner.log[-1] == ("complete", "a", 1.0, False)
    assert limiter.suggest("c") == {"x": 3}
    limiter.on_trial_complete("nobody", {"score": 9.0})  # not its trial: ignored
    limiter.on_trial_complete("a", {"score": 1.0})  # told already: ignored
    assert inner.log[-1] == ("suggest", "c", 3)
    assert limiter.needs.suggests_ahead is False


def test_a_batch_is_told_to_the_searcher_together_once_it_has_all_completed():
    inner = ListSearcher([1, 2, 3, 4, 5])
    limiter = ConcurrencyLimiter(inner, max_concurrent=2, batch=True)
    limiter.set_search_properties(None, None, None)
    limiter.suggest("a"), limiter.suggest("b")
    limiter.on_trial_complete("b", {"score": 2.0})
    assert limiter.suggest("c") is None  # the batch is not over
    assert [e for e in inner.log if e[0] == "complete"] == []
    limiter.on_trial_complete("a", {"score": 1.0}, error=False)
    # in the order they completed
    assert [e[1] for e in inner.log if e[0] == "complete"] == ["b", "a"]
    assert limiter.suggest("c") == {"x": 3} and limiter.suggest("d") == {"x": 4}


def test_a_searcher_that_limits_itself_is_left_to_it():
    inner = SelfLimiting([1, 2, 3])
    limiter = ConcurrencyLimiter(inner, max_concurrent=1)
    limiter.set_search_properties("score", "max", None)
    assert inner.limit == 1
    assert limiter.suggest("a") == {"x": 1} and limiter.suggest("b") == {"x": 2}


def test_a_restored_limiter_waits_for_the_same_trials_and_continues_the_searcher():
    def run(cut):
        limiter = ConcurrencyLimiter(ListSearcher(range(6)), max_concurrent=2, batch=True)
        steps = [("s", "a"), ("s", "b"), ("c", "b"), ("s", "x"), ("c", "a"), ("s", "c")]
        steps += [("s", "d"), ("c", "d"), ("c", "c"), ("s", "e")]

        def fresh():
            return ConcurrencyLimiter(ListSearcher([]), max_concurrent=1)

        return _replay(limiter, fresh, steps, cut)

    whole = run(None)
    assert whole[0][2] is None  # "x" came while the batch was live
    for cut in range(1, 10):
        assert run(cut) == whole, cut


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", None])
def test_the_limiter_refuses_a_max_concurrent_that_is_not_a_positive_int(bad):
    with pytest.raises(ValueError, match="max_concurrent must be a positive int"):
        ConcurrencyLimiter(ListSearcher([1]), max_concurrent=bad)


def test_a_wrapper_refuses_what_is_not_a_searcher():
    with pytest.raises(TypeError, match="ConcurrencyLimiter wraps a rtune Searcher, got dict"):
        ConcurrencyLimiter({}, max_concurrent=1)
    with pytest.raises(TypeError, match="Repeater wraps a rtune Searcher, got list"):
        Repeater([], repeat=2)


# ---- Repeater ----


def test_each_config_is_repeated_with_its_index_and_the_mean_is_told_once():
    inner = ListSearcher([1, 5])
    repeater = Repeater(inner, repeat=3)
    repeater.set_search_properties(None, None, None)
    configs = [repeater.suggest(tid) for tid in "abcdef"]
    assert configs == [{"x": x, TRIAL_INDEX: i} for x in (1, 5) for i in range(3)]
    assert repeater.suggest("g") == Searcher.FINISHED
    assert [e for e in inner.log if e[0] == "suggest"] == [("suggest", "a", 1), ("suggest", "d", 5)]
    repeater.on_trial_complete("b", {"score": 2.0})
    repeater.on_trial_complete("a", {"score": 1.0})
    assert not [e for e in inner.log if e[0] == "complete"]  # the group is not over
    repeater.on_trial_complete("c", {"score": 6.0})
    repeater.on_trial_complete("c", {"score": 6.0})  # told already: ignored
    assert [e for e in inner.log if e[0] == "complete"] == [("complete", "a", 3.0, False)]
    # a repeat that errored or never reported the metric does not count in the mean
    repeater.on_trial_complete("d", None, error=True)
    repeater.on_trial_complete("e", {"other": 1.0})
    repeater.on_trial_complete("f", {"score": 50.0})
    assert inner.log[-1] == ("complete", "d", 50.0, False)


def test_a_group_whose_repeats_all_errored_is_told_as_an_error_with_nan():
    inner = ListSearcher([1])
    repeater = Repeater(inner, repeat=2, set_index=False)
    repeater.set_search_properties(None, None, None)
    assert [repeater.suggest(t) for t in "ab"] == [{"x": 1}, {"x": 1}]
    repeater.on_trial_complete("a", None, error=True)
    repeater.on_trial_complete("b", None, error=True)
    _, primary, score, error = inner.log[-1]
    assert primary == "a" and math.isnan(score) and error is True


def test_a_restored_repeater_fills_the_same_groups_and_tells_each_mean_once():
    def run(cut):
        repeater = Repeater(ListSearcher([1, 2, 3]), repeat=2)
        steps = [("s", "a"), ("s", "b"), ("c", "a"), ("s", "c"), ("c", "b"), ("s", "d")]
        steps += [("c", "d"), ("s", "e"), ("c", "c"), ("s", "f"), ("c", "e"), ("c", "f")]
        return _replay(repeater, lambda: Repeater(ListSearcher([]), repeat=5), steps, cut)

    whole = run(None)
    assert [e[1] for e in whole[1] if e[0] == "complete"] == ["a", "c", "e"]
    for cut in range(1, 12):
        assert run(cut) == whole, cut


def test_num_samples_not_a_multiple_of_repeat_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match=r"num_samples=5\) is not a multiple of.*repeat=3"):
        tune.Tuner(
            lambda config: None,
            tune_config=tune.TuneConfig(
                search_alg=ConcurrencyLimiter(Repeater(ListSearcher([1]), repeat=3), 2),
                num_samples=5,
            ),
            run_config=tune.RunConfig(storage_path=str(tmp_path), name="refused"),
        )
    assert not (tmp_path / "refused").exists()


# ---- the Searcher base's persistence ----


def test_save_and_restore_and_the_dir_variants_continue_the_searcher(tmp_path):
    searcher = ListSearcher([1, 2, 3])
    searcher.suggest("a")
    searcher.save(str(tmp_path / "state.pkl"))
    again = ListSearcher([])
    again.restore(str(tmp_path / "state.pkl"))
    assert again.suggest("b") == {"x": 2} and again.log[0] == ("suggest", "a", 1)

    searcher.save_to_dir(str(tmp_path / "dir"), session_str="old")
    searcher.suggest("b")
    time.sleep(0.01)  # a later modification time for the newer file, not an assertion
    searcher.save_to_dir(str(tmp_path / "dir"), session_str="new")
    assert sorted(os.listdir(tmp_path / "dir")) == [
        "searcher-state-new.pkl",
        "searcher-state-old.pkl",
    ]
    newest = ListSearcher([])
    newest.restore_from_dir(str(tmp_path / "dir"))
    assert newest.suggest("c") == {"x": 3}
    with pytest.raises(RuntimeError, match=f"no searcher state file .* in {tmp_path}"):
        ListSearcher([]).restore_from_dir(str(tmp_path))


def test_add_evaluated_point_is_refused_by_a_searcher_that_cannot_learn_from_one():
    with pytest.raises(NotImplementedError, match="ListSearcher does not take points"):
        ListSearcher([]).add_evaluated_point({"x": 1}, 1.0)


# ---- real runs ----


def scored(config):
    for i in range(config.get("iterations", 2)):
        time.sleep(config.get("sleep", 0))
        tune.report({"score": config["x"] * 10 + config.get(TRIAL_INDEX, 0), "i": i})


def _most_live(log) -> int:
    live = most = 0
    for entry in log:
        live += 1 if entry[0] == "suggest" else -1
        most = max(most, live)
    return most


def test_a_real_run_keeps_at_most_max_concurrent_trials_of_the_searcher_live(storage):
    inner = ListSearcher([1, 2, 3, 4, 5, 6])
    grid = tune.Tuner(
        scored,
        param_space={"sleep": 0.2},  # long enough for two trials to overlap
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(inner, max_concurrent=2), num_samples=6
        ),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    assert sorted(r.config["x"] for r in grid) == [1, 2, 3, 4, 5, 6]
    assert grid.num_terminated == 6
    # the user's objects hold the run's final state
    assert len([e for e in inner.log if e[0] == "complete"]) == 6
    assert _most_live(inner.log) == 2


def test_max_concurrent_trials_limits_a_searcher_as_a_concurrency_limiter_would(storage):
    inner = ListSearcher([1, 2, 3, 4, 5])
    tuner = tune.Tuner(
        scored,
        param_space={"sleep": 0.2},  # long enough for two trials to overlap
        tune_config=tune.TuneConfig(search_alg=inner, num_samples=5, max_concurrent_trials=2),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    )
    assert tuner.fit().num_terminated == 5
    # asked only when a trial may start: never a third config while two are live
    assert _most_live(inner.log) == 2


def test_a_real_run_repeats_each_config_and_tells_the_searcher_the_means(storage):
    inner = ListSearcher([1, 5])
    grid = tune.Tuner(
        scored,
        tune_config=tune.TuneConfig(search_alg=Repeater(inner, repeat=3), num_samples=6),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    assert sorted((r.config["x"], r.config[TRIAL_INDEX]) for r in grid) == [
        (x, i) for x in (1, 5) for i in range(3)
    ]
    told = sorted(e[2] for e in inner.log if e[0] == "complete")
    assert told == [11.0, 51.0]  # means of 10, 11, 12 and of 50, 51, 52


def completes_slowly(config, log):
    """Two iterations, logging the trial's (x, index) when it ends, a little slower than the
    controller, so a Ctrl-C lands between trials of the run."""
    for i in range(2):
        time.sleep(0.05)
        tune.report({"score": config["x"] * 10 + config[TRIAL_INDEX], "i": i})
    with open(log, "a") as out:
        out.write(f"{config['x']}:{config[TRIAL_INDEX]}\n")


@pytest.mark.slow
def test_a_run_stopped_by_ctrl_c_and_restored_runs_every_suggestion_once(storage, tmp_path):
    log = tmp_path / "ended.log"
    inner = ListSearcher([1, 2, 3, 4])
    searcher = ConcurrencyLimiter(Repeater(inner, repeat=2), max_concurrent=2)
    trainable = tune.with_parameters(completes_slowly, log=str(log))
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=8),
        run_config=tune.RunConfig(storage_path=storage, name="wrapped", verbose=0),
    )
    ctrl_c_when(lambda: log.exists() and len(log.read_text().split()) >= 3)
    stopped = tuner.fit()
    assert len(stopped) < 8 or any(r.status != "TERMINATED" for r in stopped)  # stopped partway
    restored = tune.Tuner.restore(os.path.join(storage, "wrapped"), trainable=trainable)
    grid = restored.fit()
    pairs = sorted((r.config["x"], r.config[TRIAL_INDEX]) for r in grid)
    assert pairs == [(x, i) for x in (1, 2, 3, 4) for i in range(2)]  # all 8, none twice
    assert grid.num_terminated == 8
    # what the searcher was told, from the restored run's searcher (private: Ray Tune's API has
    # no accessor for it either): the limiter's repeater's list searcher
    final = restored._searcher.searcher.searcher
    suggested = [e[2] for e in final.log if e[0] == "suggest"]
    told = sorted(e[2] for e in final.log if e[0] == "complete")
    assert suggested == [1, 2, 3, 4]  # each config suggested once, in order
    assert told == [10.5, 20.5, 30.5, 40.5]  # each group's mean told once


# ---- a suggestion completed by param_space's constants, as Ray Tune does ----


def test_the_constants_of_param_space_complete_a_suggestion_and_a_missing_parameter_is_named():
    space = {
        "epochs": 3,
        "lr": tune.loguniform(1e-4, 1e-1),
        "model": {"depth": tune.grid_search([1, 2]), "act": "relu"},
        "layers": [tune.choice([8, 16]), 4],
    }
    constants, variables = split_space(space)
    assert constants == {"epochs": 3, "model": {"act": "relu"}}
    assert variables == [("lr",), ("model", "depth"), ("layers",)]
    suggestion = {"lr": 0.01, "model": {"depth": 2}, "layers": [8, 4]}
    config = complete_suggestion(constants, variables, suggestion, "MySearcher")
    assert config == {**suggestion, "epochs": 3, "model": {"depth": 2, "act": "relu"}}
    assert constants == {"epochs": 3, "model": {"act": "relu"}}  # untouched for the next one
    with pytest.raises(ValueError, match=r"MySearcher suggested no value for param_space\['lr'\]"):
        complete_suggestion(
            constants, variables, {"model": {"depth": 1}, "layers": []}, "MySearcher"
        )


def test_a_custom_searchers_trials_get_the_constants_of_param_space(storage):
    grid = tune.Tuner(
        scored,
        param_space={"iterations": 1, "fixed": {"a": 1}},
        tune_config=tune.TuneConfig(search_alg=ListSearcher([1, 2]), num_samples=2),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    assert sorted(r.config["x"] for r in grid) == [1, 2]
    assert all(r.config["fixed"] == {"a": 1} and r.config["iterations"] == 1 for r in grid)


def test_a_search_parameter_the_searcher_did_not_suggest_fails_the_run_naming_it(storage):
    tuner = tune.Tuner(
        scored,
        param_space={"lr": tune.uniform(0, 1)},
        tune_config=tune.TuneConfig(search_alg=ListSearcher([1]), num_samples=1),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    )
    with pytest.raises(
        ValueError, match=r"ListSearcher suggested no value for param_space\['lr'\]"
    ):
        tuner.fit()


def test_a_basic_variant_generator_given_as_search_alg_takes_num_samples_from_tune_config(storage):
    grid = tune.Tuner(
        scored,
        param_space={"x": tune.uniform(0, 1), "iterations": 1},
        tune_config=tune.TuneConfig(
            search_alg=tune.BasicVariantGenerator(max_concurrent=2), num_samples=5
        ),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    assert len(grid) == 5 and grid.num_terminated == 5
