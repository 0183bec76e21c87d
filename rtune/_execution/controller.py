"""The controller actor (the "driver actor"): runs the experiment loop and delegates the rest.

Each turn of the loop takes the searcher's new trials (`intake`), hands pending trials to actors
(`actor_pool`, with the pipelining of `dispatch`), feeds what the actors send back, in order, to
the strategies (`decisions`), and writes the experiment state when due. A trial's status changes
only in `lifecycle`; how a run stops is `drain`'s; what the driver reads is `reporting`'s.
"""

from __future__ import annotations

import dataclasses
import time
import traceback
from typing import Any

import ray
from ray.exceptions import RayActorError, RayError

from rtune._durable.state import pack
from rtune._durable.storage import StorageError
from rtune._durable.trial import Trial
from rtune._execution import events as E
from rtune._execution import protocol as P
from rtune._execution import reporting
from rtune._execution.actor_pool import STARTING, ActorPool, Slot
from rtune._execution.callbacks import callback_runner, end_callbacks, event_bus
from rtune._execution.decisions import Decisions
from rtune._execution.drain import Drain
from rtune._execution.driver_messages import FirstTrials, Status, Summary
from rtune._execution.intake import Intake
from rtune._execution.launcher import Launcher
from rtune._execution.lifecycle import Lifecycle
from rtune._execution.recorder import Recorder
from rtune._execution.resources import static_request
from rtune._execution.setup import ExperimentSetup
from rtune._execution.views import view_of


class Controller:
    def __init__(self, setup: ExperimentSetup):
        self.setup = setup
        self.storage = setup.storage
        self.trials: dict[str, Trial] = {t.trial_id: t for t in setup.restored_trials}
        for trial in self.trials.values():  # the scheduler's saved trials are these records
            view_of(trial, setup.storage)
        self.journal = reporting.Journal()
        self.board = reporting.StatusBoard()
        self.callbacks = callback_runner(
            setup, lambda: self.recorder.may_write(), self.journal.warn
        )
        self.events = event_bus(setup.listeners, self.callbacks, self.journal.warn)
        self.lifecycle = Lifecycle(self.trials, self.events, self.journal)
        self.pool = ActorPool(
            setup.storage, setup.trainable_holder, self.lifecycle.requeue, self.journal.warn
        )
        self.intake = Intake(setup, self.trials, self._call_user)
        self.drain = Drain(
            self.pool,
            self.lifecycle,
            self.intake,
            self.journal,
            setup.storage,
            setup.time_budget_s,
        )
        self.decisions = Decisions(
            setup, self.lifecycle, self.drain, self.journal, self.events, self._call_user
        )
        self.recorder = Recorder(
            setup, self.trials, self.lifecycle, self.intake, self.drain, self.journal
        )
        self.launcher = Launcher(
            setup, self.trials, self.lifecycle, self.pool, self.intake, self.drain
        )
        self._started_at = time.monotonic()
        self._loop_cpu_s = 0.0
        self._done = False
        self._callbacks_done = False  # their thread finished: their objects go back to the driver

    # ---- driver-facing API (called from other threads of this actor) ----

    def request_stop(self, force: bool = False, reason: str = "stop requested") -> None:
        self.drain.request(force, reason)

    def location(self) -> str:
        """The experiment's storage URI, for `rtune stop` and `Tuner.restore`."""
        return self.setup.storage.uri()

    def status(self, events_from: int = 0, warnings_from: int = 0) -> Status:
        """The loop's last published snapshot, with the events and warnings not yet seen."""
        events, warnings = self.journal.since(events_from, warnings_from)
        return dataclasses.replace(self.board.read(), events=events, warnings=warnings)

    def run(self, first: FirstTrials | None = None) -> Summary:
        """Run the experiment, from what the driver started while this controller started."""
        cpu_at_start = time.thread_time()
        self.recorder.start()
        if self.callbacks is not None:  # before any trial's event
            self.events.emit(E.Event(E.EXPERIMENT_STARTED))
        if first is not None:
            self._adopt(first)
        try:
            self.decisions.carry_out_restored()
            # the trials waiting for a slot exist before a stop is looked at: the driver's first
            # trials may have run for a while (and a stop come) before this process started,
            # and a stopped experiment lists the trials it will run on restore
            if not self.drain.active:
                self._create_trials()
            self._loop()
        except BaseException as exc:  # reported to the driver, which raises it
            self.drain.fail(exc, traceback.format_exc())
        finally:
            for trial in self.pool.shutdown():
                self.lifecycle.stopped_unfinished(trial)
            self.recorder.write()  # after a storage failure, a last short try
            self.events.emit(E.Event(E.EXPERIMENT_ENDED, data={"reason": self.drain.reason}))
            self._end_callbacks()
            self.recorder.release()
            self._loop_cpu_s = time.thread_time() - cpu_at_start
            self._done = True
        return self._summary()

    def _end_callbacks(self) -> None:
        stopped = self.drain.active and not self.drain.final
        storage_failed = isinstance(self.drain.fatal, StorageError)
        self._callbacks_done = end_callbacks(self.events, self.callbacks, stopped, storage_failed)
        failure = self.callbacks.take_failure() if self.callbacks is not None else None
        if failure is not None:  # the run is over: fit() raises it
            self.drain.fail(failure[0], failure[1])

    def _check_callbacks(self) -> None:
        """A callback's hook raised (on the events thread): the run ends with its error."""
        failure = self.callbacks.take_failure() if self.callbacks is not None else None
        if failure is not None:
            self._user_code_failed(*failure)

    def _adopt(self, first: FirstTrials) -> None:
        """The driver's trials are the first ones (the searcher suggested them there), running
        as if launched here; its actors without a trial wait to be ready, as ours do."""
        request = static_request(self.setup.trainable_resources)
        for trial in first.trials:
            self.intake.maker.adopt(trial)
            self.lifecycle.announce(trial)
        busy = set()
        for actor, trial_id, poll in first.running:
            slot = self.pool.adopt_busy(actor, request, self.trials[trial_id], poll)
            self.lifecycle.start(slot.trials[0])
            busy.add(actor)
        for actor in first.actors:
            if actor not in busy:
                self.pool.adopt_starting(actor, request)
        if first.error is not None:  # the searcher failed in the driver: the run ends with it
            self._user_code_failed(first.error[0], first.error[1], first.error[2])

    # ---- the loop ----

    def _loop(self) -> None:
        while True:
            self.drain.check(self._stop_all, self.decisions.finished)
            next_action_at = float("inf")  # when the loop has something to do without news
            if not self.drain.active:
                self._create_trials()
                next_action_at = self.launcher.launch()
            for trial, error in self.pool.due_deaths():
                self.decisions.failed(trial, error)
            self.pool.publish_stop_targets()
            if self.board.due() or self.drain.begun:
                self.board.publish(self._status_snapshot())
            if self.drain.begun:  # the stop's reason stored now, after the status shows it
                self.drain.begun = False
                self.recorder.write()
            idle = not self.pool.busy() and not self.pool.dying
            if idle and (self.drain.active or self._all_done()):
                return
            # after the launches: a trial that ended does not wait for the state write to be
            # followed by the next one (run() writes the final state)
            self.recorder.write_if_due()
            self._process(self._wait(next_action_at))
            self._check_callbacks()

    def _stop_all(self) -> bool:
        stopper = self.setup.stopper
        return stopper is not None and bool(self._call_user(stopper.stop_all))

    def _wait(self, until: float) -> list:
        refs = list(self.pool.inflight)
        if not refs:
            time.sleep(0.05)
            return []
        # everything already done, in one call; block for the first one only when nothing is
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        if not ready:
            timeout = min(0.2, max(0.0, until - time.monotonic()) + 0.001)
            ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        return ready

    def _all_done(self) -> bool:
        """Nothing runs (the caller checked) and nothing will: trials the scheduler paused and
        does not choose again stay PAUSED, for a restore."""
        waiting = self.lifecycle.waiting and not self.launcher.chose_none
        return self.intake.finished and not self.lifecycle.pending and not waiting

    def _create_trials(self) -> None:
        while len(self.lifecycle.pending) < self.intake.prefetch:
            trial = self.intake.next_trial()
            if trial is None:
                return
            self.lifecycle.add(trial)

    # ---- what came back ----

    def _process(self, ready: list) -> None:
        steps = ready and self.callbacks is not None and self.callbacks.steps
        if steps:
            self.events.emit(E.Event(E.STEP_BEGIN))
        for ref in ready:
            kind, slot = self.pool.inflight.pop(ref)
            if kind == STARTING:
                self.pool.on_started(ref, slot, keep=not self.drain.active)
            else:
                self._on_batch(ref, slot)
        if steps:
            self.events.emit(E.Event(E.STEP_END))

    def _on_batch(self, ref: Any, slot: Slot) -> None:
        try:
            news = ray.get(ref)
        except RayError as exc:
            trial = self.pool.on_poll_failed(slot, exc)
            self.lifecycle.end_launch(trial.trial_id)
            if not isinstance(exc, RayActorError):  # a dead actor is mourned later
                self.decisions.failed(trial, str(exc))
            return
        for trial in slot.trials[1:]:  # taken back (or dropped by a drain) before they began
            batch = news.get(trial.trial_id)
            if batch is not None and batch.outcome == P.SKIPPED:
                del news[trial.trial_id]
                slot.trials.remove(trial)
                slot.taking_back.discard(trial.trial_id)
                self.lifecycle.dropped(trial)
        for trial in list(slot.trials):  # in the order the actor ran them
            batch = news.get(trial.trial_id)
            if batch is None:
                break
            self.decisions.on_news(trial, batch)
            if batch.outcome is None:
                break
            slot.trials.remove(trial)
            if not self._on_trial_end(slot, trial, batch.outcome, batch.error):
                return  # the actor is gone
            if slot.trials:
                self.lifecycle.start(slot.trials[0])
        if slot.trials:
            self.launcher.poll(slot, [])
        else:
            self.pool.release(slot, keep=self.setup.reuse_actors and not self.drain.active)

    def _on_trial_end(self, slot: Slot, trial: Trial, outcome: str, error: str | None) -> bool:
        """Book a trial's end; False when that cost its actor."""
        slot.taking_back.discard(trial.trial_id)
        if outcome == P.SKIPPED:  # dropped before it began: as it was before
            self.lifecycle.dropped(trial)
            return True
        self._end_launch(trial)
        if outcome in (P.ERROR, P.STORAGE_ERROR):
            # the actor is replaced (a failed trial may have left it broken) and began none of
            # the trials queued behind this one: they wait for another
            self.pool.kill(slot, keep_head=False)
            if outcome == P.ERROR:
                self.decisions.failed(trial, error or "unknown error")
            else:
                self.lifecycle.paused(trial, "storage failed")
                self.recorder.on_storage_failure(error or "storage failed")
            return False
        self.decisions.finished(trial, outcome)
        return True

    def _end_launch(self, trial: Trial) -> None:
        launch = self.lifecycle.end_launch(trial.trial_id)
        if launch is not None:
            self.launcher.pace.record(time.monotonic() - launch.started_at)

    def _call_user(self, fn: Any, *args: Any) -> Any:
        """Call user code (searcher, stopper, scheduler); its exception ends the run cleanly."""
        try:
            return fn(*args)
        except Exception as exc:
            self._user_code_failed(exc, traceback.format_exc(), getattr(fn, "__qualname__", fn))
            return None

    def _user_code_failed(self, exc: BaseException, tb: str, where: Any) -> None:
        self.drain.fail(exc, tb)
        if not self.drain.active:
            self.drain.begin(f"error in {where}: {exc}")

    # ---- what the driver reads ----

    def _status_snapshot(self) -> Status:
        return reporting.status_snapshot(
            self.trials.values(),
            reporting.requested_resources(slot.request for slot in self.pool.busy()),
            total_trials=getattr(self.setup.searcher, "total_trials", None),
            elapsed_s=time.monotonic() - self._started_at,
            drain_reason=self.drain.reason,
            scheduler=self.setup.scheduler.debug_string(),
            done=self._done,
        )

    def _summary(self) -> Summary:
        # first: its warnings go with the summary
        user_objects = reporting.user_objects(
            self.setup, self.journal.warn, with_callbacks=self._callbacks_done
        )
        status = self._status_snapshot()
        self.board.publish(status, final=True)
        fatal = self.drain.fatal
        events, warnings = self.journal.since(0, 0)
        return Summary(
            trials=list(self.trials.values()),  # pickled whole: cheaper than state records
            fatal=pack(fatal) if fatal is not None else None,
            fatal_tb=self.drain.fatal_tb,
            stop_reason=self.drain.reason,
            run_stats={
                **self.recorder.writer.stats(),
                "controller_run_s": time.monotonic() - self._started_at,
                "controller_cpu_s": self._loop_cpu_s,
                "results_seen": self.decisions.results_seen,
                "trials_asked_back": self.launcher.taken_back,
                "trials_queued_ahead": self.launcher.queued_ahead,
                "first_to_last_result_s": max(
                    0.0, self.decisions.result_times[1] - self.decisions.result_times[0]
                ),
            },
            warnings=warnings,
            drain_is_final=self.drain.final,
            events=events,
            status=status,
            user_objects=user_objects,
        )


RemoteController = ray.remote(num_cpus=0, max_concurrency=8)(Controller)
