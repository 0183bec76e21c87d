"""`BayesOptSearch`: Ray Tune's BayesOptSearch on bayesian-optimization 3.x (`bayes_opt`), its
Gaussian process and random state stored exactly.

Each suggestion is bayes_opt's `suggest()` (the argmax of the acquisition function over the GP
fitted to every registered result), or a random sample while fewer than `random_search_steps`
results are registered, so the GP does not overfit its first points. A trial's end registers its
metric, negated for `mode="min"`: bayes_opt only maximises. Ray's `utility_kwargs` (bayes_opt
1.x's `UtilityFunction`) is mapped onto 3.x's acquisition classes.

Spaces: `tune.uniform` is a float range, as in Ray Tune, which refuses anything else; bayes_opt
3.x's typed parameters make `tune.randint` an integer and `tune.choice` a categorical parameter
(recorded as the choice's index, so any value can be a choice). The rest is refused by key.

Duplicates (floats to `repeat_float_precision` decimals): a running trial's point waits (None)
until a result changes what the GP knows; an evaluated one is skipped and counted: after
`patience` repeats the GP has converged and the search ends (`Searcher.FINISHED`).

State: the optimizer (registered points, GP, and the numpy RandomState that the GP, the random
samples and the acquisition's optimizer share) goes into `get_state()` whole, so a restored run
suggests exactly what the uninterrupted one would.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections import Counter
from typing import Any

from rtune._values import is_number
from rtune.search.bayesopt.space import (
    EXPERIMENTAL,
    Converted,
    import_bayes_opt,
    shown,
    to_acquisition,
    to_pbounds,
)
from rtune.search.library_searcher import LibrarySearcher
from rtune.search.searcher import Searcher
from rtune.search.suggestions import merged


class BayesOptSearch(LibrarySearcher):
    """Ray Tune's `BayesOptSearch(space=None, metric=None, mode=None, points_to_evaluate=None,
    utility_kwargs=None, random_state=42, random_search_steps=10, verbose=0, patience=5,
    skip_duplicate=True, analysis=None, repeat_float_precision=5)`.

    `space`: a dict of rtune search-space primitives (nested dicts allowed) and/or bayes_opt
    bounds (`{"x": (0, 1)}`); None takes `param_space` from the Tuner. `utility_kwargs`: Ray's
    `{"kind": "ucb" | "ei" | "poi", "kappa": 2.576, "xi": 0.0}`. `analysis`: an earlier run's
    `ResultGrid` (or list of `Result`s), whose points the optimizer starts from."""

    def __init__(
        self,
        space: dict[str, Any] | None = None,
        metric: str | None = None,
        mode: str | None = None,
        points_to_evaluate: list[dict[str, Any]] | None = None,
        utility_kwargs: dict[str, Any] | None = None,
        random_state: Any = 42,
        random_search_steps: int = 10,
        verbose: int = 0,
        patience: int | None = 5,
        skip_duplicate: bool = True,
        analysis: Any = None,
        repeat_float_precision: int = 5,
    ) -> None:
        import_bayes_opt()
        super().__init__(metric=metric, mode=mode)
        steps = random_search_steps
        if not isinstance(steps, int) or steps < 0:
            raise ValueError(f"BayesOptSearch: random_search_steps must be an int >= 0: {steps!r}")
        if patience is not None and (not isinstance(patience, int) or patience < 1):
            raise ValueError(f"BayesOptSearch: patience must be an int >= 1: {patience!r}")
        self._acquisition = to_acquisition(utility_kwargs)
        self._random_state = int(random_state) if is_number(random_state) else random_state
        self._random_search_steps = steps
        self._verbose = verbose
        self._patience = patience
        self._skip_duplicate = bool(skip_duplicate)
        self._precision = repeat_float_precision  # decimals that tell floats apart, as Ray's
        self._analysis = analysis  # registered once the metric is known, then dropped
        self._given_points = [copy.deepcopy(p) for p in points_to_evaluate or []]
        self._points: list[tuple[dict, dict]] = []  # (the point, its flat params), to suggest
        self._space: Converted | None = None
        self._space_from_config = False  # taken from the Tuner's param_space
        self._optimizer: Any = None  # bayes_opt.BayesianOptimization, once metric and mode known
        self._live: dict[str, tuple[dict, tuple]] = {}  # trial id -> (params, their key)
        self._counts: Counter = Counter()  # how often each key was proposed
        self._changes = 0  # trials ended and points added: what may change the GP's proposal
        self._waiting: int | None = None  # _changes when the GP last proposed a live point
        self._finished = False
        if space is not None:
            self._set_space(space, bounds_allowed=True)
            if self._metric is not None and self._mode is not None:
                self._start()

    # ---- set-up ----

    def _set_space(self, space: Any, bounds_allowed: bool = True) -> None:
        if not isinstance(space, dict):
            raise TypeError(f"BayesOptSearch: space must be a dict, got {type(space).__name__}")
        self._space = to_pbounds(space, bounds_allowed)
        if not self._space.pbounds:
            raise ValueError(
                "BayesOptSearch has an empty search space: give it search parameters "
                "(tune.uniform(...), ...) in `space` or in the Tuner's param_space"
            )
        # refused now, naming the key, rather than mid-run
        self._points = [(p, self._encode(p, "a point to evaluate")) for p in self._given_points]

    def _set_space_from_config(self, config: dict[str, Any]) -> None:
        self._set_space(config, bounds_allowed=False)

    def _started(self) -> bool:
        return self._optimizer is not None

    def _start(self) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=EXPERIMENTAL)
            self._optimizer = import_bayes_opt().BayesianOptimization(
                f=None,
                pbounds=self._space.pbounds,
                acquisition_function=self._acquisition,
                random_state=self._random_state,
                verbose=self._verbose,
                allow_duplicate_points=False,  # True would print each duplicate to stdout
            )
        if self._analysis is not None:
            analysis, self._analysis = self._analysis, None
            self.add_evaluated_trials(analysis, self._metric)

    # ---- the loop ----

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        self._require_started("suggest")
        if self._finished:
            return Searcher.FINISHED
        point, from_model, opt = None, False, self._optimizer
        if self._points:
            point, params = self._points.pop(0)
        else:
            if self._waiting == self._changes:
                return None  # the GP knows nothing new: it would propose the live point again
            from_model = len(opt.space) >= self._random_search_steps
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=EXPERIMENTAL)
                raw = opt.suggest() if from_model else opt.random_sample()[0]
            params = {name: _plain(v) for name, v in raw.items()}
        key = _key(params, self._precision)
        if self._skip_duplicate and any(key == k for _, k in self._live.values()):
            if from_model:
                self._waiting = self._changes
            return None  # a running trial's point: its result comes first
        self._counts[key] += 1
        if self._patience is not None and self._counts[key] > self._patience:
            self._finished = True  # the GP proposes what it has evaluated: it has converged
            return Searcher.FINISHED
        if self._skip_duplicate and self._counts[key] > 1:
            return None
        self._live[trial_id] = (params, key)
        config = point if point is not None else self._nested(params)
        return merged(copy.deepcopy(self._space.constants), copy.deepcopy(config))

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        entry = self._live.pop(trial_id, None)
        if entry is None:
            return
        self._changes += 1
        if not error:
            self._register(entry[0], (result or {}).get(self._metric))

    def add_evaluated_point(
        self,
        parameters: dict[str, Any],
        value: float,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: list[float] | None = None,
    ) -> None:
        """Register a point evaluated elsewhere (an errored or pruned one teaches the GP
        nothing). `parameters` is a config as the trainable got it."""
        self._require_started("add_evaluated_point")
        if error or pruned:
            return
        self._changes += 1
        self._register(self._encode(parameters, "add_evaluated_point"), value)

    def _register(self, params: dict[str, Any], value: Any) -> None:
        if not is_number(value) or not math.isfinite(value):
            return  # ended without the metric (stopped early), or NaN: a GP cannot fit it
        target = float(value) if self._mode == "max" else -float(value)
        try:
            self._optimizer.register(params, target)
        except import_bayes_opt().exception.NotUniqueError:
            pass  # evaluated already: the first value stands (a GP cannot fit two at one x)

    # ---- configs and bayes_opt's parameters ----

    def _encode(self, config: dict[str, Any], what: str) -> dict[str, Any]:
        """A config's values as bayes_opt records them (a choice by its index)."""
        params = {}
        for name, path in self._space.paths.items():
            node: Any = config
            for key in path:
                if not isinstance(node, dict) or key not in node:
                    raise ValueError(
                        f"BayesOptSearch: {what} has no value for {shown(path)}, a parameter "
                        "of the search space"
                    )
                node = node[key]
            if name in self._space.choices:
                found = [i for i, c in enumerate(self._space.choices[name]) if _same(c, node)]
                if not found:
                    raise ValueError(
                        f"BayesOptSearch: {what} gives {shown(path)} = {node!r}, which is not "
                        "one of its choices"
                    )
                node = found[0]
            elif not hasattr(self._space.pbounds[name], "categories") and not is_number(node):
                raise ValueError(
                    f"BayesOptSearch: {what} gives {shown(path)} = {node!r}, not a number"
                )
            params[name] = node
        return params

    def _nested(self, params: dict[str, Any]) -> dict[str, Any]:
        config: dict[str, Any] = {}
        for name, value in params.items():
            if name in self._space.choices:
                value = self._space.choices[name][value]
            *parents, leaf = self._space.paths[name]
            node = config
            for key in parents:
                node = node.setdefault(key, {})
            node[leaf] = value
        return config

    @property
    def optimizer(self) -> Any:
        """bayes_opt's `BayesianOptimization`: every registered point (`res`, `max`; a choice
        recorded as its index) and the GP."""
        return self._optimizer


def _plain(value: Any) -> Any:
    """numpy scalars (bayes_opt's float parameters) as Python numbers, so configs stay JSON."""
    item = getattr(value, "item", None)
    return item() if callable(item) and type(value).__module__ == "numpy" else value


def _key(params: dict[str, Any], digits: int) -> tuple:
    """What tells suggestions apart: floats to `digits` decimals (the GP's argmax wanders in the
    last digits around a point it keeps proposing); ints and categories exactly."""

    def rounded(value: Any) -> Any:
        if isinstance(value, float):
            return round(value, digits) + 0.0  # + 0.0: -0.0 is 0.0
        return value if isinstance(value, int) else repr(value)

    return tuple(sorted((name, rounded(v)) for name, v in params.items()))


def _same(category: Any, value: Any) -> bool:
    """A point's value is this category (True is not the category 1)."""
    return isinstance(category, bool) == isinstance(value, bool) and category == value
