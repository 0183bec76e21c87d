"""Lifecycle events, delivered to listeners on a thread of their own: the seam callbacks and
loggers attach to.

The controller's loop only puts an event on a queue (nothing at all when no listener is
attached), so a slow listener (a logger on a network filesystem, a tracking server) never delays
results, stops or state writes. Listeners see the events in the order they happened. A listener
that raises is reported once in the run's warnings and keeps receiving events: one bad call must
not silence a logger for the rest of a week-long run.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

EXPERIMENT_STARTED = "experiment_started"
TRIAL_ADDED = "trial_added"  # made, waiting to run
TRIAL_STARTED = "trial_started"
TRIAL_RESTORED = "trial_restored"  # started again from a checkpoint
TRIAL_RESULT = "trial_result"
TRIAL_CHECKPOINT = "trial_checkpoint"
TRIAL_COMPLETED = "trial_completed"
TRIAL_ERRORED = "trial_errored"
TRIAL_PAUSED = "trial_paused"
EXPERIMENT_ENDED = "experiment_ended"
# a turn of the loop that took in news, before and after it (only where a listener asks)
STEP_BEGIN, STEP_END = "step_begin", "step_end"
KINDS = (
    EXPERIMENT_STARTED,
    TRIAL_ADDED,
    TRIAL_STARTED,
    TRIAL_RESTORED,
    TRIAL_RESULT,
    TRIAL_CHECKPOINT,
    TRIAL_COMPLETED,
    TRIAL_ERRORED,
    TRIAL_PAUSED,
    EXPERIMENT_ENDED,
    STEP_BEGIN,
    STEP_END,
)


@dataclass(frozen=True)
class Event:
    """One thing that happened. `result` is the trial's result (a copy, safe to keep); `data`
    holds what a kind adds (a checkpoint's path, an error's text, the experiment's end reason)."""

    kind: str
    trial_id: str | None = None
    trial_name: str | None = None
    config: dict | None = None
    result: dict | None = None
    data: dict = field(default_factory=dict)
    time: float = field(default_factory=time.time)
    relpath: str | None = None  # the trial's directory in the experiment


Listener = Callable[[Event], Any]


class EventBus:
    """Takes events from the loop thread and hands them to the listeners on another thread."""

    def __init__(
        self,
        listeners: list[Listener] | None = None,
        warn: Callable[[str], Any] = print,
        tick: Callable[[], Any] | None = None,
        tick_s: float = 1.0,
    ):
        """`tick`: called on the listeners' thread whenever no event came for `tick_s` (a
        listener flushing what it buffered)."""
        self.listeners = list(listeners or [])
        self._warn = warn
        self._tick, self._tick_s = tick, tick_s
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._failed: set[int] = set()

    @property
    def active(self) -> bool:
        """Whether anyone listens; emitters check it before building an event."""
        return bool(self.listeners)

    def emit(self, event: Event) -> None:
        if not self.listeners:
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._deliver, name="rtune-events", daemon=True)
            self._thread.start()
        self._queue.put(event)

    def close(self, timeout_s: float = 10.0) -> bool:
        """Deliver what is queued, up to `timeout_s`; False when listeners were still busy."""
        if self._thread is None:
            return True
        self._queue.put(None)
        self._thread.join(timeout_s)
        done = not self._thread.is_alive()
        if not done:
            self._warn(f"event listeners did not finish within {timeout_s:g} s; events dropped")
        self._thread = None
        return done

    def _deliver(self) -> None:
        while True:
            try:
                event = self._queue.get(timeout=self._tick_s if self._tick else None)
            except queue.Empty:
                self._call(self._tick, "tick")
                continue
            if event is None:
                return
            for listener in self.listeners:
                self._call(listener, event.kind, event)

    def _call(self, who: Callable[..., Any], what: str, *args: Any) -> None:
        try:
            who(*args)
        except Exception as exc:
            shown = getattr(who, "__qualname__", who)
            if id(who) not in self._failed:
                self._failed.add(id(who))
                self._warn(
                    f"event listener {shown!s} raised on {what}: {type(exc).__name__}: {exc} "
                    "(reported once; it keeps receiving events)"
                )
