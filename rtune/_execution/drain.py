"""The drain: how a run stops, and the error it stops with.

A drain (a signal, `stop_all()`, a time budget, fail_fast, an error in user code, storage that
stays down) starts no new trial and asks running ones to stop at their next iteration boundary.
A final drain (stop_all, time budget) ends unfinished trials as TERMINATED; any other leaves
them PAUSED or PENDING, for `Tuner.restore` to resume. A forced stop kills every actor at once.

`request` is called from other threads (the driver's stop, the lease's thread): it only sets
flags and tells the actors of the loop's last turn, so a stop takes effect at once whatever the
loop is doing; the loop acts on the flags at its next turn (`check`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rtune._durable.restore import reconcile_with_storage
from rtune._durable.storage import Storage
from rtune._execution import protocol as P

if TYPE_CHECKING:
    from rtune._durable.trial import Trial
    from rtune._execution.actor_pool import ActorPool
    from rtune._execution.intake import Intake
    from rtune._execution.lifecycle import Lifecycle
    from rtune._execution.reporting import Journal

# After a final drain (time budget, stop_all) trials get this long to reach their next report;
# then their actors are killed (a trainable looping without reporting never would).
FINAL_DRAIN_GRACE_S = 10.0


class Drain:
    def __init__(
        self,
        pool: ActorPool,
        lifecycle: Lifecycle,
        intake: Intake,
        journal: Journal,
        storage: Storage,
        time_budget_s: float | None,
    ):
        self._pool = pool
        self._lifecycle = lifecycle
        self._intake = intake
        self._journal = journal
        self._storage = storage
        self._time_budget_s = time_budget_s
        self.begun = False  # a drain began since the loop last stored the state
        self._started_at = time.monotonic()
        self.requested: str | None = None  # None, "drain" or "force": set from other threads
        self._requested_reason = "stop requested"
        self.reason: str | None = None  # why the drain began; None: not draining
        self.final = False
        self._deadline = float("inf")
        self.fatal: BaseException | None = None  # the error fit() raises
        self.fatal_tb: str | None = None

    @property
    def active(self) -> bool:
        return self.reason is not None

    def request(self, force: bool = False, reason: str = "stop requested") -> None:
        """Ask running trials to stop at once (from the caller's thread, not at the loop's next
        turn), so a stop costs no more than the iteration in flight; the loop does the rest."""
        if self.requested is None:
            self._requested_reason = reason
        self.requested = "force" if force else (self.requested or "drain")
        for actor in self._pool.stop_targets:
            actor.request_stop.remote(P.DRAIN)

    def fail(self, exc: BaseException, tb: str | None = None) -> None:
        """The run fails with `exc` (the first error wins; the others follow from it)."""
        if self.fatal is None:
            self.fatal = exc
            self.fatal_tb = tb

    def check(self, stop_all: Callable[[], Any], finish: Callable[[Trial, str], None]) -> None:
        """The loop's turn: begin a drain that was asked for or is due (`stop_all` asks the
        stopper), or move one along (`finish` ends a straggler's trial)."""
        if self.reason is not None:
            if self.requested == "force":
                self.force_stop()
            elif self.final and time.monotonic() > self._deadline:
                self._end_stragglers(finish)
            return
        if self.requested:
            self.begin(self._requested_reason)
            if self.requested == "force":
                self.force_stop()
        elif stop_all():
            self.begin("stopper.stop_all() returned True", final=True)
        elif self._time_budget_s and time.monotonic() - self._started_at > self._time_budget_s:
            self.begin(f"time budget of {self._time_budget_s:g} s reached", final=True)

    def begin(self, reason: str, final: bool = False) -> None:
        self.reason = reason
        self.final = final
        self._deadline = time.monotonic() + FINAL_DRAIN_GRACE_S
        if final:
            self._intake.finished = True
        self._lifecycle.begin_drain(final)
        # a final drain ends the trials: as in Ray Tune, the result a trial is working on when the
        # run ends is not recorded ("finish"); any other drain records it, and class trainables
        # checkpoint there, so the restore loses nothing
        self._pool.request_stop(P.FINISH if final else P.DRAIN)
        self._pool.kill_idle()
        self._pool.kill_starting()
        self.begun = True  # the loop publishes the status, then stores the state, at once

    def _end_stragglers(self, finish: Callable[[Trial, str], None]) -> None:
        """Trials that did not reach a report within the final drain's grace: their actors are
        killed and they end as the drain ends them (TERMINATED) with the results they gave."""
        for trial in self._pool.kill_busy():
            self._lifecycle.end_launch(trial.trial_id)
            self._journal.warn(
                f"trial {trial.trial_name} did not stop within {FINAL_DRAIN_GRACE_S:g} s of "
                f"'{self.reason}' (it never reached a report); its actor was killed"
            )
            finish(trial, P.STOPPED)

    def force_stop(self) -> None:
        """Kill every trial actor now. Their news in flight is lost, not their work: each
        stopped trial is brought up to what its actor had committed to storage, so the final
        state records those checkpoints and fit()'s results show the matching last result."""
        stopped: list[Trial] = [trial for _, trial, _ in self._pool.dying]
        self._pool.dying = []  # no time to tell a lost actor from a Ray going down
        stopped += self._pool.kill_all()
        for trial in stopped:
            self._lifecycle.end_launch(trial.trial_id)
            self._lifecycle.stopped_unfinished(trial)
            try:
                reconcile_with_storage(self._storage, trial)
            except (OSError, ValueError) as exc:  # the restore reconciles again
                self._journal.warn(f"could not read back {trial.trial_name}'s storage: {exc}")
