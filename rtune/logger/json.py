"""`JsonLoggerCallback`: `result.json` (one JSON object per result, config included) in each
trial's directory, as Ray Tune's; `params.json` is written by every trial itself. (Ray Tune's
`params.pkl` is not written: a pickle per trial cost a tenth of a trivial trial.)"""

from __future__ import annotations

import json
from typing import Any

from rtune._durable.storage import encode_json
from rtune.logger._trial_files import TrialFile
from rtune.logger.logger import FileLogger, iteration_of

EXPR_RESULT_FILE = "result.json"


class JsonLoggerCallback(FileLogger):
    """Each `training_iteration` once in `result.json`, after any number of restores."""

    def _file(self, trial: Any) -> TrialFile:
        return _JsonLines(trial.storage, EXPR_RESULT_FILE)


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
