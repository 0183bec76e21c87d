"""`ResultGrid` and `Result`: what `fit()` returns, read from the experiment in storage.

Per-trial histories and checkpoints are read lazily, so opening the results of a large remote
experiment downloads only what is asked for.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from rtune._durable import checkpoints as retention
from rtune._durable.history import flatten, read_history
from rtune._durable.storage import Storage
from rtune._durable.trial import ERROR, TERMINATED, Trial
from rtune.checkpoint import Checkpoint

_SCOPES = ("last", "avg", "last-5-avg", "last-10-avg", "all")


class TrialError(RuntimeError):
    """A trial's failure, carrying the traceback rtune saved in its error.txt."""

    def __init__(self, trial_name: str, error: str):
        super().__init__(f"Trial {trial_name} failed:\n{error}")
        self.trial_name = trial_name
        self.traceback = error

    def __reduce__(self):
        return (TrialError, (self.trial_name, self.traceback))


class Result:
    def __init__(self, trial: Trial, storage: Storage, checkpoint_config: Any = None):
        self._trial = trial
        self._checkpoint_config = checkpoint_config
        self._storage = storage
        self.config = trial.config
        self.metrics = {**trial.last_result, "config": trial.config} if trial.last_result else {}
        self.path = storage.uri(trial.relpath)
        self.filesystem = storage.filesystem
        self.error = (
            TrialError(trial.trial_name, trial.error or "") if trial.status == ERROR else None
        )
        self._dataframe: Any = None
        self._history: dict | None = None
        self._best: list | None = None

    @property
    def trial_id(self) -> str:
        return self._trial.trial_id

    @property
    def status(self) -> str:
        return self._trial.status

    def _checkpoint(self, entry: dict | None) -> Checkpoint | None:
        if entry is None:
            return None
        return Checkpoint(self._storage.path(entry["path"]), self._storage.filesystem)

    @property
    def checkpoint(self) -> Checkpoint | None:
        return self._checkpoint(self._trial.latest_checkpoint)

    @property
    def best_checkpoints(self) -> list[tuple[Checkpoint, dict]]:
        """The best checkpoints by the run's CheckpointConfig, worst of them first (Ray Tune's
        order), each with the metrics of the result it was reported with. The latest checkpoint is
        kept in storage to resume from but listed here only if it is among the best. The metrics
        are read from the trial's result history when first asked for, not kept in the state."""
        entries = self._trial.committed_checkpoints
        if self._checkpoint_config is not None:
            entries = retention.best(entries, self._checkpoint_config)
        if self._best is None:
            self._best = [(self._checkpoint(e), self._metrics_at(e)) for e in entries]
        return self._best

    def _metrics_at(self, entry: dict) -> dict:
        if self._history is None:
            table = read_history(self._storage, self._trial.relpath)
            rows = table.to_pylist() if table is not None else []
            self._history = {row.get("training_iteration"): row for row in rows}
        row = self._history.get(entry["training_iteration"])
        if row is None:  # its history row is lost: what the state knows (the score)
            return dict(entry.get("metrics", {}))
        return {k: v for k, v in row.items() if v is not None}

    @property
    def metrics_dataframe(self) -> Any:
        """Every result of the trial, one row per training_iteration, oldest first."""
        if self._dataframe is None:
            table = read_history(self._storage, self._trial.relpath)
            if table is None:
                import pandas as pd

                self._dataframe = pd.DataFrame()
            else:
                self._dataframe = table.to_pandas()
        return self._dataframe

    def __repr__(self) -> str:
        shown = {k: v for k, v in self.metrics.items() if k != "config"}
        return f"Result(metrics={shown}, path={self.path!r}, error={bool(self.error)})"


class ResultGrid:
    def __init__(
        self,
        trials: list[Trial],
        storage: Storage,
        metric: str | None = None,
        mode: str | None = None,
        checkpoint_config: Any = None,
    ):
        self._storage = storage
        self._metric = metric
        self._mode = mode
        self._results = [Result(trial, storage, checkpoint_config) for trial in trials]

    @property
    def experiment_path(self) -> str:
        return self._storage.uri()

    @property
    def filesystem(self) -> Any:
        return self._storage.filesystem

    def __len__(self) -> int:
        return len(self._results)

    def __getitem__(self, index: int) -> Result:
        return self._results[index]

    def __iter__(self) -> Iterator[Result]:
        return iter(self._results)

    @property
    def errors(self) -> list[TrialError]:
        return [r.error for r in self._results if r.error is not None]

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    @property
    def num_terminated(self) -> int:
        return sum(1 for r in self._results if r.status == TERMINATED)

    def get_best_result(
        self,
        metric: str | None = None,
        mode: str | None = None,
        scope: str = "last",
        filter_nan_and_inf: bool = True,
    ) -> Result:
        metric = metric or self._metric
        mode = mode or self._mode
        if mode is not None and mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if not metric or not mode:
            if len(self._results) == 1:  # as Ray Tune: the only trial is the best one
                return self._results[0]
            raise ValueError(
                "get_best_result needs a metric and a mode: pass them here or set "
                "TuneConfig(metric=..., mode=...)"
            )
        if scope not in _SCOPES:
            raise ValueError(f"scope must be one of {_SCOPES}, got {scope!r}")
        scored = []
        for result in self._results:
            value = self._score(result, metric, mode, scope)
            if value is None or (filter_nan_and_inf and not math.isfinite(value)):
                continue
            scored.append((value, result))
        if not scored:
            raise RuntimeError(
                f"No trial reported a finite value of {metric!r}; cannot pick a best result. "
                f"Trials: {len(self._results)}, errors: {self.num_errors}."
            )
        pick = min if mode == "min" else max
        return pick(scored, key=lambda pair: pair[0])[1]

    @staticmethod
    def _score(result: Result, metric: str, mode: str, scope: str) -> float | None:
        if scope == "last":
            value = flatten(result.metrics).get(metric)
            return float(value) if isinstance(value, (int, float)) else None
        frame = result.metrics_dataframe
        if metric not in getattr(frame, "columns", []):
            return None
        series = frame[metric].dropna()
        if series.empty:
            return None
        if scope == "all":
            return float(series.min() if mode == "min" else series.max())
        window = {"avg": len(series), "last-5-avg": 5, "last-10-avg": 10}[scope]
        return float(series.tail(window).mean())

    def get_dataframe(self, filter_metric: str | None = None, filter_mode: str | None = None):
        """One row per trial: its last result (or best by `filter_metric`), with config/ columns."""
        import pandas as pd

        rows = []
        for result in self._results:
            metrics = {k: v for k, v in result.metrics.items() if k != "config"}
            if filter_metric and filter_mode:
                frame = result.metrics_dataframe
                if filter_metric in getattr(frame, "columns", []) and not frame.empty:
                    index = (
                        frame[filter_metric].idxmin()
                        if filter_mode == "min"
                        else frame[filter_metric].idxmax()
                    )
                    metrics = frame.loc[index].to_dict()
            row = flatten(metrics)
            row.update({f"config/{k}": v for k, v in flatten(result.config).items()})
            row["trial_id"] = result.trial_id
            row["logdir"] = result.path
            rows.append(row)
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        return f"ResultGrid<{len(self)} trials at {self.experiment_path}>"
