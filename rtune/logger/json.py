"""`JsonLoggerCallback`: `result.json` (one JSON object per result, config included) and
`params.pkl` (the trial's config, pickled) in each trial's directory, as Ray Tune's;
`params.json` is written by every trial itself."""

from __future__ import annotations

import json
from typing import Any

import cloudpickle

from rtune._durable.storage import encode_json
from rtune.logger._trial_files import TrialFile
from rtune.logger.logger import FileLogger, iteration_of

EXPR_PARAM_FILE = "params.json"
EXPR_PARAM_PICKLE_FILE = "params.pkl"
EXPR_RESULT_FILE = "result.json"


class JsonLoggerCallback(FileLogger):
    """Each `training_iteration` once in `result.json`, after any number of restores."""

    def _file(self, trial: Any) -> TrialFile:
        return _JsonLines(trial.storage, EXPR_RESULT_FILE)

    def log_trial_start(self, trial: Any) -> None:
        self._write_params(trial)
        super().log_trial_start(trial)

    def log_trial_restore(self, trial: Any) -> None:
        self._write_params(trial)  # an exploit brings a new config
        super().log_trial_restore(trial)

    @staticmethod
    def _write_params(trial: Any) -> None:
        """params.pkl; params.json is the trial's own (its actor writes it as it starts)."""
        try:
            trial.storage.write_atomic(EXPR_PARAM_PICKLE_FILE, cloudpickle.dumps(trial.config))
        except Exception:  # a config that does not pickle: params.json has what it can
            pass


class _JsonLines(TrialFile):
    def encode(self, result: dict) -> bytes:
        return encode_json(result) + b"\n"

    def decode(self, data: bytes) -> tuple[bytes, list[tuple[int, bytes]]]:
        rows = []
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break  # cut short by a crash
            try:
                step = iteration_of(json.loads(line))
            except ValueError:
                continue
            if step is not None:
                rows.append((step, line))
        return b"", rows
