"""The trial actor: runs one trial at a time in a thread, hands results over in batches.

The controller keeps one `poll()` in flight per running actor; each returns every result produced
since the last one. The next `poll()` acknowledges them and carries the controller's decision
(`stop_mode`). How far a trial may run ahead of acknowledgements is the spec's `ack_window`: 1 when
a stopper or scheduler in the controller decides on results (the trial then stops at exactly the
result they stopped it on), large when every decision is trial-local (then nothing waits).
Actors are reused between trials with equal resource requests.
"""

from __future__ import annotations

import queue
import shutil
import tempfile
import threading
import time
import traceback
from typing import Any

import ray

from rtune import _session
from rtune._session import StopTrial, TrialSession, TrialSpec
from rtune.trainable import (
    Trainable,
    is_class_trainable,
    load_class_checkpoint,
    save_class_checkpoint,
)

COALESCE_S = 0.005  # how long a poll waits for more results once it has some
COALESCE_MAX = 1000  # results per reply, at most


class TrialRunner:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._outbox: list[dict] = []
        self._produced = self._fetched = self._acked = 0
        self._blocked = False  # the trial waits for acknowledgements: nothing more will come
        self._outcome: str | None = None
        self._error: str | None = None
        self._session: TrialSession | None = None
        self._trainables: dict[str, Any] = {}
        self._parameters: dict[str, Any] = {}
        self._instance: Trainable | None = None
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def ready(self) -> dict:
        return {
            "node_ip": ray.util.get_node_ip_address(),
            "node_id": ray.get_runtime_context().get_node_id(),
        }

    def start(self, spec: TrialSpec) -> dict:
        """Start a trial and return its first batch of results."""
        with self._cond:
            self._outbox, self._outcome, self._error = [], None, None
            self._produced = self._fetched = self._acked = 0
            self._blocked = False
        trainable = self._resolve(spec.trainable_ref)
        self._session = TrialSession(spec, self._publish, self._await_turn)
        if self._thread is None:  # one thread runs this actor's trials, one after another
            self._thread = threading.Thread(target=self._serve, name="rtune-trial", daemon=True)
            self._thread.start()
        self._jobs.put((trainable, spec))
        return self.poll()

    def _serve(self) -> None:
        while True:
            trainable, spec = self._jobs.get()
            self._run(trainable, spec)

    def poll(self, stop_mode: str | None = None) -> dict:
        """Acknowledge every result handed out so far, then wait for new ones. While the trial is
        still producing (not blocked on acknowledgements), wait up to COALESCE_S more, so a burst
        of results, or a short trial's results and its end, travel in one reply."""
        with self._cond:
            self._set_stop_mode(stop_mode)
            self._acked = self._fetched
            self._cond.notify_all()
            while not self._outbox and self._outcome is None:
                self._cond.wait()
            deadline = time.monotonic() + COALESCE_S
            while (
                self._outcome is None
                and not self._blocked
                and len(self._outbox) < COALESCE_MAX
                and (left := deadline - time.monotonic()) > 0
            ):
                self._cond.wait(left)
            batch = {"results": self._outbox, "outcome": self._outcome, "error": self._error}
            self._fetched += len(self._outbox)
            self._outbox = []
            return batch

    def request_stop(self, mode: str) -> None:
        """mode 'drain': stop at the next iteration boundary and save a checkpoint there (class
        trainables); 'finish': a stopper ended the trial."""
        with self._cond:
            self._set_stop_mode(mode)
            self._cond.notify_all()

    def _set_stop_mode(self, mode: str | None) -> None:
        if mode and self._session is not None and self._session.stop_mode is None:
            self._session.stop_mode = mode

    def _publish(self, result: dict) -> None:
        with self._cond:
            self._outbox.append(result)
            self._produced += 1
            self._cond.notify_all()

    def _await_turn(self) -> str | None:
        """Block until the controller acknowledged enough results; return its stop decision."""
        session = self._session
        assert session is not None
        with self._cond:
            while (
                self._produced - self._acked >= session.spec.ack_window
                and session.stop_mode is None
            ):
                self._blocked = True
                self._cond.notify_all()
                self._cond.wait()
            self._blocked = False
            return session.stop_mode

    def _resolve(self, trainable_ref: Any) -> Any:
        key = trainable_ref.hex()
        if key not in self._trainables:
            trainable = ray.get(trainable_ref)
            refs = getattr(trainable, "_rtune_parameters", {})
            self._parameters = dict(zip(refs, ray.get(list(refs.values())))) if refs else {}
            self._trainables = {key: trainable}
            self._instance = None
        return self._trainables[key]

    def _run(self, trainable: Any, spec: TrialSpec) -> None:
        session = self._session
        assert session is not None
        _session.set_session(session)
        outcome, error = "finished", None
        try:
            if is_class_trainable(trainable):
                self._run_class(trainable, spec, session)
            else:
                self._run_function(trainable, spec, session)
        except StopTrial:
            outcome = "stopped"
        except BaseException:  # the user's error, reported with its traceback
            outcome, error = "error", traceback.format_exc()
        finally:
            _session.set_session(None)
            try:
                session.flush()
            except Exception:
                if error is None:
                    outcome, error = "error", traceback.format_exc()
            with self._cond:
                self._outcome, self._error = outcome, error
                self._cond.notify_all()

    def _run_function(self, fn: Any, spec: TrialSpec, session: TrialSession) -> None:
        returned = fn(dict(spec.config), **self._parameters)
        if isinstance(returned, dict):
            _session.report(returned)

    def _run_class(self, cls: type, spec: TrialSpec, session: TrialSession) -> None:
        instance = self._class_instance(cls, spec)
        instance._iteration = spec.restore_iteration
        instance.trial_id, instance.trial_name = spec.trial_id, spec.trial_name
        instance.logdir = spec.storage.uri(spec.trial_relpath)
        if session.latest_checkpoint is not None:
            with session.latest_checkpoint.as_directory() as checkpoint_dir:
                load_class_checkpoint(instance, checkpoint_dir)
        completed = False
        try:
            while True:
                mode = session.await_turn()
                if mode is not None:
                    if mode == "drain" or spec.checkpoint_at_end:
                        self._checkpoint_between_iterations(instance, session)
                    completed = True
                    raise StopTrial()
                metrics = instance.step()
                if not isinstance(metrics, dict):
                    raise TypeError(
                        f"{cls.__name__}.step() must return a dict, got {type(metrics).__name__}"
                    )
                instance._iteration += 1
                done = session.hit_local_stop(
                    {**metrics, "training_iteration": instance._iteration}
                )
                stopping = session.stop_mode is not None
                if self._should_checkpoint(spec, instance._iteration, done, session.stop_mode):
                    self._record_with_checkpoint(instance, session, metrics)
                else:
                    session.record(metrics)
                if done or stopping:
                    completed = True
                    if stopping:
                        raise StopTrial()
                    return
        finally:
            reusable = completed and type(instance).reset_config is not Trainable.reset_config
            self._instance = instance if reusable else None
            if not reusable:
                instance.cleanup()

    def shutdown(self) -> None:
        """Called before the controller lets this actor go: a kept Trainable gets its cleanup()."""
        if self._instance is not None:
            self._instance.cleanup()
            self._instance = None

    def _class_instance(self, cls: type, spec: TrialSpec) -> Trainable:
        previous = self._instance
        if (
            previous is not None
            and type(previous) is cls
            and previous.reset_config(dict(spec.config))
        ):
            previous.config = dict(spec.config)
            return previous
        if previous is not None:
            previous.cleanup()
            self._instance = None
        return cls(dict(spec.config), **self._parameters)

    @staticmethod
    def _should_checkpoint(
        spec: TrialSpec, iteration: int, done: bool, stop_mode: str | None
    ) -> bool:
        if stop_mode == "drain":
            return True
        if spec.checkpoint_frequency and iteration % spec.checkpoint_frequency == 0:
            return True
        return spec.checkpoint_at_end and (done or stop_mode == "finish")

    @staticmethod
    def _checkpoint_between_iterations(instance: Trainable, session: TrialSession) -> None:
        if session.iteration == 0 or session.last_checkpointed == session.iteration:
            return
        checkpoint_dir = tempfile.mkdtemp(prefix="rtune_save_")
        try:
            save_class_checkpoint(instance, checkpoint_dir)
            session.commit_checkpoint_only(checkpoint_dir)
        finally:
            shutil.rmtree(checkpoint_dir, ignore_errors=True)

    @staticmethod
    def _record_with_checkpoint(instance: Trainable, session: TrialSession, metrics: dict) -> None:
        checkpoint_dir = tempfile.mkdtemp(prefix="rtune_save_")
        try:
            save_class_checkpoint(instance, checkpoint_dir)
            session.record(metrics, checkpoint_dir)
        finally:
            shutil.rmtree(checkpoint_dir, ignore_errors=True)


RemoteTrialRunner = ray.remote(max_concurrency=4)(TrialRunner)
