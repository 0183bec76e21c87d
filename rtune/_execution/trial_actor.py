"""The trial actor: runs the trials handed to it one after another, reports in batches.

The controller keeps one `poll()` in flight per actor. A poll acknowledges the results fetched so
far, carries the controller's per-trial decisions (`stop_mode`) and, for short trials, the next
trials to queue; it returns every trial's news since the last one: results, and how a trial ended.
So an actor running trivial trials goes straight from one to the next, and one reply can carry
several trials' ends. How far a trial may run ahead of acknowledgements is the spec's
`ack_window`: 1 when a scheduler in the controller may pause or exploit on a result (the trial
then stops where it decided), large when every decision is trial-local or only stops; then
`ack_lead_s` bounds by time how far a trial runs past a result whose decision it has not heard.
Actors are reused between trials with equal resource requests.
"""

from __future__ import annotations

import collections
import inspect
import numbers
import shutil
import tempfile
import threading
import time
import traceback
from typing import Any

import ray

from rtune._durable.storage import Storage, StorageError
from rtune._execution import protocol as P
from rtune._execution import session as _session
from rtune._execution.protocol import CheckpointNote, Poll, TrialNews, TrialSpec
from rtune._execution.session import StopTrial, TrialSession
from rtune.trainable import (
    Trainable,
    is_class_trainable,
    load_class_checkpoint,
    save_class_checkpoint,
)

COALESCE_S = 0.005  # how long a poll waits for more news once it has some
COALESCE_MAX = 1000  # results per reply, at most


class _Run:
    """One trial handed to this actor: queued behind the one running, running, or finished
    until the controller has fetched its end."""

    def __init__(self, spec: TrialSpec, trainable: Any):
        self.spec = spec
        self.trainable = trainable
        self.outbox: list[dict] = []  # results not fetched yet
        self.checkpoints: list[CheckpointNote] = []  # beside them
        self.produced = self.fetched = self.acked = 0
        self.produced_at: collections.deque[float] = collections.deque()  # of unacknowledged news
        self.blocked = False  # the trial waits for acknowledgements: nothing more will come
        self.stop_mode: str | None = None  # set before the session exists: a queued trial
        self.session: TrialSession | None = None
        self.outcome: str | None = None
        self.error: str | None = None


class TrialRunner:
    def __init__(self, storage: Storage, trainable_holder: list) -> None:
        # the experiment's, given once: sent with every trial they cost ~20% of a trivial trial
        self._storage = storage
        self._trainable_ref = trainable_holder[0]
        self._cond = threading.Condition()
        self._runs: dict[str, _Run] = {}  # by trial id: queued, running, or ended but unfetched
        self._current: _Run | None = None  # the one running
        self._trainables: dict[str, Any] = {}
        self._parameters: dict[str, Any] = {}
        self._instance: Trainable | None = None
        self._queued: collections.deque[_Run] = collections.deque()  # not begun yet
        self._thread: threading.Thread | None = None
        self._woken = False  # see wake()

    def ready(self) -> dict:
        return {
            "node_ip": ray.util.get_node_ip_address(),
            "node_id": ray.get_runtime_context().get_node_id(),
        }

    def poll(self, poll: Poll) -> dict[str, TrialNews]:
        """Acknowledge every result of the trials in `poll.acks` fetched so far (and apply
        their stop decisions), queue `poll.trials`, then wait for news and return it by trial
        id. Once there is news, wait up to COALESCE_S more while a trial is still producing, so
        a burst of results, or a short trial's results and its end, travel in one reply."""
        runs = [_Run(spec, self._experiment_spec(spec)) for spec in poll.trials]
        with self._cond:
            for trial_id, stop_mode in poll.acks.items():
                run = self._runs.get(trial_id)
                if run is not None:
                    self._set_stop_mode(run, stop_mode)
                    if run.spec.ack_lead_s:
                        for _ in range(run.fetched - run.acked):
                            run.produced_at.popleft()
                    run.acked = run.fetched
            for run in runs:
                self._runs[run.spec.trial_id] = run
                self._queued.append(run)
            self._cond.notify_all()
            if runs and self._thread is None:  # one thread runs this actor's trials in turn
                self._thread = threading.Thread(target=self._serve, name="rtune-trial", daemon=True)
                self._thread.start()
            while not self._has_news() and not self._woken:
                self._cond.wait()
            deadline = time.monotonic() + COALESCE_S
            while not self._woken and not self._reply_now():
                if (left := deadline - time.monotonic()) <= 0:
                    break
                self._cond.wait(left)
            self._woken = False
            return self._take_news()

    def wake(self) -> None:
        """End the waiting poll now, with whatever news there is: the controller has a trial to
        queue here (shortly before a long running one is expected to end). Trials travel only
        with polls, so this actor queues them in the order the controller handed them out."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def _experiment_spec(self, spec: TrialSpec) -> Any:
        spec.storage = self._storage
        return self._resolve(self._trainable_ref)

    def _has_news(self) -> bool:
        return any(
            run.outbox or run.checkpoints or run.outcome is not None for run in self._runs.values()
        )

    def _reply_now(self) -> bool:
        """No point waiting: the running trial waits for us, or nothing runs, or the queue is
        nearly empty after a trial ended (the controller should send more now)."""
        current = self._current
        if (current is None and not self._queued) or (current and current.blocked):
            return True
        if sum(len(run.outbox) for run in self._runs.values()) >= COALESCE_MAX:
            return True
        ended = any(run.outcome is not None for run in self._runs.values())
        return ended and len(self._queued) <= 1

    def _take_news(self) -> dict[str, TrialNews]:
        news = {}
        for trial_id, run in list(self._runs.items()):
            if not run.outbox and not run.checkpoints and run.outcome is None:
                continue
            news[trial_id] = TrialNews(run.outbox, run.checkpoints, run.outcome, run.error)
            run.fetched += len(run.outbox) + sum(1 for c in run.checkpoints if not c.with_result)
            run.outbox, run.checkpoints = [], []
            if run.outcome is not None:
                del self._runs[trial_id]
        return news

    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._queued:
                    self._cond.wait()
                run = self._queued.popleft()
                if run.stop_mode is not None:  # a drain reached it before it began
                    run.outcome = P.SKIPPED
                    self._cond.notify_all()
                    continue
                self._current = run
            self._run(run)

    def request_stop(self, mode: str) -> None:
        """mode 'drain': stop at the next iteration boundary and save a checkpoint there (class
        trainables); a queued trial is dropped before it begins. Applies to every trial here."""
        with self._cond:
            for run in self._runs.values():
                self._set_stop_mode(run, mode)
            self._cond.notify_all()

    def drop_queued(self, trial_ids: list[str]) -> None:
        """The controller takes these back for an idle actor: drop those not begun yet (they
        come back as "skipped"); one that began already runs on here."""
        with self._cond:
            self._skip_queued(lambda run: run.spec.trial_id in trial_ids)

    @staticmethod
    def _set_stop_mode(run: _Run, mode: str | None) -> None:
        if mode and run.stop_mode is None:
            run.stop_mode = mode
            if run.session is not None:
                run.session.stop_mode = mode

    def _publish(self, run: _Run, result: dict | None, note: CheckpointNote | None) -> None:
        """A result, a checkpoint, or both, for the next reply; each counts against the trial's
        window of unacknowledged news once."""
        with self._cond:
            if result is not None:
                run.outbox.append(result)
            if note is not None:
                note.after = len(run.outbox)
                run.checkpoints.append(note)
            run.produced += 1
            if run.spec.ack_lead_s:
                run.produced_at.append(time.monotonic())
            self._cond.notify_all()

    def _await_turn(self, run: _Run) -> str | None:
        """Block until the controller acknowledged enough results; return its stop decision."""
        window, lead = run.spec.ack_window, run.spec.ack_lead_s
        with self._cond:
            while run.stop_mode is None and (
                run.produced - run.acked >= window
                or (lead and run.produced_at and time.monotonic() - run.produced_at[0] >= lead)
            ):
                run.blocked = True
                self._cond.notify_all()
                self._cond.wait()
            run.blocked = False
            return run.stop_mode

    def _end(self, run: _Run, outcome: str, error: str | None) -> None:
        with self._cond:
            run.outcome, run.error = outcome, error
            if self._current is run:
                self._current = None
            if outcome in (P.ERROR, P.STORAGE_ERROR):  # the controller replaces this actor
                self._skip_queued(lambda _: True)
            self._cond.notify_all()

    def _skip_queued(self, which: Any) -> None:
        """Drop the queued runs `which` picks before they begin: they report "skipped" and the
        controller puts them back to pending. Called holding the condition."""
        for run in [run for run in self._queued if which(run)]:
            self._queued.remove(run)
            run.outcome = P.SKIPPED
        self._cond.notify_all()

    def _resolve(self, trainable_ref: Any) -> Any:
        key = trainable_ref.hex()
        if key not in self._trainables:
            trainable = ray.get(trainable_ref)
            refs = getattr(trainable, "_rtune_parameters", {})
            self._parameters = dict(zip(refs, ray.get(list(refs.values())))) if refs else {}
            self._trainables = {key: trainable}
            self._instance = None
        return self._trainables[key]

    def _run(self, run: _Run) -> None:
        outcome, error, session = P.FINISHED, None, None
        try:
            session = TrialSession(
                run.spec,
                lambda result, note: self._publish(run, result, note),
                lambda: self._await_turn(run),
            )
            with self._cond:
                run.session = session
                session.stop_mode = run.stop_mode
            _session.set_session(session)
            if is_class_trainable(run.trainable):
                self._run_class(run.trainable, run.spec, session)
            else:
                self._run_function(run.trainable, run.spec, session)
        except StopTrial:
            outcome = P.STOPPED
        except StorageError as exc:  # not the trial's fault: it pauses at its last checkpoint
            outcome, error = P.STORAGE_ERROR, str(exc)
        except BaseException:  # the user's error, reported with its traceback
            outcome, error = P.ERROR, traceback.format_exc()
        finally:
            _session.set_session(None)
            try:
                if session is not None:
                    session.flush()
            except StorageError as exc:
                if error is None:
                    outcome, error = P.STORAGE_ERROR, str(exc)
            except Exception:
                if error is None:
                    outcome, error = P.ERROR, traceback.format_exc()
            self._end(run, outcome, error)

    def _run_function(self, fn: Any, spec: TrialSpec, session: TrialSession) -> None:
        """As Ray Tune's function API: each value a generator yields, and the value the function
        returns, is a result (a dict as its metrics, a number as `_metric`; None or empty: none)."""
        returned = fn(dict(spec.config), **self._parameters)
        if inspect.isgenerator(returned):
            for output in returned:
                _report_output(output)
        else:
            _report_output(returned)

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
                    if mode == P.DRAIN or spec.checkpoint_at_end:
                        _checkpoint_between_iterations(instance, session)
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
                if _should_checkpoint(spec, instance._iteration, done, session.stop_mode):
                    _record_with_checkpoint(instance, session, metrics)
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


def _report_output(output: Any) -> None:
    if not output:
        return
    if isinstance(output, dict):
        _session.report(output)
    elif isinstance(output, numbers.Number):
        _session.report({"_metric": output})
    else:
        raise ValueError(
            "A function trainable may return or yield a number or a dict of metrics, got "
            f"{type(output).__name__}"
        )


def _stage_checkpoint(instance: Trainable, checkpoint_dir: str) -> None:
    """save_checkpoint() into the node's scratch directory; a failure there (a full disk) says
    where, since the user's own write errors often name no path."""
    try:
        save_class_checkpoint(instance, checkpoint_dir)
    except OSError as exc:
        raise OSError(
            exc.errno,
            f"Could not stage the checkpoint in the node's scratch directory {checkpoint_dir} "
            f"(TMPDIR): {exc.strerror or exc}",
        ) from exc


def _should_checkpoint(spec: TrialSpec, iteration: int, done: bool, stop_mode: str | None) -> bool:
    if stop_mode == P.DRAIN:
        return True
    if spec.checkpoint_frequency and iteration % spec.checkpoint_frequency == 0:
        return True
    return spec.checkpoint_at_end and (done or stop_mode == P.FINISH)


def _checkpoint_between_iterations(instance: Trainable, session: TrialSession) -> None:
    if session.iteration == 0 or session.last_checkpointed == session.iteration:
        return
    checkpoint_dir = tempfile.mkdtemp(prefix="rtune_save_")
    try:
        _stage_checkpoint(instance, checkpoint_dir)
        session.commit_checkpoint_only(checkpoint_dir)
    finally:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)


def _record_with_checkpoint(instance: Trainable, session: TrialSession, metrics: dict) -> None:
    checkpoint_dir = tempfile.mkdtemp(prefix="rtune_save_")
    try:
        _stage_checkpoint(instance, checkpoint_dir)
        session.record(metrics, checkpoint_dir)
    finally:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)


RemoteTrialRunner = ray.remote(max_concurrency=4)(TrialRunner)
