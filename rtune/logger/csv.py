"""`CSVLoggerCallback`: `progress.csv` in each trial's directory, as Ray Tune's: one row per
result, nested keys as `a/b`, the columns of the trial's first result (later keys dropped)."""

from __future__ import annotations

import csv
import io
from typing import Any

from rtune._durable.history import flatten
from rtune.logger._trial_files import TrialFile
from rtune.logger.logger import FileLogger

EXPR_PROGRESS_FILE = "progress.csv"


class CSVLoggerCallback(FileLogger):
    """Each `training_iteration` once in `progress.csv`, after any number of restores."""

    def _file(self, trial: Any) -> TrialFile:
        return _CsvRows(trial.storage, EXPR_PROGRESS_FILE)


class _CsvRows(TrialFile):
    def __init__(self, storage: Any, name: str):
        super().__init__(storage, name)
        self.fields: list[str] = []
        self._out = io.StringIO()
        self._writer: csv.DictWriter | None = None

    def header(self, result: dict) -> bytes:
        self.fields = list(_row(result))
        return self._line(dict(zip(self.fields, self.fields)))

    def encode(self, result: dict) -> bytes:
        return self._line(_row(result))

    def decode(self, data: bytes) -> tuple[bytes, list[tuple[int, bytes]]]:
        lines = data.decode().splitlines(keepends=True)
        if not lines or not lines[0].endswith("\n"):
            return b"", []
        self.fields = next(csv.reader([lines[0]]))
        rows = []
        at = self.fields.index("training_iteration") if "training_iteration" in self.fields else -1
        for line in lines[1:]:
            if not line.endswith("\n"):
                break  # cut short by a crash
            values = next(csv.reader([line]), [])
            try:
                step = int(values[at]) if at >= 0 else None
            except (ValueError, IndexError):
                step = None
            if step is not None:
                rows.append((step, line.encode()))
        return lines[0].encode(), rows

    def _line(self, row: dict) -> bytes:
        if self._writer is None or self._writer.fieldnames is not self.fields:
            self._writer = csv.DictWriter(
                self._out, self.fields, extrasaction="ignore", lineterminator="\n"
            )
        self._out.seek(0)
        self._out.truncate()
        self._writer.writerow(row)
        return self._out.getvalue().encode()


def _row(result: dict) -> dict[str, Any]:
    return flatten({key: value for key, value in result.items() if key != "config"})
