"""The pipelining policy: which busy actor gets its next trial before its running one ends, and
which queued trials come back to wait for any actor. A pure function of what the controller
sees (pending trials, busy actors and their queues, the pace of recent trials) and of `now`, so
each case is a unit test without Ray or real timing.

Why pipeline at all: between two trials an actor otherwise waits a controller round trip (~3 ms
here), 30% of a 10 ms trial. Why not queue everything: which actor frees up first is a guess,
and a trial queued behind a long one waits while another actor starts a later trial.

- Short trials (a running average under PIPELINE_BELOW_S) are handed to a busy actor in
  batches: it holds about QUEUE_FOR_S of work beyond its running trial, at least one trial and
  at most QUEUE_DEPTH.
- Longer trials get their successor QUEUE_AHEAD_S before the running one is expected to end
  ("wake": the actor's poll returns and its next one carries the trial). Once the running trial
  is TAKE_BACK_AFTER times past the average, its queued successor is taken back.
- An actor left idle with nothing pending takes back a trial queued on a busy one (rebalance).

Pipelining changes the order in which results reach the controller relative to trial starts, so
the controller allows it only when no controller-side decision must see each result first.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

PIPELINE_BELOW_S = 0.1
QUEUE_FOR_S = 0.02
QUEUE_DEPTH = 16
QUEUE_AHEAD_S = 0.05
TAKE_BACK_AFTER = 1.5
# queuing ahead needs an average worth the name: it starts after this many trials ended
QUEUE_AHEAD_AFTER_TRIALS = 2


@dataclass
class TrialPace:
    """A running average of recent trials' lengths: what the policy knows about the future."""

    seconds: float = PIPELINE_BELOW_S * 10
    ended: int = 0

    def record(self, duration_s: float) -> None:
        self.seconds = 0.8 * self.seconds + 0.2 * duration_s
        self.ended += 1


@dataclass(frozen=True)
class SlotView:
    """A busy actor as the policy sees it: its resource shape, when its running trial began
    (None: not known), the trials queued behind it, those already being asked back."""

    request: Hashable
    running_since: float | None
    queued: tuple[str, ...] = ()
    taking_back: frozenset[str] = frozenset()
    wants_next: bool = False


@dataclass(frozen=True)
class Wake:
    """Make the actor's poll return now, so the next one hands it the next pending trial."""

    slot: int


@dataclass(frozen=True)
class TakeBack:
    """Ask the actor to drop these queued trials; those it has not begun come back pending."""

    slot: int
    trial_ids: tuple[str, ...]


@dataclass
class Plan:
    actions: list[Wake | TakeBack] = field(default_factory=list)
    next_due: float = float("inf")  # when a planned action falls due; the loop wakes then


@dataclass(frozen=True)
class Dispatch:
    """The policy, for one experiment: `may_pipeline` is False where a decision in the controller
    must see every result before its trial goes on, or actors are not reused."""

    may_pipeline: bool

    def pipelining(self, pace: TrialPace) -> bool:
        """Short trials: batches queued on busy actors."""
        return self.may_pipeline and pace.seconds < PIPELINE_BELOW_S

    def queues_ahead(self, pace: TrialPace, draining: bool) -> bool:
        """Longer trials: one successor handed over shortly before the running trial ends."""
        return (
            self.may_pipeline
            and not self.pipelining(pace)
            and not draining
            and pace.ended >= QUEUE_AHEAD_AFTER_TRIALS
        )

    def to_hand(
        self,
        held: int,
        request: Hashable,
        pending: Sequence[Hashable],
        pace: TrialPace,
        *,
        draining: bool,
        woken: bool,
    ) -> int:
        """How many of the first pending trials (their resource requests, in the order they
        run) go to an actor that holds `held` trials (its running one included) with its next
        poll, beyond any it is given anyway. `woken`: its poll returned early to fetch one."""
        if draining:  # a drain starts nothing new
            return 0
        if self.pipelining(pace):
            depth = min(QUEUE_DEPTH, max(1, round(QUEUE_FOR_S / max(pace.seconds, 1e-6))))
            room = depth + 1 - held
        elif woken and held == 1 and self.queues_ahead(pace, draining):
            room = 1
        else:
            return 0
        count = 0
        while count < room and count < len(pending) and pending[count] == request:
            count += 1
        return count

    def plan(
        self,
        busy: Sequence[SlotView],
        idle: Sequence[Hashable],
        pending: Sequence[Hashable],
        pace: TrialPace,
        now: float,
        *,
        draining: bool,
    ) -> Plan:
        """What to do now for the busy actors, given the idle ones' requests and the pending
        trials' requests (in the order they run)."""
        plan = Plan()
        taking_back = [set(view.taking_back) for view in busy]
        if not pending:  # rebalance: each idle actor takes one queued trial back
            for request in idle:
                for index, view in enumerate(busy):
                    waiting = [t for t in view.queued if t not in taking_back[index]]
                    if waiting and view.request == request:
                        plan.actions.append(TakeBack(index, (waiting[-1],)))
                        taking_back[index].add(waiting[-1])
                        break
        if not self.queues_ahead(pace, draining):
            return plan
        for index, view in enumerate(busy):
            if view.running_since is None:
                continue
            take_back_at = view.running_since + TAKE_BACK_AFTER * pace.seconds
            if not view.queued:
                # not behind a trial already running long: it would be taken back at once
                if view.wants_next or now >= take_back_at:
                    continue
                if not pending or pending[0] != view.request:
                    continue
                due, action = view.running_since + pace.seconds - QUEUE_AHEAD_S, Wake(index)
            elif not taking_back[index]:
                due, action = take_back_at, TakeBack(index, view.queued)
            else:
                continue
            if due > now:
                plan.next_due = min(plan.next_due, due)
            else:
                plan.actions.append(action)
        return plan
