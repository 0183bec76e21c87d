"""The run's callbacks (`RunConfig(callbacks=...)` and the default loggers), driven by the events
the loop emits: an `EventBus` listener, so every hook runs on the events thread, off the loop.

It keeps its own views of the trials (`TrialSnapshot`), changed only by the events it was handed, so
a hook sees the trials as they were when its event happened, never half-changed by the loop.

Exactly once across stops: the runner records, per trial, the last iteration whose result the
callbacks heard, whether they heard its start and its end, and stores that beside their
`get_state()`, taken together on this thread (`callbacks.pkl` in the experiment, every
SNAPSHOT_PERIOD_S while news comes, and at the end). A restore hands both back and, before any
new event, tells the callbacks what the trials did past it, from their stored histories: each
result once, then the ends they missed. The loop never waits for any of it.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cloudpickle

from rtune._durable import trial as T
from rtune._durable.history import history_rows
from rtune._durable.storage import Storage, StorageError
from rtune._durable.trial_snapshot import TrialSnapshot, checkpoint_at
from rtune._execution import events as E
from rtune.callback import Callback

SNAPSHOT_FILE = "callbacks.pkl"
SNAPSHOT_PERIOD_S = 2.0


class CallbackRunner:
    """`callbacks`: in the order they are called. `failure` is set (on the events thread) when
    a hook raised: (the error, its traceback, "Callback.hook"); the loop ends the run with it.
    `restoring`: the experiment ran before; what its callbacks heard is read on their thread."""

    def __init__(
        self,
        callbacks: list[Callback],
        storage: Storage,
        trials: list[T.Trial],
        setup_info: dict,
        restoring: bool,
        may_write: Callable[[], bool],
        warn: Callable[[str], Any],
    ):
        self.callbacks = list(callbacks)
        self.failure: tuple[BaseException, str, str] | None = None
        self._failure_taken = False
        self._storage = storage
        self._setup_info = setup_info
        # what the replay needs of the restored trials, taken now: the loop changes them
        self._restored = [_Restored.of(trial) for trial in trials]
        self._restoring = restoring
        self._may_write = may_write
        self._warn = warn
        self._views: dict[str, TrialSnapshot] = {}
        self._view_list: list[TrialSnapshot] = []
        for trial in trials:
            self._views[trial.trial_id] = TrialSnapshot.of(trial, storage)
            self._view_list.append(self._views[trial.trial_id])
        self.iteration = 0
        self._heard: dict[str, int] = {}  # trial id -> the last iteration told
        self._started: set[str] = set()
        self._ended: set[str] = set()
        self._dead: set[int] = set()  # callbacks that raised: not called again
        self._storage_warned: set[int] = set()
        self._write_failed = False  # a hook could not write: no snapshot from then on
        self._news_at: float | None = None  # news since the last snapshot, from when
        self._lock = threading.Lock()  # one snapshot at a time (the events thread, then close)
        self.steps = any(_overrides(cb, "on_step_begin", "on_step_end") for cb in callbacks)

    def take_failure(self) -> tuple[BaseException, str, str] | None:
        """The loop's: a hook's error, once (the run ends with it)."""
        if self.failure is None or self._failure_taken:
            return None
        self._failure_taken = True
        return self.failure

    # ---- the events thread ----

    def __call__(self, event: E.Event) -> None:
        handler = _HANDLERS.get(event.kind)
        if handler is not None:
            handler(self, event)
        if self._news_at is None:
            self._news_at = time.monotonic()
        elif time.monotonic() - self._news_at >= SNAPSHOT_PERIOD_S:
            self.write_snapshot()

    def tick(self) -> None:
        """No event for a while: store what was heard (file loggers flush then)."""
        if self._news_at is not None:
            self.write_snapshot()

    def write_snapshot(self) -> None:
        """The callbacks' state and what they heard, stored together (off the loop)."""
        with self._lock:
            self._news_at = None
            states = []
            for index, cb in enumerate(self.callbacks):
                state = self._call(index, "get_state") if index not in self._dead else None
                states.append((_class_name(cb), state))
            if self._write_failed:
                # a logger's files may lack what was heard since: the last snapshot stays, and
                # a restore tells the rest again
                return
            snapshot = {
                "states": states,
                "heard": dict(self._heard),
                "started": sorted(self._started),
                "ended": sorted(self._ended),
            }
            if not self._may_write():
                return
            try:
                self._storage.write_atomic(SNAPSHOT_FILE, cloudpickle.dumps(snapshot))
            except Exception as exc:  # the experiment goes on; a restore tells more again
                self._warn(f"could not store the callbacks' state: {exc}")

    def _call(self, index: int, hook: str, *args: Any, **kwargs: Any) -> Any:
        if index in self._dead or not self._may_write():  # another run owns the experiment
            return None
        cb = self.callbacks[index]
        try:
            return getattr(cb, hook)(*args, **kwargs)
        except StorageError as exc:
            # storage that stays down stops the run by itself (resumable); a logger's rows wait
            # for its next write, or for the restore to bring its files in line
            self._write_failed = True
            if index not in self._storage_warned:
                self._storage_warned.add(index)
                self._warn(f"callback {_class_name(cb)}.{hook} could not write: {exc}")
            return None
        except Exception as exc:
            self._dead.add(index)
            if self.failure is None:
                where = f"{_class_name(cb)}.{hook}"
                self.failure = (exc, traceback.format_exc(), f"callback {where}")
            return None

    def _hook(self, hook: str, *args: Any, **kwargs: Any) -> None:
        for index in range(len(self.callbacks)):
            self._call(index, hook, *args, **kwargs)

    # ---- events ----

    def _on_started(self, event: E.Event) -> None:
        snapshot = read_snapshot(self._storage, self._warn) if self._restoring else None
        if snapshot is not None:
            self._set_states(snapshot)
        info = self._setup_info
        self._hook(
            "setup",
            stop=info.get("stop"),
            num_samples=info.get("num_samples"),
            total_num_samples=info.get("total_num_samples"),
        )
        self._replay()

    def _on_added(self, event: E.Event) -> None:
        view = self._view_of(event.trial_id, event.trial_name, event.relpath, event.config)
        view.experiment_tag = event.data.get("experiment_tag", "")

    def _on_trial_start(self, event: E.Event) -> None:
        view = self._view_for(event)
        view.status = T.RUNNING
        view.experiment_tag = event.data.get("experiment_tag", view.experiment_tag)
        self.iteration += 1
        self._started.add(view.trial_id)
        if event.kind == E.TRIAL_RESTORED:
            upto = event.data.get("restored_iteration", 0)
            view.last_result = _cut_result(view.last_result, upto)
            self._heard[view.trial_id] = min(self._heard.get(view.trial_id, 0), upto)
            self._hook("on_trial_restore", self.iteration, self._view_list, view)
        else:
            view.last_result = {}
            self._heard[view.trial_id] = 0
            self._hook("on_trial_start", self.iteration, self._view_list, view)

    def _on_result(self, event: E.Event) -> None:
        view = self._view_for(event)
        self._tell_result(view, event.result or {})

    def _tell_result(self, view: TrialSnapshot, result: dict) -> None:
        result = {**result, "config": view.config}
        view.last_result = result
        iteration = result.get("training_iteration")
        if isinstance(iteration, int):
            self._heard[view.trial_id] = iteration
        self.iteration += 1
        self._hook("on_trial_result", self.iteration, self._view_list, view, result)

    def _on_checkpoint(self, event: E.Event) -> None:
        view = self._view_for(event)
        path = event.data.get("path")
        view.checkpoint = checkpoint_at(self._storage, path)
        self._hook("on_trial_save", self.iteration, self._view_list, view)
        if view.checkpoint is not None:
            self._hook("on_checkpoint", self.iteration, self._view_list, view, view.checkpoint)

    def _on_completed(self, event: E.Event) -> None:
        view = self._view_for(event)
        view.status = T.TERMINATED
        self._tell_end(view, failed=False)

    def _on_errored(self, event: E.Event) -> None:
        view = self._view_for(event)
        view.num_failures += 1
        view.error = event.data.get("error")
        if event.data.get("will_retry"):
            view.status = T.PENDING
            self._hook("on_trial_recover", self.iteration, self._view_list, view)
            return
        view.status = T.ERROR
        self._tell_end(view, failed=True)

    def _tell_end(self, view: TrialSnapshot, failed: bool) -> None:
        self._ended.add(view.trial_id)
        self.iteration += 1
        hook = "on_trial_error" if failed else "on_trial_complete"
        self._hook(hook, self.iteration, self._view_list, view)

    def _on_paused(self, event: E.Event) -> None:
        self._view_for(event).status = T.PAUSED

    def _on_step(self, event: E.Event) -> None:
        hook = "on_step_begin" if event.kind == E.STEP_BEGIN else "on_step_end"
        self._hook(hook, self.iteration, self._view_list)

    def _on_ended(self, event: E.Event) -> None:
        self._hook("on_experiment_end", self._view_list)

    # ---- restore ----

    def _set_states(self, snapshot: dict) -> None:
        states = snapshot.get("states") or []
        names = [name for name, _ in states]
        mine = [_class_name(cb) for cb in self.callbacks]
        if names != mine:
            self._warn(
                f"the callbacks stored with the experiment ({', '.join(names) or 'none'}) are "
                f"not this run's ({', '.join(mine) or 'none'}): their state is not restored"
            )
            return
        self._heard = dict(snapshot.get("heard") or {})
        self._started = set(snapshot.get("started") or ())
        self._ended = set(snapshot.get("ended") or ())
        for index, (_, state) in enumerate(states):
            if state is not None:
                self._call(index, "set_state", state)

    def _replay(self) -> None:
        """Tell what the restored trials did that the callbacks did not hear: results up to
        where each resumes (all of a finished one's) from its history, then a missed end."""
        for trial in self._restored:
            ended = trial.status in (T.TERMINATED, T.ERROR)
            upto = float("inf") if ended else trial.resumes_at
            heard = self._heard.get(trial.trial_id, 0)
            missed_end = ended and trial.trial_id not in self._ended
            if not missed_end and heard >= min(upto, trial.iteration):
                continue
            rows = [
                row
                for row in history_rows(self._storage, trial.relpath)
                if heard < _iteration_of(row) <= upto
            ]
            view = self._views[trial.trial_id]
            if not rows and not missed_end:
                continue
            if trial.trial_id not in self._started:
                self._started.add(trial.trial_id)
                self.iteration += 1
                self._hook("on_trial_start", self.iteration, self._view_list, view)
            for row in rows:
                self._tell_result(view, row)
            if missed_end:
                view.last_result = dict(trial.last_result, config=view.config)
                self._tell_end(view, failed=trial.status == T.ERROR)
            elif trial.status in T.UNFINISHED:
                view.status = trial.status

    # ----

    def _view_of(self, trial_id: str, name: str, relpath: str, config: dict) -> TrialSnapshot:
        view = self._views.get(trial_id)
        if view is None:
            view = TrialSnapshot(trial_id, name, relpath, config, self._storage)
            self._views[trial_id] = view
            self._view_list.append(view)
        return view

    def _view_for(self, event: E.Event) -> TrialSnapshot:
        view = self._view_of(event.trial_id, event.trial_name, event.relpath or "", event.config)
        view.config = event.config  # an exploit changes it
        return view


@dataclass(frozen=True)
class _Restored:
    trial_id: str
    relpath: str
    status: str
    iteration: int
    resumes_at: int  # the iteration it goes on from
    last_result: dict

    @classmethod
    def of(cls, trial: T.Trial) -> _Restored:
        checkpoint = None if trial.restore_from_scratch else trial.latest_checkpoint
        return cls(
            trial.trial_id,
            trial.relpath,
            trial.status,
            trial.iteration,
            (checkpoint or {}).get("training_iteration", 0),
            dict(trial.last_result),
        )


_HANDLERS: dict[str, Callable[[CallbackRunner, E.Event], None]] = {
    E.EXPERIMENT_STARTED: CallbackRunner._on_started,
    E.TRIAL_ADDED: CallbackRunner._on_added,
    E.TRIAL_STARTED: CallbackRunner._on_trial_start,
    E.TRIAL_RESTORED: CallbackRunner._on_trial_start,
    E.TRIAL_RESULT: CallbackRunner._on_result,
    E.TRIAL_CHECKPOINT: CallbackRunner._on_checkpoint,
    E.TRIAL_COMPLETED: CallbackRunner._on_completed,
    E.TRIAL_ERRORED: CallbackRunner._on_errored,
    E.TRIAL_PAUSED: CallbackRunner._on_paused,
    E.STEP_BEGIN: CallbackRunner._on_step,
    E.STEP_END: CallbackRunner._on_step,
    E.EXPERIMENT_ENDED: CallbackRunner._on_ended,
}


def callback_runner(
    setup: Any, may_write: Callable[[], bool], warn: Callable[[str], Any]
) -> CallbackRunner | None:
    """The run's callbacks, where it has any (`setup`: its ExperimentSetup)."""
    if not setup.callbacks:
        return None
    return CallbackRunner(
        setup.callbacks,
        setup.storage,
        setup.restored_trials,
        setup.callback_setup,
        restoring=setup.restored_state_base is not None or bool(setup.restored_trials),
        may_write=may_write,
        warn=warn,
    )


def event_bus(
    listeners: list, runner: CallbackRunner | None, warn: Callable[[str], Any]
) -> E.EventBus:
    """The run's events, to `listeners` and the callbacks (whose runner flushes when idle)."""
    return E.EventBus(
        [*listeners, *([runner] if runner else [])],
        warn=warn,
        tick=runner.tick if runner else None,
    )


def end_callbacks(
    events: E.EventBus, runner: CallbackRunner | None, stopped: bool, storage_failed: bool
) -> bool:
    """Let the callbacks hear the run out, then store what they heard; True once their thread
    is done with them. A stop waits less (a restore tells them the rest); a storage failure
    hardly at all (their writes would only retry)."""
    done = events.close(1.0 if storage_failed else 10.0 if stopped else 120.0)
    if runner is not None and done:
        runner.write_snapshot()
    return done


def read_snapshot(storage: Storage, warn: Callable[[str], Any]) -> dict | None:
    """What an earlier run of the experiment stored for its callbacks (None: nothing, or a file
    that does not load: then every result is told again, which file loggers absorb)."""
    try:
        return cloudpickle.loads(storage.read_bytes(SNAPSHOT_FILE))
    except FileNotFoundError:
        return None
    except Exception as exc:
        warn(
            f"{storage.uri(SNAPSHOT_FILE)} is damaged ({type(exc).__name__}: {exc}): the "
            "callbacks hear every result of the run again, and their state starts afresh"
        )
        return None


def _overrides(cb: Callback, *hooks: str) -> bool:
    return any(getattr(type(cb), hook, None) is not getattr(Callback, hook) for hook in hooks)


def _class_name(cb: Any) -> str:
    return type(cb).__name__


def _iteration_of(row: dict) -> int:
    value = row.get("training_iteration")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _cut_result(result: dict, upto: int) -> dict:
    """The trial's last result as of a resume at `upto`: the one before, if it was that one."""
    if _iteration_of(result) <= upto:
        return result
    return {"training_iteration": upto}
