"""The running trial's side of the API: `report`, `get_checkpoint`, `get_context`.

One `TrialSession` exists per running trial, inside its trial actor. It owns the order of durable
writes for each result: the result rows up to iteration k reach storage before checkpoint k is
committed, and the checkpoint is committed before the controller hears of it. So whatever a crash
interrupts, storage holds a checkpoint only together with the history that led to it.
"""

from __future__ import annotations

import datetime
import functools
import os
import posixpath
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from rtune._durable.history import ResultsWriter
from rtune._durable.storage import checkpoint_dirname
from rtune._execution import protocol as P
from rtune._execution.protocol import CheckpointNote, TrialSpec
from rtune.checkpoint import Checkpoint

FLUSH_INTERVAL_S = 10.0
RESERVED_KEYS = ("config",)


class StopTrial(BaseException):
    """Raised inside `report()` to unwind a function trainable that was asked to stop.

    A BaseException, so that a user's `except Exception` does not swallow it."""


class TrialContext:
    """What `tune.get_context()` returns: who the running trial is, and whether to stop."""

    def __init__(self, session: TrialSession):
        self._session = session

    def get_trial_id(self) -> str:
        return self._session.spec.trial_id

    def get_trial_name(self) -> str:
        return self._session.spec.trial_name

    def get_trial_dir(self) -> str:
        return self._session.spec.storage.uri(self._session.spec.trial_relpath)

    def get_experiment_name(self) -> str:
        return self._session.spec.experiment_name

    def get_trial_resources(self) -> dict:
        return dict(self._session.spec.resources)

    @property
    def stop_requested(self) -> bool:
        """True once rtune asked this trial to stop (a drain, a stopper, a time budget): report a
        checkpoint with the next result and nothing is lost."""
        return self._session.stop_mode is not None


class TrialSession:
    def __init__(
        self,
        spec: TrialSpec,
        publish: Callable[[dict | None, CheckpointNote | None], None],
        await_turn: Callable[[], str | None] = lambda: None,
    ):
        self.spec = spec
        self._publish = publish
        self.await_turn = await_turn
        self.last_checkpointed = -1
        # checkpoints are numbered per trial from 0, as Ray Tune's; a later run of the trial
        # (a retry, a restore) numbers on past every directory an earlier run left
        self._checkpoint_index: int | None = 0 if spec.epoch == 0 else None
        self.stop_mode: str | None = None
        self.iteration = spec.restore_iteration
        self.iterations_since_restore = 0
        self._started = self._last_report = time.time()
        self._last_flush = time.monotonic()
        restore = spec.restore_checkpoint
        exploited = restore is not None and not restore.startswith(spec.trial_relpath + "/")
        self.writer = ResultsWriter(
            spec.storage,
            spec.trial_relpath,
            spec.epoch,
            spec.restore_iteration,
            restore if exploited else None,
        )
        if spec.epoch == 0 or exploited:  # an exploit changed the config
            spec.storage.write_json(  # the writer made the trial's directory
                posixpath.join(spec.trial_relpath, "params.json"), spec.config, make_parents=False
            )
        self.latest_checkpoint: Checkpoint | None = None
        if spec.restore_checkpoint:
            self.latest_checkpoint = Checkpoint(
                spec.storage.path(spec.restore_checkpoint), spec.storage.filesystem
            )
        self._host = socket.gethostname()
        self._node_ip = _node_ip()
        self.lock = threading.Lock()

    def _autofill(self, metrics: dict) -> dict:
        now = time.time()
        self.iteration += 1
        self.iterations_since_restore += 1
        result = dict(metrics)
        for key in RESERVED_KEYS:
            result.pop(key, None)
        time_since_restore = now - self._started
        result.update(
            training_iteration=self.iteration,
            time_this_iter_s=now - self._last_report,
            time_total_s=self.spec.restore_time_total + time_since_restore,
            time_since_restore=time_since_restore,
            iterations_since_restore=self.iterations_since_restore,
            timestamp=int(now),
            date=datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S"),
            trial_id=self.spec.trial_id,
            experiment_tag=self.spec.experiment_tag,
            hostname=self._host,
            node_ip=self._node_ip,
            pid=os.getpid(),
        )
        result.setdefault("done", False)
        self._last_report = now
        return result

    def record(self, metrics: dict, checkpoint_dir: str | None = None) -> dict:
        """Persist one result (and its checkpoint), then hand it to the controller."""
        if not isinstance(metrics, dict):
            raise TypeError(f"tune.report() takes a dict of metrics, got {type(metrics).__name__}")
        result = self._autofill(metrics)
        if checkpoint_dir is not None:
            relpath = self._next_checkpoint_relpath()
            result["checkpoint_dir_name"] = posixpath.basename(relpath)
        self.writer.append(result)
        note = None
        if checkpoint_dir is not None:
            self.writer.flush()
            self._commit(checkpoint_dir, relpath, result)
            note = CheckpointNote(relpath, self.iteration, result["time_total_s"], with_result=True)
        elif time.monotonic() - self._last_flush > FLUSH_INTERVAL_S:
            self.flush()
        self._publish(result, note)
        return result

    def _next_checkpoint_relpath(self) -> str:
        """`checkpoint_<index>`: the number is never one an earlier run of the trial used (its
        directory may be an orphan's, or a superseded run's that a restore must still skip)."""
        if self._checkpoint_index is None:
            self._checkpoint_index = self.spec.storage.next_checkpoint_index(
                self.spec.trial_relpath
            )
        index = self._checkpoint_index
        self._checkpoint_index += 1
        return posixpath.join(self.spec.trial_relpath, checkpoint_dirname(index))

    def _commit(self, checkpoint_dir: str, relpath: str, result: dict) -> None:
        storage = self.spec.storage
        if self.spec.epoch > 0 and storage.exists(relpath):
            storage.uncommit_and_delete(relpath)
        storage.commit_checkpoint(
            checkpoint_dir,
            relpath,
            {
                "training_iteration": self.iteration,
                "epoch": self.spec.epoch,
                "time_total_s": result["time_total_s"],
            },
        )
        self.last_checkpointed = self.iteration
        self.latest_checkpoint = Checkpoint(storage.path(relpath), storage.filesystem)

    def commit_checkpoint_only(self, checkpoint_dir: str) -> None:
        """A checkpoint of the last recorded iteration, taken after its result was reported (a
        class trainable asked to stop between iterations)."""
        relpath = self._next_checkpoint_relpath()
        time_total = self.spec.restore_time_total + (self._last_report - self._started)
        self.flush()
        self._commit(checkpoint_dir, relpath, {"time_total_s": time_total})
        self._publish(None, CheckpointNote(relpath, self.iteration, time_total, with_result=False))

    def flush(self) -> None:
        self.writer.flush()
        self._last_flush = time.monotonic()

    def hit_local_stop(self, result: dict) -> bool:
        """Trial-local stop criteria (a stop dict) are checked here too, so a trial stops at the
        exact result that meets them instead of running ahead of the controller."""
        criteria = self.spec.local_stop or {}
        for key, limit in criteria.items():
            value = _lookup(result, key)
            if isinstance(limit, bool):  # stop={"done": True}: a flag in the result
                if value is not None and bool(value) >= limit:
                    return True
            elif isinstance(value, (int, float)) and not isinstance(value, bool) and value >= limit:
                return True
        return bool(result.get("done"))


def _lookup(result: dict, key: str) -> Any:
    if key in result:
        return result[key]
    value: Any = result
    for part in key.split("/"):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


@functools.cache
def _node_ip() -> str:
    """Asked once per process: Ray's lookup costs more than a trivial trial's whole result."""
    try:
        import ray.util

        return ray.util.get_node_ip_address()
    except Exception:  # outside Ray (unit use); the hostname still identifies the node
        return "127.0.0.1"


_current: TrialSession | None = None


def set_session(session: TrialSession | None) -> None:
    global _current
    _current = session


def _require_session(api: str) -> TrialSession:
    if _current is None:
        raise RuntimeError(
            f"tune.{api}() was called outside a trial. Call it from inside the trainable "
            "function that you pass to rtune.Tuner."
        )
    return _current


def report(metrics: dict, *, checkpoint: Checkpoint | None = None) -> None:
    """Report one iteration's metrics, optionally with a checkpoint (committed before returning)."""
    session = _require_session("report")
    if session.await_turn() == P.FINISH:
        raise StopTrial()
    if checkpoint is not None and not isinstance(checkpoint, Checkpoint):
        raise TypeError(
            f"tune.report(checkpoint=...) takes a rtune.Checkpoint, got {type(checkpoint).__name__}"
        )
    local_dir = None
    if checkpoint is not None:
        if not checkpoint.is_local:
            raise ValueError("tune.report(checkpoint=...) needs a local directory checkpoint")
        local_dir = checkpoint.path
    result = session.record(metrics, local_dir)
    if session.stop_mode is not None or session.hit_local_stop(result):
        raise StopTrial()


def get_checkpoint() -> Checkpoint | None:
    """The checkpoint to resume from: the newest one this trial reported or was restored with."""
    return _require_session("get_checkpoint").latest_checkpoint


def get_context() -> TrialContext:
    return TrialContext(_require_session("get_context"))
