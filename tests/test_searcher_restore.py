"""Every model-based searcher, stopped by a real Ctrl-C mid-run and restored: the restored run
suggests the same configs in the same order as an uninterrupted one (seeded, one trial at a
time), each once, and ends with exactly num_samples trials. The searcher's state is written with
the trials it created, so no suggestion is lost or made twice."""

from __future__ import annotations

import math
import os
import time

import pytest
from iteration_checkpoints import ctrl_c_when

import rtune as tune

TRIALS, CUT_AFTER = 10, 7  # the cut falls after the random start-up trials of each


def _optuna():
    optuna = pytest.importorskip("optuna")
    from rtune.search.optuna import OptunaSearch

    return OptunaSearch(sampler=optuna.samplers.TPESampler(seed=11, n_startup_trials=5))


def _hyperopt():
    pytest.importorskip("hyperopt")
    from rtune.search.hyperopt import HyperOptSearch

    return HyperOptSearch(n_initial_points=5, random_state_seed=11)


def _bayesopt():
    pytest.importorskip("bayes_opt")
    from rtune.search.bayesopt import BayesOptSearch

    return BayesOptSearch(random_state=11, random_search_steps=4)


SEARCHERS = {"optuna": _optuna, "hyperopt": _hyperopt, "bayesopt": _bayesopt}


def slow_quadratic(config, log):
    for step in range(1, 3):
        time.sleep(0.05)
        tune.report({"score": -((config["x"] - 0.3) ** 2) * step, "epoch": step})
    with open(log, "a") as out:
        out.write(f"{config['x']}\n")


@pytest.mark.slow
@pytest.mark.parametrize("searcher", sorted(SEARCHERS))
def test_a_run_stopped_by_ctrl_c_and_restored_suggests_the_same_configs_in_order(
    storage, tmp_path, searcher
):
    def tuner(name):
        trainable = tune.with_parameters(slow_quadratic, log=str(tmp_path / f"{name}.log"))
        return tune.Tuner(
            trainable,
            param_space={"x": tune.uniform(0, 1)},
            tune_config=tune.TuneConfig(
                search_alg=SEARCHERS[searcher](),
                metric="score",
                mode="max",
                num_samples=TRIALS,
                max_concurrent_trials=1,
            ),
            run_config=tune.RunConfig(storage_path=storage, name=name, verbose=0),
        ), trainable

    def in_order(grid):
        return [r.config["x"] for r in sorted(grid, key=lambda r: r.path)]

    whole = in_order(tuner("whole")[0].fit())
    cut_log = tmp_path / "cut.log"
    ctrl_c_when(lambda: cut_log.exists() and len(cut_log.read_text().split()) >= CUT_AFTER)
    cut, trainable = tuner("cut")
    stopped = cut.fit()
    assert len(stopped) < TRIALS or any(r.status != "TERMINATED" for r in stopped)
    grid = tune.Tuner.restore(os.path.join(storage, "cut"), trainable=trainable).fit()
    assert grid.num_terminated == TRIALS
    assert in_order(grid) == whole  # the same configs, in the same order, none twice
    assert len(set(whole)) == TRIALS and not any(math.isnan(x) for x in whole)
