"""Handing trials to actors: the scheduler chooses among pending trials, the actor pool supplies
an idle actor (or starts one), and the dispatch policy decides what a busy actor holds queued.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rtune._durable import checkpoints as retention
from rtune._durable import trial as T
from rtune._execution import dispatch as D
from rtune._execution import protocol as P
from rtune._execution.intake import decides_in_controller
from rtune._execution.views import ControllerView

if TYPE_CHECKING:
    from rtune._durable.trial import Trial
    from rtune._execution.actor_pool import ActorPool, Slot
    from rtune._execution.drain import Drain
    from rtune._execution.intake import Intake
    from rtune._execution.lifecycle import Lifecycle
    from rtune._execution.setup import ExperimentSetup


class Launcher:
    def __init__(
        self,
        setup: ExperimentSetup,
        trials: dict[str, Trial],
        lifecycle: Lifecycle,
        pool: ActorPool,
        intake: Intake,
        drain: Drain,
    ):
        self._setup = setup
        self._trials = trials
        self._lifecycle = lifecycle
        self._pool = pool
        self._intake = intake
        self._drain = drain
        # pipelining reorders nothing a controller-side decision could see, and hands out the
        # pending trials in their order
        self._dispatch = D.Dispatch(
            not decides_in_controller(setup)
            and setup.scheduler.needs.runs_in_order
            and setup.reuse_actors
        )
        self.pace = D.TrialPace()
        self._in_order = setup.scheduler.needs.runs_in_order
        self._view = ControllerView(trials, setup.storage)
        self._pending_requests = _PendingRequests(lifecycle.pending, trials)
        self.taken_back = 0  # queued trials asked back for idle actors
        self.queued_ahead = 0  # long trials' successors queued before they ended
        self.chose_none = False  # the scheduler started none of the waiting trials last turn

    def launch(self) -> float:
        """Start pending trials on idle actors (or start actors for them), then apply the
        dispatch plan; returns when the plan's next action falls due."""
        pending, waiting = self._lifecycle.pending, self._lifecycle.waiting
        cap = self._setup.max_concurrent_trials
        self.chose_none = False
        while (pending or waiting) and (cap is None or len(self._pool.busy()) < cap):
            # pending trials first in line, then those the scheduler paused
            candidates = pending + waiting if waiting else pending
            trial_id = self._choose(candidates)
            if trial_id is None:
                self.chose_none = True
                break
            trial = self._trials[trial_id]
            slot = self._pool.take_idle(trial.resources, self._wanted_requests)
            if slot is None:
                wanted = sum(1 for t in candidates if self._trials[t].resources == trial.resources)
                if cap is not None:
                    wanted = min(wanted, cap - len(self._pool.busy()))
                self._pool.start_for(trial.resources, wanted, self._setup.pending_demand)
                break
            if trial_id in waiting:
                self._lifecycle.resume(trial)
            else:
                pending.remove(trial_id)
            self.poll(slot, [trial])
        busy = self._pool.busy()
        views = [
            D.SlotView(
                slot.request,
                self._lifecycle.started_at(slot.trials[0].trial_id),
                tuple(t.trial_id for t in slot.trials[1:]),
                frozenset(slot.taking_back),
                slot.wants_next,
            )
            for slot in busy
        ]
        idle = [slot.request for slot in self._pool.idle]
        plan = self._dispatch.plan(
            views, idle, self._pending_requests, self.pace, time.monotonic(),
            draining=self._drain.active,
        )  # fmt: skip
        for action in plan.actions:
            if isinstance(action, D.Wake):
                self._pool.wake(busy[action.slot])
            else:
                self._pool.take_back(busy[action.slot], action.trial_ids)
                self.taken_back += len(action.trial_ids)
        self._drop_unneeded_idle()
        return plan.next_due

    def _choose(self, candidates: list[str]) -> str | None:
        """The scheduler's choice among the waiting trials; the first, without asking, where
        it declares it runs them in order (asking means a view of every trial)."""
        if self._in_order:
            return candidates[0]
        chosen = self._setup.scheduler.choose_trial_to_run(self._view)
        if chosen is None or chosen.trial_id not in candidates:
            return None  # nothing now, or a trial that cannot start (running, queued, ended)
        return chosen.trial_id

    def _wanted_requests(self) -> set:
        waiting = self._lifecycle.pending + self._lifecycle.waiting
        return {self._trials[trial_id].resources for trial_id in waiting}

    def _drop_unneeded_idle(self) -> None:
        """Idle actors go once no trial is left to start. Not while the searcher may still
        suggest more: pending runs dry between suggestions (and while short trials are queued on
        other actors), and a new actor would cost a process start."""
        if self._lifecycle.pending or self._lifecycle.waiting or not self._intake.finished:
            return
        if not self._pool.idle:
            return
        if any(slot.taking_back for slot in self._pool.busy()):
            return  # the trials asked back will need them
        self._pool.kill_idle()

    def poll(self, slot: Slot, new_trials: list[Trial]) -> None:
        """The slot's next poll: acknowledgements and stop decisions for its trials, the new
        ones, and, for short trials, more queued behind them so the actor never waits for us."""
        woken, slot.wants_next = slot.wants_next, False
        extra = self._dispatch.to_hand(
            len(slot.trials) + len(new_trials), slot.request, self._pending_requests, self.pace,
            draining=self._drain.active, woken=woken,
        )  # fmt: skip
        if extra:
            pending = self._lifecycle.pending
            new_trials += [self._trials[trial_id] for trial_id in pending[:extra]]
            del pending[:extra]
            if woken:
                self.queued_ahead += extra
        # a pause or an exploit stops as a drain does: the result recorded, a checkpoint there
        acks = {t.trial_id: _stop_mode(t) for t in slot.trials}
        # before they are marked running
        specs = [self._intake.maker.spec_for(trial) for trial in new_trials]
        slot.trials.extend(new_trials)
        if new_trials and slot.trials[0] is new_trials[0]:
            self._lifecycle.start(new_trials[0])
        self._pool.poll(slot, P.Poll(acks, specs))


def _stop_mode(trial: Trial) -> str | None:
    if not trial.stopping:
        return None
    if trial.decision == T.STOP_DECIDED or _paused_at_own_checkpoint(trial):
        return P.FINISH
    if isinstance(trial.decision, dict):  # an exploit: it restarts from a checkpoint fixed already
        return P.FINISH
    return P.DRAIN


def _paused_at_own_checkpoint(trial: Trial) -> bool:
    """A pause decided at a result that committed the trial's checkpoint stops right there, as
    Ray Tune pauses: a drain would let a function trainable run (and record) one more iteration
    past the decision, which a synchronous scheduler (HyperBand) has not allowed."""
    entry = trial.latest_checkpoint
    return (
        trial.decision == T.PAUSE_DECIDED
        and entry is not None
        and not retention.is_foreign(entry, trial.trial_id)
        and entry.get("training_iteration") == trial.last_result.get("training_iteration")
    )


class _PendingRequests(Sequence):
    """The pending trials' resource requests, in order, read lazily: the dispatch policy looks
    at the first few of what may be thousands."""

    def __init__(self, pending: list[str], trials: dict[str, Trial]):
        self._pending = pending
        self._trials = trials

    def __len__(self) -> int:
        return len(self._pending)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self._trials[t].resources for t in self._pending[index]]
        return self._trials[self._pending[index]].resources
