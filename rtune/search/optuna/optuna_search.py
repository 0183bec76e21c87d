"""`OptunaSearch`: Ray Tune's OptunaSearch on real Optuna, with its study stored exactly.

Each suggestion is an Optuna ask: over the space's distributions (define-and-run), or by calling
the user's define-by-run function on the Optuna trial. Intermediate results are reported to the
Optuna trial (`trial.report(value, step=training_iteration)`), so the study holds every curve for
Optuna's pruners and visualisations; a trial's end is a tell (COMPLETE with its value; FAIL when
it errored; PRUNED when it ended without the metric, e.g. stopped early by a scheduler).

State: the study itself (with its sampler, whose random state makes the next suggestions) and the
asked Optuna trials by rtune trial id go into `get_state()`, written with the trials they created,
so a restored run asks and tells exactly as the uninterrupted one would. With `storage=...` the
study lives in that Optuna storage (a journal file, an RDB URL) and is yours to open with
`optuna-dashboard` or `optuna.load_study` after the run.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from rtune._values import is_number
from rtune.search.library_searcher import LibrarySearcher
from rtune.search.optuna.space import flatten, to_distributions, unflatten
from rtune.search.suggestions import merged

_DIRECTIONS = {"min": "minimize", "max": "maximize"}


def _optuna() -> Any:
    try:
        import optuna
    except ImportError as exc:
        raise ImportError(
            "OptunaSearch needs Optuna, an optional extra: pip install 'rtune[optuna]'"
        ) from exc
    return optuna


class OptunaSearch(LibrarySearcher):
    """Ray Tune's `OptunaSearch(space=None, metric=None, mode=None, points_to_evaluate=None,
    sampler=None, study_name=None, storage=None, seed=None, evaluated_rewards=None)`.

    `space`: a dict of rtune search-space primitives (nested dicts allowed), a dict of Optuna
    distributions by name, or a define-by-run function `f(optuna_trial)` that suggests values
    on the trial and may return a dict of constants; None takes `param_space` from the Tuner.
    `metric` and `mode` may be lists, for a multi-objective study. `sampler` defaults to
    `TPESampler(seed=seed)`."""

    def __init__(
        self,
        space: dict[str, Any] | Callable[[Any], dict | None] | None = None,
        metric: str | list[str] | None = None,
        mode: str | list[str] | None = None,
        points_to_evaluate: list[dict[str, Any]] | None = None,
        sampler: Any = None,
        study_name: str | None = None,
        storage: Any = None,
        seed: int | None = None,
        evaluated_rewards: list | None = None,
    ) -> None:
        optuna = _optuna()
        single = None if isinstance(mode, list) else mode
        super().__init__(metric=None, mode=single)
        self._metric, self._mode = metric, mode
        _check_objectives(metric, mode)
        if sampler is not None and not isinstance(sampler, optuna.samplers.BaseSampler):
            raise TypeError(
                f"OptunaSearch: sampler must be an optuna sampler, got {type(sampler).__name__}"
            )
        if evaluated_rewards is not None and len(evaluated_rewards) != len(
            points_to_evaluate or []
        ):
            raise ValueError(
                "OptunaSearch: evaluated_rewards needs one reward per point of "
                f"points_to_evaluate ({len(evaluated_rewards)} rewards, "
                f"{len(points_to_evaluate or [])} points)"
            )
        self._points = [copy.deepcopy(p) for p in points_to_evaluate or []]
        self._rewards = list(evaluated_rewards) if evaluated_rewards is not None else None
        self._sampler = sampler if sampler is not None else optuna.samplers.TPESampler(seed=seed)
        self._study_name = study_name
        self._storage = storage
        self._space: Any = None  # distributions by flat name, or the define-by-run function
        self._space_from_config = False  # taken from the Tuner's param_space
        self._constants: dict[str, Any] = {}
        self._study: Any = None
        self._asked: dict[str, Any] = {}  # rtune trial id -> its Optuna trial, until told
        self._experiment: str | None = None
        if space is not None:
            self._set_space(space)
            if self._metric is not None and self._mode is not None:
                self._start()

    # ---- set-up ----

    def _set_space(self, space: Any) -> None:
        if callable(space):
            self._space = space
        elif isinstance(space, dict):
            self._space, self._constants = to_distributions(space)
            if not self._space:
                raise ValueError(
                    "OptunaSearch has an empty search space: give it search parameters "
                    "(tune.uniform(...), ...) in `space` or in the Tuner's param_space"
                )
        else:
            raise TypeError(
                "OptunaSearch: space must be a dict or a define-by-run function, got "
                f"{type(space).__name__}"
            )

    def _check_properties(self) -> None:
        _check_objectives(self._metric, self._mode)

    def _started(self) -> bool:
        return self._study is not None

    def _start(self) -> None:
        optuna = _optuna()
        modes = self._mode if isinstance(self._mode, list) else [self._mode]
        self._study = optuna.create_study(
            storage=self._storage,
            sampler=self._sampler,
            pruner=optuna.pruners.NopPruner(),
            study_name=self._study_name,
            directions=[_DIRECTIONS[m] for m in modes],
            load_if_exists=True,
        )
        if self._rewards is not None:
            if callable(self._space):
                raise ValueError(
                    "OptunaSearch: evaluated_rewards need a dict space (a define-by-run "
                    "function has no distributions to record the points with)"
                )
            for point, reward in zip(self._points, self._rewards):
                self.add_evaluated_point(point, reward)
        else:
            for point in self._points:
                self._study.enqueue_trial(flatten(point))

    # ---- the loop ----

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        self._require_started("suggest")
        if callable(self._space):
            ot_trial = self._study.ask()
            returned = self._space(ot_trial)
            config = unflatten(ot_trial.params)
            if returned:
                if not isinstance(returned, dict):
                    raise TypeError(
                        "OptunaSearch: a define-by-run function returns None or a dict of "
                        f"constants, got {type(returned).__name__}"
                    )
                config = merged(config, returned)
        else:
            ot_trial = self._study.ask(fixed_distributions=self._space)
            config = merged(copy.deepcopy(self._constants), unflatten(ot_trial.params))
        # which experiment asked (a trial id is "<experiment uid>_<index>"): a restore fails
        # only its own lost asks in a study that others may share
        self._experiment = trial_id.rsplit("_", 1)[0]
        ot_trial.set_user_attr("rtune_experiment", self._experiment)
        ot_trial.set_user_attr("rtune_trial_id", trial_id)
        self._asked[trial_id] = ot_trial
        return config

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if isinstance(self._metric, list):
            return  # Optuna takes intermediate values for single-objective studies only
        ot_trial = self._asked.get(trial_id)
        value = result.get(self._metric)
        step = result.get("training_iteration")
        if ot_trial is not None and is_number(value) and isinstance(step, int):
            ot_trial.report(float(value), step)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        ot_trial = self._asked.pop(trial_id, None)
        if ot_trial is None:
            return
        state = _optuna().trial.TrialState
        values = self._values_of(result)
        if error:
            self._study.tell(ot_trial, state=state.FAIL)
        elif values is None:
            self._study.tell(ot_trial, state=state.PRUNED)
        else:
            self._study.tell(ot_trial, values)

    def _values_of(self, result: dict[str, Any] | None) -> float | list[float] | None:
        metrics = self._metric if isinstance(self._metric, list) else [self._metric]
        found = [(result or {}).get(m) for m in metrics]
        if not all(is_number(v) for v in found):
            return None
        return [float(v) for v in found] if isinstance(self._metric, list) else float(found[0])

    def add_evaluated_point(
        self,
        parameters: dict[str, Any],
        value: float | list[float],
        error: bool = False,
        pruned: bool = False,
        intermediate_values: list[float] | None = None,
    ) -> None:
        """Record a point evaluated elsewhere in the study (dict spaces only)."""
        optuna = _optuna()
        if callable(self._space) or self._space is None:
            raise ValueError(
                "OptunaSearch.add_evaluated_point needs a dict space (a define-by-run function "
                "has no distributions to record the point with)"
            )
        flat = flatten(parameters)
        state = optuna.trial.TrialState
        kind = state.FAIL if error else state.PRUNED if pruned else state.COMPLETE
        values = None
        if kind == state.COMPLETE:
            values = list(value) if isinstance(value, (list, tuple)) else [value]
        self._study.add_trial(
            optuna.trial.create_trial(
                state=kind,
                values=values,
                params={k: flat[k] for k in self._space if k in flat},
                distributions={k: d for k, d in self._space.items() if k in flat},
                intermediate_values=dict(enumerate(intermediate_values or [], start=1)),
            )
        )

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self._fail_lost_asks()

    def _fail_lost_asks(self) -> None:
        """In a storage of the user's (a journal, an RDB), trials asked after the experiment's
        last state write (then `kill -9`) are RUNNING there and no rtune trial will tell them:
        they are marked FAIL, so the study shows them as what they are. Only this experiment's:
        a study may be shared."""
        if self._study is None or self._storage is None or self._experiment is None:
            return
        running = _optuna().trial.TrialState.RUNNING
        ours = {t.number for t in self._asked.values()}
        for trial in self._study.get_trials(deepcopy=False, states=(running,)):
            lost = trial.user_attrs.get("rtune_experiment") == self._experiment
            if lost and trial.number not in ours:
                self._study.tell(trial.number, state=_optuna().trial.TrialState.FAIL)

    @property
    def metric(self) -> Any:
        return self._metric

    @property
    def mode(self) -> Any:
        return self._mode

    @property
    def study(self) -> Any:
        """The Optuna study (after the run, holding every trial and intermediate value)."""
        return self._study


def _check_objectives(metric: Any, mode: Any) -> None:
    for name, value in (("metric", metric), ("mode", mode)):
        if isinstance(value, list) and not value:
            raise ValueError(f"OptunaSearch: {name} is an empty list")
    modes = mode if isinstance(mode, list) else [mode]
    for m in modes:
        if m not in (None, "min", "max"):
            raise ValueError(f"OptunaSearch: mode must be 'min' or 'max' (or a list), got {m!r}")
    if isinstance(metric, list) != isinstance(mode, list) and None not in (metric, mode):
        raise ValueError("OptunaSearch: metric and mode must both be lists or both not")
    if isinstance(metric, list) and isinstance(mode, list) and len(metric) != len(mode):
        raise ValueError(
            f"OptunaSearch: {len(metric)} metrics and {len(mode)} modes: one mode per metric"
        )
