"""Each searcher on an optional library says which `pip install` line fixes a missing extra, as
it is built (before any trial starts), and names no other cause."""

from __future__ import annotations

import importlib
import re
import sys

import pytest

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
