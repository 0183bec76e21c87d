"""What every searcher on an optional library (Optuna, HyperOpt, BayesOpt) does alike: a missing
extra names the `pip install` line that fixes it, and a search space given both to the searcher
and in `param_space` is refused by the Tuner before anything is written."""

from __future__ import annotations

import importlib
import re
import sys

import pytest

import rtune as tune

SEARCHERS = [
    ("rtune.search.optuna", "OptunaSearch", "optuna", "rtune[optuna]"),
    ("rtune.search.hyperopt", "HyperOptSearch", "hyperopt", "rtune[hyperopt]"),
    ("rtune.search.bayesopt", "BayesOptSearch", "bayes_opt", "rtune[bayesopt]"),
]


@pytest.mark.parametrize("module, name, library, extra", SEARCHERS)
def test_a_missing_extra_names_the_pip_install_line(monkeypatch, module, name, library, extra):
    searcher = getattr(importlib.import_module(module), name)  # importing rtune's module is fine
    monkeypatch.setitem(sys.modules, library, None)  # what Python does for a missing package
    with pytest.raises(ImportError, match=re.escape(f"pip install '{extra}'")):
        searcher()


def _quadratic(config):
    tune.report({"score": -((config["x"] - 0.3) ** 2)})


@pytest.mark.parametrize("module, name, library, extra", SEARCHERS)
def test_a_space_in_both_places_is_refused_before_anything_is_written(
    tmp_path, module, name, library, extra
):
    pytest.importorskip(library)
    searcher = getattr(importlib.import_module(module), name)({"x": tune.uniform(0, 1)})
    with pytest.raises(ValueError, match=f"{name} has a search space of its own"):
        tune.Tuner(
            _quadratic,
            param_space={"y": tune.uniform(0, 1)},
            tune_config=tune.TuneConfig(search_alg=searcher, metric="score", mode="max"),
            run_config=tune.RunConfig(storage_path=str(tmp_path), name="refused"),
        )
    assert not (tmp_path / "refused").exists()
