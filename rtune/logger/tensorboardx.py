"""`TBXLoggerCallback`: TensorBoard event files in each trial's directory through tensorboardX,
as Ray Tune's: every number a result holds as the scalar `ray/tune/<key>` at step
`training_iteration`, and the trial's config and last metrics as hparams when it ends.

Event files only grow, so a trial resumed at iteration k (a restore, a retry, an exploit) opens
a new one with TensorBoard's `purge_step` at k+1: TensorBoard's reader drops what the older files
hold from k+1 on, and `tensorboard --logdir <experiment>` shows each iteration once. On storage
that is not a local or network disk the files are written in a local directory and copied to
the trial's directory whole at each flush.
"""

from __future__ import annotations

import math
import os
import socket
import tempfile
import time
from typing import Any

from rtune._durable.history import flatten
from rtune.logger.logger import LoggerCallback, iteration_of, resumed_at

_NOT_SCALARS = ("config", "pid", "timestamp", "time_total_s", "training_iteration")


def _tensorboardx() -> Any:
    try:
        import tensorboardX
    except ImportError as exc:
        raise ImportError(
            "TBXLoggerCallback needs tensorboardX, an optional extra: "
            "pip install 'rtune[tensorboard]'"
        ) from exc
    return tensorboardX


def available() -> bool:
    try:
        _tensorboardx()
    except ImportError:
        return False
    return True


class TBXLoggerCallback(LoggerCallback):
    """Each `training_iteration` once in TensorBoard, after any number of restores."""

    def __init__(self) -> None:
        _tensorboardx()  # a missing extra is named before any trial starts
        self._writers: dict[str, _Writer] = {}

    def log_trial_start(self, trial: Any) -> None:
        self._open(trial, purge_from=1)

    def log_trial_restore(self, trial: Any) -> None:
        self._open(trial, purge_from=resumed_at(trial) + 1)

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        step = iteration_of(result)
        if step is None:
            return
        writer = self._writers.get(trial.trial_id) or self._open(trial, purge_from=step)
        writer.scalars(step, result)

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        writer = self._writers.pop(trial.trial_id, None)
        if writer is None:
            return
        if writer.last is not None:
            writer.hparams(trial.config, writer.last)
        writer.close()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        for writer in self._writers.values():
            writer.flush()

    def get_state(self) -> None:
        for writer in self._writers.values():
            writer.flush()
        return None

    def __getstate__(self) -> dict:
        return {key: value for key, value in self.__dict__.items() if key != "_writers"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._writers = {}

    def _open(self, trial: Any, purge_from: int) -> _Writer:
        old = self._writers.pop(trial.trial_id, None)
        if old is not None:
            old.close()
        writer = self._writers[trial.trial_id] = _Writer(trial, purge_from)
        return writer


class _Writer:
    """One trial's event file, written with tensorboardX's protos and record writer, in the
    trial's directory or in a local one copied there. (Its `SummaryWriter` starts a thread and
    a multiprocessing queue per file and fsyncs each flush: ~4.5 ms a trial.)"""

    _opened = 0

    def __init__(self, trial: Any, purge_from: int):
        from tensorboardX.proto.event_pb2 import Event, SessionLog

        self._storage = trial.storage
        self._staged = trial.local_path is None
        logdir = tempfile.mkdtemp(prefix="rtune-tbx-") if self._staged else trial.local_path
        _Writer._opened += 1
        name = f"events.out.tfevents.{int(time.time())}.{_HOST}.{os.getpid()}.{_Writer._opened}"
        try:
            self._records = _records_at(os.path.join(logdir, name))
        except FileNotFoundError:  # before the trial's own first write
            os.makedirs(logdir, exist_ok=True)
            self._records = _records_at(os.path.join(logdir, name))
        self._Event = Event
        self._write(Event(file_version="brain.Event:2"))
        # TensorBoard's reader drops what earlier files hold from this step on (as
        # SummaryWriter(purge_step=...) writes it)
        self._write(Event(step=purge_from, session_log=SessionLog(status=SessionLog.START)))
        self._logdir = logdir
        self.last: dict | None = None

    def scalars(self, step: int, result: dict) -> None:
        from tensorboardX.proto.summary_pb2 import Summary

        values = [
            Summary.Value(tag=f"ray/tune/{key}", simple_value=value)
            for key, value in _scalars(result).items()
        ]
        if values:
            self._write(self._Event(step=step, summary=Summary(value=values)))
        self.last = result

    def hparams(self, config: dict, result: dict) -> None:
        from tensorboardX.summary import hparams

        params = {}
        for key, value in flatten(config).items():
            if isinstance(value, (bool, int, float, str)):
                params[key] = value
            elif hasattr(value, "item") and not hasattr(value, "__len__"):  # numpy scalars
                params[key] = value.item()
            elif value is None or isinstance(value, (list, tuple)):
                params[key] = str(value)
        metrics = {f"ray/tune/{key}": value for key, value in _scalars(result).items()}
        for summary in hparams(hparam_dict=params, metric_dict=metrics):
            self._write(self._Event(summary=summary))

    def flush(self) -> None:
        self._records.flush()
        self._upload()

    def close(self) -> None:
        self._records.close()
        self._upload()

    def _write(self, event: Any) -> None:
        event.wall_time = time.time()
        self._records.write(event.SerializeToString())

    def _upload(self) -> None:
        if not self._staged:
            return
        for name in os.listdir(self._logdir):
            with open(os.path.join(self._logdir, name), "rb") as src:
                self._storage.write_atomic(name, src.read())


_HOST = socket.gethostname()


_RECORDS: Any = None


def _records_at(path: str) -> Any:
    """tensorboardX's record writer for an event file, flushing without an fsync: what a crash
    loses is told again on the restore (an fsync per trial cost 0.5 ms)."""
    global _RECORDS
    if _RECORDS is None:
        from tensorboardX.record_writer import RecordWriter

        class Records(RecordWriter):
            def flush(self) -> None:
                self._writer.flush()

        _RECORDS = Records
    return _RECORDS(path)


def _scalars(result: dict) -> dict[str, float]:
    """The numbers of a result, nested keys as `a/b` (Ray Tune's selection)."""
    numbers = {}
    for key, value in flatten({k: v for k, v in result.items() if k not in _NOT_SCALARS}).items():
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (int, float)) or (
            hasattr(value, "item") and getattr(value, "ndim", 1) == 0
        ):
            number = float(value)
            if math.isfinite(number) or math.isnan(number):
                numbers[key] = number
    return numbers
