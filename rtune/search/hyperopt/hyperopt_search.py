"""`HyperOptSearch`: Ray Tune's HyperOptSearch on real HyperOpt (TPE), its trials stored exactly.

Each suggestion is one `tpe.suggest` over HyperOpt's `Trials` (random for the first
`n_initial_points`), seeded from the searcher's own generator; a trial's end writes its loss
(the metric, negated for `mode="max"`) into its HyperOpt trial document, which is what TPE learns
from. HyperOpt has no intermediate values, so results before the end are not passed on.

State: the `Trials`, the seed generator and the queue of points to evaluate go into
`get_state()`, written with the trials they created, so a restored run suggests exactly what the
uninterrupted one would. HyperOpt's `Domain` is rebuilt from the space rather than stored.
"""

from __future__ import annotations

import copy
from typing import Any

from rtune._values import is_number
from rtune.search.hyperopt.space import to_hyperopt, to_labels
from rtune.search.library_searcher import LibrarySearcher
from rtune.search.suggestions import merged


def _hyperopt() -> Any:
    try:
        import hyperopt
    except ImportError as exc:
        raise ImportError(
            "HyperOptSearch needs HyperOpt, an optional extra: pip install 'rtune[hyperopt]'"
        ) from exc
    return hyperopt


class HyperOptSearch(LibrarySearcher):
    """Ray Tune's `HyperOptSearch(space=None, metric=None, mode=None, points_to_evaluate=None,
    n_initial_points=20, random_state_seed=None, gamma=0.25)`.

    `space`: a dict of rtune search-space primitives and/or HyperOpt `hp.*` expressions (nested
    dicts and conditional `hp.choice`s allowed); None takes `param_space` from the Tuner.
    `points_to_evaluate`: configs tried first, in order, as the trainable would get them.
    `n_initial_points` random suggestions come before TPE models the results; `gamma` is TPE's
    quantile of good trials."""

    def __init__(
        self,
        space: dict[str, Any] | None = None,
        metric: str | None = None,
        mode: str | None = None,
        points_to_evaluate: list[dict[str, Any]] | None = None,
        n_initial_points: int = 20,
        random_state_seed: int | None = None,
        gamma: float = 0.25,
    ) -> None:
        _hyperopt()
        import numpy as np

        super().__init__(metric=metric, mode=mode)
        if not isinstance(n_initial_points, int) or n_initial_points < 0:
            raise ValueError(
                f"HyperOptSearch: n_initial_points must be an int >= 0, got {n_initial_points!r}"
            )
        if not is_number(gamma) or not 0 < gamma < 1:
            raise ValueError(f"HyperOptSearch: gamma must be in (0, 1), got {gamma!r}")
        self._points = [copy.deepcopy(p) for p in points_to_evaluate or []]
        self._n_initial_points = n_initial_points
        self._gamma = float(gamma)
        self._rng = np.random.default_rng(random_state_seed)
        self._space: dict[str, Any] | None = None  # what HyperOpt samples, nested
        self._space_from_config = False  # taken from the Tuner's param_space
        self._constants: dict[str, Any] = {}
        self._trials: Any = None  # hyperopt.Trials, once the metric and mode are known
        self._live: dict[str, int] = {}  # rtune trial id -> HyperOpt tid, until it ends
        self._domain: Any = None  # rebuilt from the space: never stored
        if space is not None:
            self._set_space(space)
            if self._metric is not None and self._mode is not None:
                self._start()

    # ---- set-up ----

    def _set_space(self, space: Any) -> None:
        if not isinstance(space, dict):
            raise TypeError(
                f"HyperOptSearch: space must be a dict (of hp.* expressions or tune.* "
                f"parameters), got {type(space).__name__}"
            )
        self._space, self._constants = to_hyperopt(space)
        if not self._space:
            raise ValueError(
                "HyperOptSearch has an empty search space: give it search parameters "
                "(tune.uniform(...), hp.uniform(...), ...) in `space` or in the Tuner's param_space"
            )
        for point in self._points:  # refused now, naming the key, rather than mid-run
            to_labels(self._space, point)

    def _started(self) -> bool:
        return self._trials is not None

    def _start(self) -> None:
        self._trials = _hyperopt().Trials()

    def _hyperopt_domain(self) -> Any:
        if self._domain is None:
            hyperopt = _hyperopt()
            try:
                self._domain = hyperopt.Domain(lambda spc: spc, self._space)
            except hyperopt.exceptions.DuplicateLabel as exc:
                raise ValueError(
                    f"HyperOptSearch: two parameters of the space have the label {exc} (an "
                    "hp.* label must be unique; rtune's own parameters are labelled by path)"
                ) from exc
        return self._domain

    # ---- the loop ----

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        self._require_started("suggest")
        hyperopt = _hyperopt()
        domain = self._hyperopt_domain()
        trials = self._trials
        (tid,) = trials.new_trial_ids(1)
        trials.refresh()
        if self._points:
            docs = [self._document(tid, to_labels(self._space, self._points.pop(0)))]
        else:
            seed = int(self._rng.integers(2**31 - 1))
            docs = hyperopt.tpe.suggest(
                [tid],
                domain,
                trials,
                seed,
                n_startup_jobs=self._n_initial_points,
                gamma=self._gamma,
                verbose=False,
            )
            if not docs:
                return None
        trials.insert_trial_docs(docs)
        trials.refresh()
        vals = {label: v[0] for label, v in docs[0]["misc"]["vals"].items() if v}
        sampled = _plain(hyperopt.space_eval(self._space, vals))
        self._live[trial_id] = tid
        return merged(copy.deepcopy(self._constants), copy.deepcopy(sampled))

    def _document(
        self, tid: int, labels: dict[str, Any], result: dict | None = None
    ) -> dict[str, Any]:
        """A HyperOpt trial document recording `labels` (a point given, not sampled)."""
        domain = self._hyperopt_domain()
        misc = {
            "tid": tid,
            "cmd": domain.cmd,
            "workdir": domain.workdir,
            "idxs": {label: [tid] if label in labels else [] for label in domain.params},
            "vals": {label: [labels[label]] if label in labels else [] for label in domain.params},
        }
        return self._trials.new_trial_docs([tid], [None], [result or domain.new_result()], [misc])[
            0
        ]

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        tid = self._live.pop(trial_id, None)
        if tid is None:
            return
        doc = next(t for t in reversed(self._trials.trials) if t["tid"] == tid)
        self._finish(doc, result, error)
        self._trials.refresh()

    def _finish(self, doc: dict[str, Any], result: dict[str, Any] | None, error: bool) -> None:
        hyperopt = _hyperopt()
        value = (result or {}).get(self._metric)
        if error:
            doc["state"] = hyperopt.JOB_STATE_ERROR
            doc["misc"]["error"] = ("TrialError", "the trial ended in an error")
            return
        doc["state"] = hyperopt.JOB_STATE_DONE
        if is_number(value) and value == value:  # NaN teaches TPE nothing
            loss = float(value) if self._mode == "min" else -float(value)
            doc["result"] = {"loss": loss, "status": hyperopt.STATUS_OK}
        else:  # ended without the metric (stopped early): not a point TPE learns from
            doc["result"] = {"status": hyperopt.STATUS_FAIL}

    def add_evaluated_point(
        self,
        parameters: dict[str, Any],
        value: float,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: list[float] | None = None,
    ) -> None:
        """Record a point evaluated elsewhere, as if this searcher had suggested it (a pruned
        one counts as ended without the metric)."""
        self._require_started("add_evaluated_point")
        (tid,) = self._trials.new_trial_ids(1)
        doc = self._document(tid, to_labels(self._space, parameters))
        self._finish(doc, None if pruned else {self._metric: value}, error)
        self._trials.insert_trial_docs([doc])
        self._trials.refresh()

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        state["_domain"] = None
        return state

    @property
    def trials(self) -> Any:
        """HyperOpt's `Trials` (after the run, holding every trial and its loss)."""
        return self._trials


def _plain(value: Any) -> Any:
    """numpy scalars (as HyperOpt samples them) as Python numbers, so configs stay JSON."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    item = getattr(value, "item", None)
    return item() if callable(item) and type(value).__module__ == "numpy" else value
