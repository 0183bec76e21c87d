"""What the driver reads from the controller: the journal (status-block lines and warnings) and
the status snapshot the loop publishes.

`status()` runs on another thread of the controller actor than the loop. It never reads the
loop's structures: it reads the last snapshot the loop published (an immutable value, replaced
whole) and slices the journal under a lock held for nothing but an append or a slice, so a
status call or a stop is answered at once even while the loop waits on slow storage.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from typing import Any

from rtune._durable import trial as T
from rtune._durable.state import pack
from rtune._durable.trial import Trial
from rtune._execution.driver_messages import Status, StatusRow, status_before_start

STATUS_ROWS = 20
# the loop publishes a fresh snapshot when a status call asked for one, and at least this often
PUBLISH_EVERY_S = 1.0
# how long a status call waits for the loop to publish before answering with the last snapshot
STATUS_WAIT_S = 0.5

_STATUS_ORDER = {T.RUNNING: 0, T.PENDING: 1, T.PAUSED: 2, T.ERROR: 3, T.TERMINATED: 4}


class Journal:
    """Append-only lines for the driver: events (trial completed, paused, failed) and
    warnings; written by the loop and the lease's thread, read by status calls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[str] = []
        self.warnings: list[str] = []

    def event(self, line: str) -> None:
        with self._lock:
            self.events.append(line)

    def warn(self, line: str) -> None:
        with self._lock:
            self.warnings.append(line)

    def since(self, events_from: int, warnings_from: int) -> tuple[list[str], list[str]]:
        with self._lock:
            return self.events[events_from:], self.warnings[warnings_from:]


class StatusBoard:
    """The last published status snapshot, and the handshake by which a status call asks the
    loop for a fresh one without ever waiting on the loop for more than STATUS_WAIT_S."""

    def __init__(self) -> None:
        self._published: Status = status_before_start()
        self._published_at = -1e9
        self._wanted = False
        self._final = False  # the loop has ended: what is published stays
        self._fresh = threading.Condition()

    def due(self) -> bool:
        return self._wanted or time.monotonic() - self._published_at >= PUBLISH_EVERY_S

    def publish(self, snapshot: Status, final: bool = False) -> None:
        with self._fresh:
            self._published = snapshot
            self._final = final
            self._published_at = time.monotonic()
            self._wanted = False
            self._fresh.notify_all()

    def read(self) -> Status:
        with self._fresh:
            if self._final:
                return self._published
            self._wanted = True
            asked_at = time.monotonic()
            self._fresh.wait_for(lambda: self._published_at >= asked_at, STATUS_WAIT_S)
            return self._published


def status_snapshot(
    trials: Iterable[Trial],
    requested: dict[str, float],
    *,
    total_trials: int | None,
    elapsed_s: float,
    drain_reason: str | None,
    scheduler: str,
    done: bool,
) -> Status:
    """Built on the loop thread: rows copy the results they show, as the loop changes them."""
    trials = list(trials)
    counts: dict[str, int] = {}
    for trial in trials:
        counts[trial.status] = counts.get(trial.status, 0) + 1
    shown = sorted(trials, key=lambda t: (_STATUS_ORDER.get(t.status, 9), t.index))[:STATUS_ROWS]
    return Status(
        counts=counts,
        num_trials=len(trials),
        total_trials=total_trials,
        rows=tuple(
            StatusRow(
                name=t.trial_name,
                status=t.status,
                config=t.config,
                last_result=dict(t.last_result),
            )
            for t in shown
        ),
        requested=requested,
        elapsed_s=elapsed_s,
        drain_reason=drain_reason,
        controller_pid=os.getpid(),
        scheduler=scheduler,
        done=done,
    )


def brief(result: dict) -> str:
    """A result's first few user metrics, for a status-block line."""
    shown = {
        k: (round(v, 4) if isinstance(v, float) else v)
        for k, v in result.items()
        if k not in _AUTOFILLED and isinstance(v, (int, float, str))
    }
    return ", ".join(f"{k}={v}" for k, v in list(shown.items())[:4])


_AUTOFILLED = {
    "training_iteration",
    "time_this_iter_s",
    "time_total_s",
    "time_since_restore",
    "iterations_since_restore",
    "timestamp",
    "date",
    "trial_id",
    "experiment_tag",
    "hostname",
    "node_ip",
    "pid",
    "done",
    "checkpoint_dir_name",
}


def requested_resources(requests: Iterable[Any]) -> dict[str, float]:
    """The resources the running trials asked for, summed."""
    requested: dict[str, float] = {}
    for request in requests:
        for key, value in request.total().items():
            requested[key] = requested.get(key, 0) + value
    return requested


def user_objects(setup: Any, warn: Any, with_callbacks: bool = False) -> dict:
    """The searcher's, scheduler's and stopper's final state, and the user's callbacks (where
    their thread is done with them), for the driver to put back into the objects the user
    passed (they ran in the controller, on copies); one that does not pickle is left out, never
    costing the run's results."""
    packed = {}
    getters = [
        ("searcher", setup.searcher.get_state),
        ("scheduler", setup.scheduler.get_state),
        ("stopper", lambda: setup.stopper),
    ]
    if with_callbacks and setup.user_callbacks:
        getters.append(("callbacks", lambda: setup.callbacks[: setup.user_callbacks]))
    for key, get in getters:
        try:
            packed[key] = pack(get())
        except Exception as exc:
            warn(f"the {key}'s final state could not be sent back: {exc}")
    return packed
