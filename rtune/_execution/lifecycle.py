"""Trial lifecycle: the only writer of a trial's status, through a table of allowed transitions.

A status is what the experiment state stores and what a restore decides from, so a wrong one
loses work (a PAUSED trial recorded TERMINATED is never resumed). Every change goes through
`move`, which rejects any transition the table does not hold. `Lifecycle` adds what goes with
each change in a run: the pending queue, the launch record a trial dropped before it began is
put back from, the lines of the status block, and the events listeners receive.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rtune._durable.trial import ERROR, PAUSED, PENDING, RUNNING, TERMINATED, Trial
from rtune._execution import events as E

if TYPE_CHECKING:
    from rtune._execution.events import EventBus
    from rtune._execution.reporting import Journal

TRANSITIONS: dict[tuple[str, str], str] = {
    (PENDING, RUNNING): "launched on an actor",
    (PENDING, TERMINATED): "ended before it ran: a final drain, a restore not resuming, or a "
    "restore carrying out the stop its scheduler or stopper decided before the run stopped",
    (PENDING, PAUSED): "a restore carrying out the pause its scheduler decided before the stop",
    (RUNNING, PENDING): "to run again: a retry, dropped before it began, a crashed run restored",
    (RUNNING, PAUSED): "stopped resumable: a drain, a storage failure, the scheduler",
    (RUNNING, TERMINATED): "finished: returned, stopped by a stopper or scheduler, a final drain",
    (RUNNING, ERROR): "failed more often than FailureConfig.max_failures allows",
    (PAUSED, PENDING): "resumed: chosen to run again, or restored",
    (PAUSED, TERMINATED): "ended while paused: a final drain, or a restore not resuming",
    (ERROR, PENDING): "restored with resume_errored or restart_errored",
}


class TransitionError(RuntimeError):
    """A status change the table does not allow: a bug in rtune, never the user's."""


def move(trial: Trial, status: str) -> None:
    if (trial.status, status) not in TRANSITIONS:
        raise TransitionError(
            f"trial {trial.trial_name}: {trial.status} -> {status} is not an allowed transition"
        )
    trial.status = status


@dataclass(frozen=True)
class Launch:
    """A trial's launch, and its fields as they were before it, so a trial dropped before it
    began (a drain or a take-back reached it queued) is as it was."""

    started_at: float
    restore_from_scratch: bool
    last_result: dict


class Lifecycle:
    def __init__(self, trials: dict[str, Trial], events: EventBus, journal: Journal):
        self.trials = trials
        self.pending: list[str] = [t.trial_id for t in trials.values() if t.status == PENDING]
        self.waiting: list[str] = []  # PAUSED by the scheduler, for it to choose again
        self.events = events
        self.journal = journal
        self._launches: dict[str, Launch] = {}
        self._drain: str | None = None  # None, "drain" (resumable) or "final"
        self.dirty = True  # something the experiment state holds changed since the last write

    # ---- the pending queue ----

    def add(self, trial: Trial) -> None:
        """A new trial, waiting to run."""
        self.pending.append(trial.trial_id)
        self.dirty = True
        self.announce(trial)

    def announce(self, trial: Trial) -> None:
        """Tell listeners a trial exists (one made elsewhere, the driver's first ones, too)."""
        self._emit(E.TRIAL_ADDED, trial, experiment_tag=trial.experiment_tag)

    def begin_drain(self, final: bool) -> None:
        """From now on nothing goes back to pending; a final drain ends every pending trial."""
        self._drain = "final" if final else "drain"
        if final:
            for trial_id in self.pending:
                move(self.trials[trial_id], TERMINATED)
            self.pending.clear()  # in place: others hold a view of it
            self.dirty = True

    def unqueue(self, trial: Trial) -> None:
        """A pending trial that will not launch from the queue (a restore carries out what was
        decided for it)."""
        if trial.trial_id in self.pending:
            self.pending.remove(trial.trial_id)

    def requeue(self, trial: Trial) -> None:
        """A PENDING trial that was handed to an actor and never began: it waits for another
        actor, or, in a drain, stays PENDING for a restore (a final drain ends it)."""
        if self._drain == "final":
            move(trial, TERMINATED)
        elif self._drain is None:
            self.pending.insert(0, trial.trial_id)
        self.dirty = True

    # ---- a launch ----

    def start(self, trial: Trial) -> None:
        """The trial's actor runs it now (it may have waited queued there until now)."""
        self._launches[trial.trial_id] = Launch(
            time.monotonic(), trial.restore_from_scratch, trial.last_result
        )
        restored = not trial.restore_from_scratch and trial.latest_checkpoint is not None
        if not restored:
            trial.last_result = {}
        move(trial, RUNNING)
        trial.restore_from_scratch = False
        self.dirty = True
        if self.events.active:
            checkpoint = trial.latest_checkpoint if restored else None
            self._emit(
                E.TRIAL_RESTORED if restored else E.TRIAL_STARTED,
                trial,
                checkpoint=(checkpoint or {}).get("path"),
                # where it resumes: what it reported past this comes again
                restored_iteration=(checkpoint or {}).get("training_iteration", 0),
                experiment_tag=trial.experiment_tag,
            )

    def started_at(self, trial_id: str) -> float | None:
        launch = self._launches.get(trial_id)
        return None if launch is None else launch.started_at

    def end_launch(self, trial_id: str) -> Launch | None:
        """The launch is over (None: the trial never was running)."""
        return self._launches.pop(trial_id, None)

    def dropped(self, trial: Trial) -> None:
        """Its actor dropped it before it began: as it was before, and waiting again."""
        launch = self._launches.pop(trial.trial_id, None)
        if launch is not None:
            move(trial, PENDING)
            trial.restore_from_scratch = launch.restore_from_scratch
            trial.last_result = launch.last_result
        self.requeue(trial)

    # ---- how a launch ends ----

    def paused(self, trial: Trial, why: str | None = None, waiting: bool = False) -> None:
        """Stopped resumable; `waiting`: paused by the scheduler, which may choose it again in
        this run or, restored, in the next (any other pause waits for a restore)."""
        trial.stopping = False
        move(trial, PAUSED)
        if waiting:
            trial.decision = "PAUSE"  # stored: a restore puts it back in the scheduler's hands
            if self._drain is None:
                self.waiting.append(trial.trial_id)
        self.dirty = True
        after = f"after {trial.iteration} iterations"
        self.journal.event(f"Trial {trial.trial_name} paused{f': {why}' if why else ' ' + after}.")
        self._emit(E.TRIAL_PAUSED, trial, why=why)

    def completed(self, trial: Trial, summary: str) -> None:
        trial.stopping = False
        self.journal.event(
            f"Trial {trial.trial_name} completed after {trial.iteration} iterations: {summary}"
        )
        move(trial, TERMINATED)
        trial.last_result = {**trial.last_result, "done": True}
        self.dirty = True
        self._emit(E.TRIAL_COMPLETED, trial)

    def failed(self, trial: Trial, error: str, retry: bool) -> None:
        """Its launch failed; with `retry` it waits to run again (first in line)."""
        trial.stopping = False
        trial.num_failures += 1
        trial.error = error
        last_line = error.strip().splitlines()[-1] if error.strip() else "unknown error"
        self.journal.event(
            f"Trial {trial.trial_name} failed (failure {trial.num_failures}): {last_line}"
        )
        if retry:
            move(trial, PENDING)
            self.pending.insert(0, trial.trial_id)
        else:
            move(trial, ERROR)
        self.dirty = True
        self._emit(E.TRIAL_ERRORED, trial, error=error, will_retry=retry)

    def removed(self, trial: Trial) -> None:
        """The scheduler ended a trial that waited (paused, or pending): it never runs again."""
        for queue in (self.pending, self.waiting):
            if trial.trial_id in queue:
                queue.remove(trial.trial_id)
        self.journal.event(
            f"Trial {trial.trial_name} stopped by the scheduler after {trial.iteration} iterations."
        )
        move(trial, TERMINATED)
        trial.last_result = {**trial.last_result, "done": True}
        self.dirty = True
        self._emit(E.TRIAL_COMPLETED, trial)

    def resume(self, trial: Trial) -> None:
        """The scheduler chose a trial it paused: it launches next (not queued in `pending`)."""
        self.waiting.remove(trial.trial_id)
        move(trial, PENDING)
        trial.decision = None
        self.dirty = True

    def restart(self, trial: Trial, why: str) -> None:
        """Its launch ended to run again at once, first in line (an exploit)."""
        trial.stopping = False
        if trial.status != PENDING:  # a restored trial is pending already
            move(trial, PENDING)
        self.journal.event(f"Trial {trial.trial_name} restarts: {why}.")
        if self._drain is None:
            self.pending.insert(0, trial.trial_id)
        self.dirty = True

    def stopped_unfinished(self, trial: Trial) -> None:
        """The run ends with the trial's actor gone mid-launch: resumable from its checkpoint."""
        if trial.status == RUNNING:
            trial.stopping = False
            move(trial, PAUSED)
            self.dirty = True

    def _emit(self, kind: str, trial: Trial, **data: object) -> None:
        if self.events.active:
            self.events.emit(
                E.Event(
                    kind,
                    trial.trial_id,
                    trial.trial_name,
                    trial.config,
                    dict(trial.last_result),
                    data,
                    relpath=trial.relpath,
                )
            )
