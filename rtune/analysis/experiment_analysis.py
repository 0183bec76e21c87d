"""`ExperimentAnalysis`: Ray Tune's read-only view of a finished (or stopped) experiment, on any
rtune experiment path, local or a URI, without Ray.

It reads the experiment state and the trials' histories through the same readers as a restore,
and answers with Ray Tune's names: `best_trial`, `best_config`, `best_checkpoint`, `dataframe()`,
`trial_dataframes`, `get_best_trial`, ... The trials it hands out are `TrialSnapshot`s, with Ray
Tune's documented `Trial` fields. What is best is `ResultGrid.get_best_result`'s answer, so both
agree.
"""

from __future__ import annotations

import os
from typing import Any

from rtune._durable import state as state_io
from rtune._durable.restore import open_experiment
from rtune._durable.trial import Trial
from rtune._durable.trial_snapshot import TrialSnapshot
from rtune.checkpoint import Checkpoint
from rtune.result_grid import Result, ResultGrid


class ExperimentAnalysis:
    def __init__(
        self,
        experiment_checkpoint_path: str | os.PathLike,
        *,
        storage_filesystem: Any = None,
        trials: list | None = None,
        default_metric: str | None = None,
        default_mode: str | None = None,
    ):
        if default_mode not in (None, "min", "max"):
            raise ValueError(f"default_mode must be 'min', 'max' or None, got {default_mode!r}")
        storage = open_experiment(experiment_checkpoint_path, storage_filesystem)
        state, problems = state_io.read_state(storage)
        if state is None and problems:
            raise ValueError(
                f"Cannot read the experiment at {storage.uri()}: {'; '.join(problems)}"
            )
        records = [Trial.from_state(t) for t in (state or {}).get("trials", [])]
        if trials is not None:  # Ray Tune's: only these (trial objects or ids)
            wanted = {getattr(t, "trial_id", t) for t in trials}
            records = [r for r in records if r.trial_id in wanted]
        self.default_metric = default_metric
        self.default_mode = default_mode
        self._storage = storage
        self._grid = ResultGrid(records, storage, default_metric, default_mode)
        self._results = {result.trial_id: result for result in self._grid}
        self.trials = [TrialSnapshot.of(record, storage) for record in records]
        self._by_id = {trial.trial_id: trial for trial in self.trials}

    @property
    def experiment_path(self) -> str:
        return self._storage.uri()

    # ---- the best trial ----

    def get_best_trial(
        self,
        metric: str | None = None,
        mode: str | None = None,
        scope: str = "last",
        filter_nan_and_inf: bool = True,
    ) -> TrialSnapshot | None:
        """The best trial by `metric` (its last result, or over its results with `scope` "all",
        "avg", "last-5-avg", "last-10-avg"); None when no trial reported a finite value."""
        try:
            best = self._grid.get_best_result(metric, mode, scope, filter_nan_and_inf)
        except RuntimeError:  # no trial has a value to compare
            return None
        return self._by_id[best.trial_id]

    def get_best_config(
        self, metric: str | None = None, mode: str | None = None, scope: str = "last"
    ) -> dict | None:
        best = self.get_best_trial(metric, mode, scope)
        return best.config if best is not None else None

    def get_best_checkpoint(
        self, trial: Any, metric: str | None = None, mode: str | None = None
    ) -> Checkpoint | None:
        """Of the trial's committed checkpoints, the one reported with the best `metric`."""
        metric, mode = self._metric_and_mode(metric, mode)
        scored = [
            (value, checkpoint)
            for checkpoint, value in self.get_trial_checkpoints_paths(trial, metric)
            if isinstance(value, (int, float))
        ]
        if not scored:
            return None
        pick = min if mode == "min" else max
        return Checkpoint(pick(scored, key=lambda pair: pair[0])[1], self._storage.filesystem)

    def get_trial_checkpoints_paths(self, trial: Any, metric: str | None = None) -> list:
        """[(checkpoint path, the value of `metric` in the result it came with)] of the trial's
        committed checkpoints, oldest first."""
        metric = metric or self.default_metric
        result = self._result_of(trial)
        return [
            (checkpoint.path, metrics.get(metric) if metric else None)
            for checkpoint, metrics in result.best_checkpoints
        ]

    @property
    def best_trial(self) -> TrialSnapshot | None:
        return self.get_best_trial(*self._metric_and_mode(None, None))

    @property
    def best_config(self) -> dict | None:
        return self.get_best_config(*self._metric_and_mode(None, None))

    @property
    def best_checkpoint(self) -> Checkpoint | None:
        best = self.best_trial
        return self.get_best_checkpoint(best) if best is not None else None

    @property
    def best_result(self) -> dict | None:
        best = self.best_trial
        return dict(best.last_result) if best is not None else None

    @property
    def best_dataframe(self) -> Any:
        best = self.best_trial
        return self._result_of(best).metrics_dataframe if best is not None else None

    @property
    def best_result_df(self) -> Any:
        import pandas as pd

        best = self.best_result
        return pd.DataFrame([best]).set_index("trial_id") if best else pd.DataFrame()

    # ---- every trial ----

    @property
    def results(self) -> dict[str, dict]:
        """{trial id: its last result}."""
        return {trial.trial_id: dict(trial.last_result) for trial in self.trials}

    @property
    def results_df(self) -> Any:
        """One row per trial (its last result), indexed by trial id."""
        frame = self._grid.get_dataframe()
        return frame.set_index("trial_id") if not frame.empty else frame

    def dataframe(self, metric: str | None = None, mode: str | None = None) -> Any:
        """One row per trial: its last result, or with `metric` and `mode` its best one."""
        return self._grid.get_dataframe(metric, mode)

    @property
    def trial_dataframes(self) -> dict[str, Any]:
        """{trial id: every result of the trial, one row per training_iteration}."""
        return {trial_id: result.metrics_dataframe for trial_id, result in self._results.items()}

    def fetch_trial_dataframes(self) -> dict[str, Any]:
        return self.trial_dataframes

    def get_all_configs(self, prefix: bool = False) -> dict[str, dict]:
        return {trial.trial_id: trial.config for trial in self.trials}

    # ----

    def _result_of(self, trial: Any) -> Result:
        trial_id = getattr(trial, "trial_id", trial)
        if trial_id not in self._results:
            raise ValueError(f"trial {trial_id!r} is not part of {self.experiment_path}")
        return self._results[trial_id]

    def _metric_and_mode(self, metric: str | None, mode: str | None) -> tuple[str, str]:
        metric, mode = metric or self.default_metric, mode or self.default_mode
        if not metric or not mode:
            raise ValueError(
                "ExperimentAnalysis needs a metric and a mode: pass them, or default_metric and "
                "default_mode (tune.run takes them from its metric and mode)"
            )
        return metric, mode

    def __repr__(self) -> str:
        return f"ExperimentAnalysis<{len(self.trials)} trials at {self.experiment_path}>"
