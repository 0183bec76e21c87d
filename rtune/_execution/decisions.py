"""What a trial's news decides: each result goes, in order, to the searcher, the scheduler and the
stopper; a checkpoint is booked and old ones retired; an ended launch completes, pauses, retries
or fails the trial. The strategies (searcher, scheduler, stopper) act only through the answers
they give here, never on the controller.
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rtune._durable import checkpoints as retention
from rtune._durable import trial as T
from rtune._durable.history import end_marker
from rtune._durable.restore import reconcile_with_storage
from rtune._execution import events as E
from rtune._execution import protocol as P
from rtune._execution.exploits import Exploits
from rtune._execution.reporting import brief
from rtune._execution.views import ControllerView, view_of
from rtune.result_grid import TrialError
from rtune.schedulers.trial_scheduler import Exploit, TrialScheduler

if TYPE_CHECKING:
    from rtune._durable.trial import Trial
    from rtune._execution.drain import Drain
    from rtune._execution.events import EventBus
    from rtune._execution.lifecycle import Lifecycle
    from rtune._execution.protocol import CheckpointNote, TrialNews
    from rtune._execution.reporting import Journal
    from rtune._execution.setup import ExperimentSetup


class Decisions:
    def __init__(
        self,
        setup: ExperimentSetup,
        lifecycle: Lifecycle,
        drain: Drain,
        journal: Journal,
        events: EventBus,
        call_user: Callable[..., Any],
    ):
        self._setup = setup
        self._storage = setup.storage
        self._searcher = setup.searcher
        self._scheduler = setup.scheduler
        self._stopper = setup.stopper
        self._lifecycle = lifecycle
        self._drain = drain
        self._journal = journal
        self._events = events
        self._call_user = call_user
        # by the scheduler's tune_controller.stop_trial() and .exploit_trial(), in call order
        self._asked: list[tuple[str, Any]] = []
        self._view = ControllerView(
            lifecycle.trials,
            setup.storage,
            on_stop=lambda trial_id: self._asked.append((trial_id, None)),
            on_exploit=lambda trial_id, exploit: self._asked.append((trial_id, exploit)),
        )
        self._exploits = Exploits(setup.storage, lifecycle, journal)
        self._only_stops = setup.scheduler.needs.only_stops
        self._cut: set[str] = set()  # trials that ran past their stop: cut back when they end
        self.results_seen = 0
        self.result_times = [0.0, 0.0]  # when the first and the last result arrived

    def carry_out_restored(self) -> None:
        """Decisions the stopped run took and had not carried out when it stopped (stored with
        the trials): a restored run carries them out before anything runs, as the stopped run
        would have, so it decides on as an uninterrupted run."""
        for trial in list(self._lifecycle.trials.values()):
            if trial.decision is None:
                continue
            if trial.status != T.PENDING:  # not resumed by this restore
                if isinstance(trial.decision, dict):
                    self._exploits.abandon(trial.decision)
                trial.decision = None
                continue
            self._lifecycle.unqueue(trial)
            trial.stopping = True
            if trial.decision == T.STOP_DECIDED:  # it may have run past it before the crash
                self._cut.add(trial.trial_id)
            self.finished(trial, P.STOPPED)

    def on_news(self, trial: Trial, news: TrialNews) -> None:
        """The trial's results and checkpoints, in the order it made them."""
        results = news.results
        if not news.checkpoints:  # the common case
            for result in results:
                self.on_result(trial, result, None)
            return
        done = 0
        for note in news.checkpoints:
            upto = note.after - 1 if note.with_result else note.after
            for result in results[done:upto]:
                self.on_result(trial, result, None)
            done = upto
            if note.with_result:
                self.on_result(trial, results[done], note)
                done += 1
            else:  # of the last result reported, taken after it
                self.on_checkpoint(trial, note, trial.last_result)
        for result in results[done:]:
            self.on_result(trial, result, None)

    def on_result(self, trial: Trial, result: dict, checkpoint: CheckpointNote | None) -> None:
        if trial.decision == T.STOP_DECIDED:  # it ran past the result its stop was decided on
            self._ran_past(trial, checkpoint)
            return
        trial.last_result = result
        self._lifecycle.dirty = True
        self.results_seen += 1
        self.result_times[self.results_seen > 1] = time.monotonic()
        if self._events.active:
            self._emit(E.TRIAL_RESULT, trial, result)
        if checkpoint is not None:
            self.on_checkpoint(trial, checkpoint, result)
        if trial.stopping:
            return
        iteration = result.get("training_iteration")
        if type(iteration) is int:
            if iteration <= trial.decided_upto:  # decided in a run a restore resumed from
                return
            trial.decided_upto = iteration
        # the strategies see the config beside the metrics, as Ray Tune's do: in a copy, so the
        # trial's result stays the user's own
        seen = {**result, "config": trial.config}
        self._call_user(self._searcher.on_trial_result, trial.trial_id, seen)
        decision = self._call_user(
            self._scheduler.on_trial_result, self._view, view_of(trial), seen
        )
        if self._asked:
            self._carry_out_asked()
            if trial.stopping:  # it asked to stop this one
                return
        stopper = self._stopper
        stop = bool(stopper and self._call_user(stopper, trial.trial_id, seen))
        # a result that meets the stop criteria ends the trial whatever the scheduler answered
        # (Ray Tune does not ask the scheduler then): a pause or exploit there is dropped
        if not stop and (isinstance(decision, Exploit) or decision == TrialScheduler.PAUSE):
            if self._only_stops:
                self._call_user(_refuse, self._scheduler, decision)
                return
            if not result.get("done"):
                if isinstance(decision, Exploit):
                    decision = self._call_user(self._exploits.decide, trial, decision)
                    if decision is None:  # the scheduler's error: the run stops with it
                        return
                trial.stopping, trial.decision = True, decision
                return
        if stop or decision == TrialScheduler.STOP or result.get("done"):
            trial.stopping, trial.decision = True, TrialScheduler.STOP

    def _carry_out_asked(self) -> None:
        """What the scheduler asked of the controller view, in order.

        Trials to end (Ray Tune's `tune_controller.stop_trial`): a running one is stopped as at
        a STOP (an earlier pause or exploit is dropped); a paused or pending one ends where it
        waits, and, as in Ray Tune, the scheduler hears of it through `on_trial_remove` and the
        searcher through `on_trial_complete`.

        Exploits of waiting trials (`exploit_trial`): decided as a result's `Exploit` is (the
        donor's committed checkpoint fixed and pinned) and taken at once, so the record the next
        state write stores is the trial as it will resume."""
        while self._asked:
            trial_id, exploit = self._asked.pop(0)
            trial = self._lifecycle.trials.get(trial_id)
            if exploit is not None:
                self._call_user(self._exploit_waiting, trial_id, trial, exploit)
                continue
            if trial is None or trial.status not in T.UNFINISHED:
                continue
            if trial.status == T.RUNNING:
                if isinstance(trial.decision, dict):
                    self._exploits.abandon(trial.decision)
                trial.stopping, trial.decision = True, T.STOP_DECIDED
                continue
            trial.decision = None
            self._lifecycle.removed(trial)
            self._call_user(self._searcher.on_trial_complete, trial.trial_id, trial.last_result)
            self._call_user(self._scheduler.on_trial_remove, self._view, view_of(trial))

    def _exploit_waiting(self, trial_id: str, trial: Trial | None, exploit: Any) -> None:
        if not isinstance(exploit, Exploit):
            raise TypeError(f"exploit_trial({trial_id!r}, ...) takes an Exploit, got {exploit!r}")
        if trial is None or trial.status not in (T.PAUSED, T.PENDING) or trial.stopping:
            what = "no trial of this run" if trial is None else f"{trial.status}"
            raise ValueError(
                f"exploit_trial() takes a trial that waits (PAUSED or PENDING); {trial_id} is "
                f"{what}: a running trial exploits through the decision on its result "
                "(return the Exploit)"
            )
        record = self._exploits.decide(trial, exploit)
        self._exploits.adopt(trial, record)
        donor = self._lifecycle.trials[record["donor"]]
        self._journal.event(
            f"Trial {trial.trial_name} takes {donor.trial_name}'s "
            f"{record['checkpoint']['path']}; it resumes from there."
        )

    def _ran_past(self, trial: Trial, checkpoint: CheckpointNote | None) -> None:
        """A result (or checkpoint) from after the one a stop was decided on: the trial ran on
        for a moment before the stop reached it (`ack_lead_s`). Dropped, so it ends where it
        would have ended waiting for each decision; its history is cut back when it ends."""
        self._cut.add(trial.trial_id)
        if checkpoint is not None:
            try:
                self._storage.uncommit_and_delete(checkpoint.relpath)
            except OSError as exc:  # never booked; a restore does not resume a stopped trial
                self._journal.warn(f"could not delete a checkpoint past a stop: {exc}")

    def _cut_history(self, trial: Trial) -> None:
        """End the trial's history at the result its stop was decided on."""
        marker = end_marker(trial.relpath, max(trial.epoch, 0), trial.decided_upto)
        try:
            self._storage.write_atomic(marker, b"")
        except OSError as exc:
            self._journal.warn(
                f"trial {trial.trial_name}: could not cut its history back to iteration "
                f"{trial.decided_upto}, where it was stopped: {exc}"
            )

    def on_checkpoint(self, trial: Trial, note: CheckpointNote, scored: dict) -> None:
        """Book a committed checkpoint (`scored`: the result its score attribute is read from)
        and retire those retention no longer keeps."""
        if trial.decision == T.STOP_DECIDED and note.training_iteration > trial.decided_upto:
            self._ran_past(trial, note)
            return
        config = self._setup.checkpoint_config
        entry = {
            "path": note.relpath,
            "training_iteration": note.training_iteration,
            "time_total_s": note.time_total_s,
            "metrics": _score_metrics(scored, config),
            **retention.provenance(trial.trial_id, trial.epoch),
        }
        self._exploits.own_checkpoint(trial)  # it resumes from its own now
        trial.latest_checkpoint = entry
        # stored fields are replaced, never changed in place: an assignment marks the trial changed
        trial.committed_checkpoints = [*trial.committed_checkpoints, entry]
        for old in retention.to_delete(trial.committed_checkpoints, config, self._exploits.pins):
            trial.committed_checkpoints = [c for c in trial.committed_checkpoints if c is not old]
            try:
                self._storage.uncommit_and_delete(old["path"])
            except OSError as exc:  # kept a while longer; a later restore sees it and moves on
                self._journal.warn(f"could not delete an old checkpoint: {exc}")
        if self._events.active:
            self._emit(E.TRIAL_CHECKPOINT, trial, scored, path=note.relpath)

    def finished(self, trial: Trial, outcome: str) -> None:
        """Its launch ended without an error: "finished" (the trainable returned) or "stopped"
        (at a stop decision, or by a drain: resumable unless the drain is final)."""
        decision, trial.decision = trial.decision, None
        resumable = decision != TrialScheduler.STOP  # a pause, an exploit, a drain
        if outcome == P.STOPPED and resumable and not self._drain.final:
            if isinstance(decision, dict):
                self._exploits.carry_out(trial, decision)
            elif decision == TrialScheduler.PAUSE:
                self._lifecycle.paused(trial, "paused by the scheduler", waiting=True)
            else:
                self._lifecycle.paused(trial)
            return
        if isinstance(decision, dict):
            self._exploits.abandon(decision)
        if decision == T.STOP_DECIDED and trial.trial_id in self._cut:
            self._cut.discard(trial.trial_id)
            self._cut_history(trial)
        self._lifecycle.completed(trial, brief(trial.last_result))
        self._call_user(self._searcher.on_trial_complete, trial.trial_id, trial.last_result)
        self._call_user(
            self._scheduler.on_trial_complete, self._view, view_of(trial), trial.last_result
        )
        if self._asked:
            self._carry_out_asked()

    def failed(self, trial: Trial, error: str) -> None:
        """Its launch failed: retried while FailureConfig allows (and no drain runs), else it
        ends in ERROR, which fail_fast turns into the run's end."""
        max_failures = self._setup.failure_config.max_failures
        decision, trial.decision = trial.decision, None
        if isinstance(decision, dict):
            self._exploits.abandon(decision)
        retry = not self._drain.active and (max_failures < 0 or trial.num_failures < max_failures)
        self._write_error(trial, error)
        if retry:
            reconcile_with_storage(self._storage, trial)  # it may have committed one more
        self._lifecycle.failed(trial, error, retry)
        if retry:
            return
        self._call_user(self._searcher.on_trial_complete, trial.trial_id, trial.last_result, True)
        self._call_user(self._scheduler.on_trial_error, self._view, view_of(trial))
        if self._asked:
            self._carry_out_asked()
        fail_fast = self._setup.failure_config.fail_fast
        if fail_fast and not self._drain.active:
            self._drain.begin(f"fail_fast: trial {trial.trial_name} failed")
            if fail_fast == "raise":
                self._drain.fail(TrialError(trial.trial_name, error))

    def _write_error(self, trial: Trial, error: str) -> None:
        try:
            self._storage.write_atomic(posixpath.join(trial.relpath, "error.txt"), error.encode())
        except OSError as exc:
            self._journal.warn(f"could not write error.txt of {trial.trial_name}: {exc}")

    def _emit(self, kind: str, trial: Trial, result: dict, **data: Any) -> None:
        self._events.emit(
            E.Event(
                kind,
                trial.trial_id,
                trial.trial_name,
                trial.config,
                dict(result),
                data,
                relpath=trial.relpath,
            )
        )


def _refuse(scheduler: Any, decision: Any) -> None:
    raise ValueError(
        f"{type(scheduler).__name__} declares needs.only_stops, so its trials may run past a "
        f"result before hearing its decision, but it decided {decision!r} (only CONTINUE or "
        "STOP): declare only_stops=False"
    )


def _score_metrics(result: dict, checkpoint_config: Any) -> dict:
    attribute = checkpoint_config.checkpoint_score_attribute
    if attribute and attribute in result:
        return {attribute: result[attribute]}
    return {}
