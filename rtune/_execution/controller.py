"""The controller actor (the "driver actor"): owns the trial table and runs the experiment loop.

It launches trial actors with each trial's resource request (Ray places them), keeps one `poll()` in
flight per running trial, feeds every result, in order, to the searcher, scheduler and stoppers, and
writes the experiment state. A drain (signal, `stop_all()`, time budget, fail_fast) starts no new
trial, asks running ones to stop at their next iteration boundary, then writes the final state.
"""

from __future__ import annotations

import os
import posixpath
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import ray
from ray.exceptions import RayActorError, RayError
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from rtune._durable import checkpoints as retention
from rtune._durable import trial as T
from rtune._durable.lease import ExperimentLeased, LeaseKeeper, LeaseRecord
from rtune._durable.restore import reconcile_with_storage
from rtune._durable.state import StateWriter, pack, unpack
from rtune._durable.storage import Storage, StorageError
from rtune._durable.trial import Trial
from rtune._execution.intake import TrialMaker, decides_in_controller
from rtune._execution.resources import (
    ResourceRequest,
    actors_that_fit,
    can_ever_fit,
    static_request,
)
from rtune._execution.trial_actor import RemoteTrialRunner
from rtune.result_grid import TrialError
from rtune.search import BasicVariantGenerator, Searcher
from rtune.stopper import Stopper

if TYPE_CHECKING:
    from rtune._driver.first_trials import FirstTrials

MAX_STARTING_ACTORS = 16
AVAILABLE_TTL_S = 0.5
# A trial actor's death is acted on this much later: when the whole Ray is going down (the driver
# killed, its machine lost), the controller dies within it too, and the trial stays resumable
# instead of being recorded as failed by a controller that outlived its actors by a moment.
ACTOR_DEATH_GRACE_S = 1.5
# After a final drain (time budget, stop_all) trials get this long to reach their next report;
# then their actors are killed (a trainable looping without reporting never would).
FINAL_DRAIN_GRACE_S = 10.0
PREFETCH_TRIALS = 64  # configs a BasicVariantGenerator makes ahead: enough to queue
# Pipelining: trials shorter than PIPELINE_BELOW_S (a running average) are handed to a busy actor
# before its current trial ends, so it never waits a controller round trip between trials. It
# holds about QUEUE_FOR_S of work beyond the running trial, at least one trial and at most
# QUEUE_DEPTH. An actor left idle with nothing pending takes back a trial queued on a busy one
# (see _rebalance).
PIPELINE_BELOW_S = 0.1
QUEUE_FOR_S = 0.02
QUEUE_DEPTH = 16
# Longer trials get their successor QUEUE_AHEAD_S before the running one is expected to end (the
# running average), not earlier: which actor frees up first is a guess, and a trial queued behind
# a long one waits while another actor starts a later trial. Once the running trial is
# TAKE_BACK_AFTER times past that average, the queued one is taken back to wait for any actor.
QUEUE_AHEAD_S = 0.05
TAKE_BACK_AFTER = 1.5


@dataclass
class ExperimentSetup:
    """What the driver hands the controller; picklable."""

    storage: Storage
    experiment_name: str
    experiment_uid: str
    trainable_name: str
    trainable_holder: list  # [ObjectRef]: a list, so Ray passes the ref instead of resolving it
    trainable_resources: Any
    searcher: Searcher
    scheduler: Any
    stopper: Stopper | None
    metric: str | None
    mode: str | None
    max_concurrent_trials: int | None
    time_budget_s: float | None
    reuse_actors: bool
    checkpoint_config: Any
    failure_config: Any
    trial_name_creator: Any = None
    trial_dirname_creator: Any = None
    restored_trials: list[Trial] = field(default_factory=list)
    max_trials: int | None = None
    searcher_finished: bool = False
    known_trial_dirs: set = field(default_factory=set)
    state_seq: int = 0
    state_file: int = 0  # which of the two snapshot files the next snapshot replaces
    restored_state_base: int | None = None  # the seq of the snapshot a restore read
    # actors per resource shape that wait for resources beyond what the cluster holds now: the
    # demand an autoscaler sees (RTUNE_MAX_PENDING_TRIALS in the driver's environment)
    pending_demand: int = 1
    lease: LeaseRecord | None = None  # taken by the driver (rtune/_durable/lease.py)


@dataclass
class _Slot:
    """A trial actor and the trials handed to it: the running one first, then those queued."""

    actor: Any
    request: ResourceRequest
    placement_group: Any = None
    trials: list[Trial] = field(default_factory=list)
    taking_back: set[str] = field(default_factory=set)  # queued trials asked back for idle actors
    wants_next: bool = False  # woken to take the next trial before its long one ends

    @property
    def trial(self) -> Trial | None:
        return self.trials[0] if self.trials else None


class Controller:
    def __init__(self, setup: ExperimentSetup):
        self.setup = setup
        self.storage = setup.storage
        self.trials: dict[str, Trial] = {t.trial_id: t for t in setup.restored_trials}
        self.pending: list[str] = [
            t.trial_id for t in setup.restored_trials if t.status == T.PENDING
        ]
        self.searcher = setup.searcher
        self.scheduler = setup.scheduler
        self.stopper = setup.stopper
        self.state_writer = StateWriter(
            setup.storage, setup.state_seq, setup.state_file, setup.restored_state_base
        )
        # ref -> (kind, slot): "ready" (the actor's start-up) or "poll" (its trials' news)
        self._inflight: dict[Any, tuple[str, _Slot]] = {}
        self._idle: list[_Slot] = []
        self._starting = 0
        self._dying: list[tuple[float, Trial, str]] = []  # (when to act, trial, error)
        self._available: dict[str, float] = {}
        self._available_at = -1e9
        self._searcher_finished = setup.searcher_finished
        self._stop_request: str | None = None
        self._stop_reason = "stop requested"
        self._drain_reason: str | None = None
        self._drain_is_final = False
        self._final_drain_deadline = float("inf")
        self._fatal: BaseException | None = None
        self._fatal_tb: str | None = None
        self._started_at = time.monotonic()
        self._loop_cpu_s = 0.0
        self._results_seen = 0  # and when the first and the last arrived: for benchmarks
        self._taken_back = 0  # queued trials asked back for idle actors
        self._queued_ahead = 0  # long trials' successors queued before they ended
        self._trials_ended = 0  # the running average means something after a few
        self._result_times = [0.0, 0.0]
        self._dirty = True
        self._warned_requests: set[ResourceRequest] = set()
        self._lock = threading.RLock()
        self._done = False
        self.warnings: list[str] = []
        self.events: list[str] = []
        self._maker = TrialMaker(setup, self.trials, self._call_user)
        # pipelining reorders nothing a controller-side decision could see
        self._may_pipeline = not decides_in_controller(setup) and setup.reuse_actors
        self._trial_seconds = PIPELINE_BELOW_S * 10  # running average of recent trials' lengths
        # trial id -> (started at, restore_from_scratch, last_result) as they were before the
        # start, so a trial dropped before it began (a drain reached it queued) is as it was
        self._launches: dict[str, tuple[float, bool, dict]] = {}
        self._lease = (
            LeaseKeeper(setup.storage, setup.lease, self._on_lease_lost)
            if setup.lease is not None
            else None
        )

    # ---- driver-facing API (called from other actor threads) ----

    def request_stop(self, force: bool = False, reason: str = "stop requested") -> None:
        """Ask running trials to stop at once (from this thread, not at the loop's next turn),
        so a stop costs no more than the iteration in flight; the loop does the rest."""
        if self._stop_request is None:
            self._stop_reason = reason
        self._stop_request = "force" if force else (self._stop_request or "drain")
        with self._lock:
            running = [slot for kind, slot in list(self._inflight.values()) if kind == "poll"]
        for slot in running:
            slot.actor.request_stop.remote("drain")

    def location(self) -> str:
        """The experiment's storage URI, for `rtune stop` and `Tuner.restore`."""
        return self.setup.storage.uri()

    def status(self, events_from: int = 0, warnings_from: int = 0) -> dict:
        """A snapshot for the status block, with the events and warnings not yet seen."""
        with self._lock:
            snapshot = self._status_snapshot()
        snapshot["events"] = self.events[events_from:]
        snapshot["warnings"] = self.warnings[warnings_from:]
        return snapshot

    def run(self, first: FirstTrials | None = None) -> dict:
        """Run the experiment, from what the driver started while this controller started."""
        cpu_at_start = time.thread_time()
        if self._lease is not None:
            self._lease.start(controller_started=True)  # renewed from a thread from here on
        if first is not None:
            self._adopt(first)
        try:
            # the trials waiting for a slot exist before a stop is looked at: the driver's first
            # trials may have run for a while (and a stop come) before this process started,
            # and a stopped experiment lists the trials it will run on restore
            self._create_trials()
            self._loop()
        except BaseException as exc:  # reported to the driver, which raises it
            self._fatal = self._fatal or exc
            self._fatal_tb = traceback.format_exc()
        finally:
            self._release_all_actors()
            self._write_state()  # after a storage failure, a last short try
            if self._lease is not None:
                self._lease.release()
            self._loop_cpu_s = time.thread_time() - cpu_at_start
            self._done = True
        return self._summary()

    def _adopt(self, first: FirstTrials) -> None:
        """The driver's trials are the first ones (the searcher suggested them there), running
        as if launched here; its actors without a trial wait to be ready, as ours do."""
        request = static_request(self.setup.trainable_resources)
        for trial in first.trials:
            self._maker.adopt(trial)
        busy = set()
        for actor, trial_id, poll in first.running:
            slot = _Slot(actor, request, trials=[self.trials[trial_id]])
            self._mark_running(slot.trials[0])
            self._inflight[poll] = ("poll", slot)
            busy.add(actor)
        for actor in first.actors:
            if actor not in busy:
                self._inflight[actor.ready.remote()] = ("ready", _Slot(actor, request))
                self._starting += 1

    # ---- the loop ----

    def _loop(self) -> None:
        while True:
            self._check_stop_conditions()
            next_action_at = float("inf")  # when the loop has something to do without news
            if self._drain_reason is None:
                self._create_trials()
                self._launch()
                next_action_at = self._queue_ahead()
            self._act_on_actor_deaths()
            idle = not self._busy_slots() and not self._dying
            if idle and (self._drain_reason is not None or self._all_done()):
                return
            # after the launches: a trial that ended does not wait for the state write to be
            # followed by the next one (run() writes the final state)
            if self._dirty and self.state_writer.due():
                self._write_state()
            self._process(self._wait(next_action_at))

    def _wait(self, until: float) -> list:
        refs = list(self._inflight)
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
        return (
            self._searcher_finished
            and not self.pending
            and not self._busy_slots()
            and not self._dying
        )

    def _act_on_actor_deaths(self) -> None:
        now = time.monotonic()
        due = [entry for entry in self._dying if entry[0] <= now]
        self._dying = [entry for entry in self._dying if entry[0] > now]
        for _, trial, error in due:
            self._on_trial_failed(trial, error)

    def _busy_slots(self) -> list[_Slot]:
        return [slot for kind, slot in self._inflight.values() if kind == "poll"]

    def _pipelining(self) -> bool:
        return self._may_pipeline and self._trial_seconds < PIPELINE_BELOW_S

    def _check_stop_conditions(self) -> None:
        if self._drain_reason is not None:
            if self._stop_request == "force":
                self._force_stop()
            elif self._drain_is_final and time.monotonic() > self._final_drain_deadline:
                self._end_stragglers()
            return
        if self._stop_request:
            self._begin_drain(self._stop_reason)
            if self._stop_request == "force":
                self._force_stop()
        elif self.stopper is not None and self._call_user(self.stopper.stop_all):
            self._begin_drain("stopper.stop_all() returned True", final=True)
        elif (
            self.setup.time_budget_s
            and time.monotonic() - self._started_at > self.setup.time_budget_s
        ):
            self._begin_drain(f"time budget of {self.setup.time_budget_s:g} s reached", final=True)

    # ---- creating and launching trials ----

    def _create_trials(self) -> None:
        prefetch = PREFETCH_TRIALS if isinstance(self.searcher, BasicVariantGenerator) else 1
        while not self._searcher_finished and len(self.pending) < prefetch:
            if (
                self.setup.max_trials is not None
                and not isinstance(self.searcher, BasicVariantGenerator)
                and len(self.trials) >= self.setup.max_trials
            ):
                self._searcher_finished = True
                return
            trial_id = self._maker.next_id()
            config = self._call_user(self.searcher.suggest, trial_id)
            if config is None:
                return
            if config == Searcher.FINISHED:
                self._searcher_finished = True
                return
            self._add_trial(self._maker.make(trial_id, config))

    def _add_trial(self, trial: Trial) -> None:
        self.pending.append(trial.trial_id)
        self.scheduler.on_trial_add(trial.trial_id, trial.config)
        self._dirty = True

    def _launch(self) -> None:
        while self.pending:
            if self._at_concurrency_cap():
                return
            trial_id = self.scheduler.choose_trial_to_run(self.pending)
            if trial_id is None:
                return
            trial = self.trials[trial_id]
            slot = self._take_idle(trial.resources)
            if slot is None:
                self._start_actors_for(trial.resources)
                return
            self.pending.remove(trial_id)
            self._poll(slot, [trial])
        self._rebalance()
        self._drop_unneeded_idle()

    def _rebalance(self) -> None:
        """Nothing pending and an actor idle while trials wait queued behind running ones (the
        end of a run, or trials of uneven length): ask for one back for each idle actor. The
        actor drops it unless it began meanwhile; it comes back as skipped and starts here."""
        if self.pending or not self._idle:
            return
        for idle in self._idle:
            for slot in self._busy_slots():
                waiting = [t for t in slot.trials[1:] if t.trial_id not in slot.taking_back]
                if waiting and slot.request == idle.request:
                    self._take_back(slot, [waiting[-1].trial_id])
                    break

    def _take_back(self, slot: _Slot, trial_ids: list[str]) -> None:
        """Ask the slot's actor to drop these queued trials; those it has not begun come back
        as "skipped" and wait in pending again."""
        slot.taking_back.update(trial_ids)
        self._taken_back += len(trial_ids)
        slot.actor.drop_queued.remote(trial_ids)

    def _queue_ahead(self) -> float:
        """Long trials: hand a busy actor its next trial QUEUE_AHEAD_S before its running one is
        expected to end, so it starts without waiting a controller turn (~3 ms here, ~0.35% of
        1 s trials); take it back if the running one runs long (see QUEUE_AHEAD_S). Returns
        when the next of these is due (inf for none), for the loop's wait."""
        next_due = float("inf")
        if not self._queues_ahead():
            return next_due
        now = time.monotonic()
        for slot in self._busy_slots():
            action, due = self._queue_ahead_due(slot)
            if action is None:
                continue
            if due > now:
                next_due = min(next_due, due)
            elif action == "queue":  # the poll returns now; its successor carries the trial
                slot.wants_next = True
                slot.actor.wake.remote()
            else:
                self._take_back(slot, [t.trial_id for t in slot.trials[1:]])
        return next_due

    def _queue_ahead_due(self, slot: _Slot) -> tuple[str | None, float]:
        """What `_queue_ahead` will do for this slot ("queue" the next pending trial, or "take
        back" the queued ones) and from when; (None, 0) for nothing."""
        launch = self._launches.get(slot.trials[0].trial_id) if slot.trials else None
        if launch is None:
            return None, 0.0
        take_back_at = launch[0] + TAKE_BACK_AFTER * self._trial_seconds
        if len(slot.trials) == 1:
            # not behind a trial already running long: it would be taken back at once
            if slot.wants_next or time.monotonic() >= take_back_at:
                return None, 0.0
            if self._successor_waits(slot):
                return "queue", launch[0] + self._trial_seconds - QUEUE_AHEAD_S
        elif not slot.taking_back:
            return "take back", take_back_at
        return None, 0.0

    def _successor_waits(self, slot: _Slot) -> bool:
        """Whether the next pending trial can follow the slot's running one: the FIFO scheduler
        that queuing ahead requires runs pending trials in order."""
        return bool(self.pending) and self.trials[self.pending[0]].resources == slot.request

    def _queues_ahead(self) -> bool:
        return (
            self._may_pipeline
            and not self._pipelining()
            and self._drain_reason is None
            and self._trials_ended >= 2
        )

    def _at_concurrency_cap(self) -> bool:
        cap = self.setup.max_concurrent_trials
        return cap is not None and len(self._busy_slots()) >= cap

    def _take_idle(self, request: ResourceRequest) -> _Slot | None:
        for slot in self._idle:
            if slot.request == request:
                self._idle.remove(slot)
                return slot
        if self._idle:  # free the resources held by idle actors no pending trial can use
            wanted = {self.trials[trial_id].resources for trial_id in self.pending}
            for slot in [slot for slot in self._idle if slot.request not in wanted]:
                self._idle.remove(slot)
                self._kill(slot)
        return None

    def _start_actors_for(self, request: ResourceRequest) -> None:
        """Start as many actors as the free resources hold, plus `pending_demand` that wait:
        enough for the pending trials, and a visible demand for an autoscaler without a flood of
        actors."""
        wanted = sum(1 for tid in self.pending if self.trials[tid].resources == request)
        cap = self.setup.max_concurrent_trials
        if cap is not None:
            wanted = min(wanted, cap - len(self._busy_slots()))
        if self._starting >= min(wanted, MAX_STARTING_ACTORS):
            return  # enough on the way: no need to ask Ray what is free
        available = self._available_resources()
        fits = actors_that_fit(request, available, MAX_STARTING_ACTORS)
        limit = min(wanted, MAX_STARTING_ACTORS, fits + self.setup.pending_demand)
        while self._starting < limit:
            self._warn_if_unschedulable(request)
            slot = self._new_actor(request)
            self._inflight[slot.actor.ready.remote()] = ("ready", slot)
            self._starting += 1
            for key, value in request.total().items():  # until the next look at the cluster
                available[key] = available.get(key, 0) - value

    def _available_resources(self) -> dict[str, float]:
        """Ray's view of free resources, asked at most every AVAILABLE_TTL_S: asking is a GCS
        round trip that cost the controller ~40% of its time when done on every turn."""
        now = time.monotonic()
        if now - self._available_at > AVAILABLE_TTL_S:
            self._available = dict(ray.available_resources())
            self._available_at = now
        return self._available

    def _new_actor(self, request: ResourceRequest) -> _Slot:
        options: dict[str, Any] = request.actor_options()
        pg = None
        if request.uses_placement_group:
            pg = placement_group([dict(b) for b in request.bundles], strategy=request.strategy)
            options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                pg, placement_group_bundle_index=0, placement_group_capture_child_tasks=True
            )
        actor = RemoteTrialRunner.options(**options).remote(
            self.storage, self.setup.trainable_holder
        )
        return _Slot(actor, request, pg)

    def _warn_if_unschedulable(self, request: ResourceRequest) -> None:
        if request in self._warned_requests:
            return
        self._warned_requests.add(request)
        nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
        if not can_ever_fit(request, nodes):
            self.warnings.append(
                f"no node in the cluster can host a trial asking for {request.describe()}; "
                "its trials stay PENDING until such a node joins (an autoscaler may add one)."
            )

    def _poll(self, slot: _Slot, new_trials: list[Trial]) -> None:
        """The slot's next poll: acknowledgements and stop decisions for its trials, the new
        ones, and, for short trials, more queued behind them so the actor never waits for us."""
        if self._pipelining() and self._drain_reason is None:  # a drain starts nothing new
            depth = min(QUEUE_DEPTH, max(1, round(QUEUE_FOR_S / max(self._trial_seconds, 1e-6))))
            while len(slot.trials) + len(new_trials) <= depth and self.pending:
                trial_id = self.scheduler.choose_trial_to_run(self.pending)
                if trial_id is None or self.trials[trial_id].resources != slot.request:
                    break
                self.pending.remove(trial_id)
                new_trials.append(self.trials[trial_id])
        if slot.wants_next:
            slot.wants_next = False
            if self._queues_ahead() and len(slot.trials) == 1 and self._successor_waits(slot):
                new_trials.append(self.trials[self.pending.pop(0)])
                self._queued_ahead += 1
        acks = {t.trial_id: ("finish" if t.stopping else None) for t in slot.trials}
        # before they are marked running
        specs = [self._maker.spec_for(trial) for trial in new_trials]
        slot.trials.extend(new_trials)
        if new_trials and slot.trials[0] is new_trials[0]:
            self._mark_running(new_trials[0])
        self._inflight[slot.actor.poll.remote(acks, specs)] = ("poll", slot)

    def _unqueue(self, slot: _Slot, keep_head: bool = True) -> None:
        """The actor is going: trials queued on it that never began wait for another. With
        `keep_head`, the first one is the running trial, which the caller settles."""
        first = 1 if keep_head else 0
        for trial in reversed(slot.trials[first:]):
            self._return_to_pending(trial)
        del slot.trials[first:]
        slot.taking_back.clear()

    def _return_to_pending(self, trial: Trial) -> None:
        if self._drain_is_final:
            trial.status = T.TERMINATED
        elif self._drain_reason is None:
            self.pending.insert(0, trial.trial_id)
        self._dirty = True

    def _mark_running(self, trial: Trial) -> None:
        """The slot's first trial is running now (it may have queued there until now)."""
        self._launches[trial.trial_id] = (
            time.monotonic(),
            trial.restore_from_scratch,
            trial.last_result,
        )
        if trial.restore_from_scratch or trial.latest_checkpoint is None:
            trial.last_result = {}
        trial.status = T.RUNNING
        trial.restore_from_scratch = False
        self._dirty = True

    def _drop_unneeded_idle(self) -> None:
        """Idle actors go once no trial is left to start. Not while the searcher may still
        suggest more: pending runs dry between suggestions (and while short trials are queued on
        other actors), and a new actor would cost a process start."""
        if self.pending or not self._searcher_finished:
            return
        if any(slot.taking_back for slot in self._busy_slots()):
            return  # the trials asked back will need them
        for slot in list(self._idle):
            self._idle.remove(slot)
            self._kill(slot)

    # ---- processing what came back ----

    def _process(self, ready: list) -> None:
        for ref in ready:
            kind, slot = self._inflight.pop(ref)
            if kind == "ready":
                self._on_actor_ready(ref, slot)
            else:
                self._on_batch(ref, slot)

    def _on_actor_ready(self, ref: Any, slot: _Slot) -> None:
        self._starting -= 1
        try:
            ray.get(ref)
        except RayError:
            self._kill(slot)
            return
        if self._drain_reason is not None:
            self._kill(slot)
        else:
            self._idle.append(slot)

    def _on_batch(self, ref: Any, slot: _Slot) -> None:
        try:
            news = ray.get(ref)
        except RayError as exc:
            trial = slot.trial
            assert trial is not None
            self._launches.pop(trial.trial_id, None)
            self._kill(slot)
            slot.trials = []
            if isinstance(exc, RayActorError):
                due = time.monotonic() + ACTOR_DEATH_GRACE_S
                self._dying.append((due, trial, f"The trial actor died: {exc}"))
            else:
                self._on_trial_failed(trial, str(exc))
            return
        with self._lock:
            for trial in slot.trials[1:]:  # taken back (or dropped by a drain) before they began
                batch = news.get(trial.trial_id)
                if batch is not None and batch["outcome"] == "skipped":
                    del news[trial.trial_id]
                    slot.trials.remove(trial)
                    self._on_trial_end(slot, trial, "skipped", None)
            for trial in list(slot.trials):  # in the order the actor ran them
                batch = news.get(trial.trial_id)
                if batch is None:
                    break
                for result in batch["results"]:
                    self._on_result(slot, trial, result)
                if batch["outcome"] is None:
                    break
                slot.trials.remove(trial)
                if not self._on_trial_end(slot, trial, batch["outcome"], batch["error"]):
                    return  # the actor is gone
                if slot.trials:
                    self._mark_running(slot.trials[0])
        if slot.trials:
            self._poll(slot, [])
        else:
            self._release(slot)

    def _on_trial_end(self, slot: _Slot, trial: Trial, outcome: str, error: str | None) -> bool:
        """Book a trial's end; False when that cost its actor."""
        slot.taking_back.discard(trial.trial_id)
        launch = self._launches.pop(trial.trial_id, None)  # None: it never was the running one
        if outcome == "skipped":  # dropped before it began: as it was before
            if launch is not None:
                trial.status = T.PENDING
                trial.restore_from_scratch, trial.last_result = launch[1], launch[2]
            self._return_to_pending(trial)
            return True
        assert launch is not None, trial.trial_id
        started_at = launch[0]
        self._trial_seconds = 0.8 * self._trial_seconds + 0.2 * (time.monotonic() - started_at)
        self._trials_ended += 1
        if outcome in ("error", "storage_error"):
            # the actor is replaced (a failed trial may have left it broken) and began none of
            # the trials queued behind this one: they wait for another
            self._unqueue(slot, keep_head=False)
            self._kill(slot)
            if outcome == "error":
                self._on_trial_failed(trial, error or "unknown error")
            else:
                trial.status = T.PAUSED
                self._dirty = True
                self.events.append(f"Trial {trial.trial_name} paused: storage failed.")
                self._on_storage_failure(error or "storage failed")
            return False
        self._on_trial_finished(trial, outcome)
        return True

    def _on_result(self, slot: _Slot, trial: Trial, result: dict) -> None:
        if "_checkpoint_only" in result:
            self._on_checkpoint(trial, result["_checkpoint_only"], {**trial.last_result, **result})
            return
        checkpoint = result.pop("_checkpoint", None)
        trial.last_result = result
        self._dirty = True
        self._results_seen += 1
        self._result_times[self._results_seen > 1] = time.monotonic()
        if checkpoint is not None:
            self._on_checkpoint(trial, checkpoint, result)
        if trial.stopping:
            return
        result["config"] = trial.config
        try:
            self._call_user(self.searcher.on_trial_result, trial.trial_id, result)
            decision = self._call_user(self.scheduler.on_trial_result, trial.trial_id, result)
            stop = bool(self.stopper and self._call_user(self.stopper, trial.trial_id, result))
        finally:
            result.pop("config", None)
        if stop or decision == "STOP" or result.get("done"):
            trial.stopping = True

    def _on_checkpoint(self, trial: Trial, relpath: str, result: dict) -> None:
        entry = {
            "path": relpath,
            "training_iteration": result["training_iteration"],
            "time_total_s": result["time_total_s"],
            "metrics": _score_metrics(result, self.setup.checkpoint_config),
        }
        trial.latest_checkpoint = entry
        # stored fields are replaced, never changed in place: an assignment marks the trial changed
        trial.committed_checkpoints = [*trial.committed_checkpoints, entry]
        for old in retention.to_delete(trial.committed_checkpoints, self.setup.checkpoint_config):
            trial.committed_checkpoints = [c for c in trial.committed_checkpoints if c is not old]
            try:
                self.storage.uncommit_and_delete(old["path"])
            except OSError as exc:  # kept a while longer; a later restore sees it and moves on
                self.warnings.append(f"could not delete an old checkpoint: {exc}")

    def _on_trial_finished(self, trial: Trial, outcome: str) -> None:
        stopped_by_drain = outcome == "stopped" and not trial.stopping
        trial.stopping = False
        iterations = trial.iteration
        if stopped_by_drain and not self._drain_is_final:
            trial.status = T.PAUSED
            self.events.append(f"Trial {trial.trial_name} paused after {iterations} iterations.")
        else:
            self.events.append(
                f"Trial {trial.trial_name} completed after {iterations} iterations: "
                f"{_brief(trial.last_result)}"
            )
            trial.status = T.TERMINATED
            trial.last_result = {**trial.last_result, "done": True}
            self._call_user(self.searcher.on_trial_complete, trial.trial_id, trial.last_result)
            self._call_user(self.scheduler.on_trial_complete, trial.trial_id, trial.last_result)
        self._dirty = True

    def _on_trial_failed(self, trial: Trial, error: str) -> None:
        trial.stopping = False
        trial.num_failures += 1
        trial.error = error
        self._dirty = True
        self._write_error(trial, error)
        max_failures = self.setup.failure_config.max_failures
        last_line = error.strip().splitlines()[-1] if error.strip() else "unknown error"
        self.events.append(
            f"Trial {trial.trial_name} failed (failure {trial.num_failures}): {last_line}"
        )
        if self._drain_reason is None and (max_failures < 0 or trial.num_failures <= max_failures):
            reconcile_with_storage(self.storage, trial)  # it may have committed one more
            trial.status = T.PENDING
            self.pending.insert(0, trial.trial_id)
            return
        trial.status = T.ERROR
        self._call_user(self.searcher.on_trial_complete, trial.trial_id, trial.last_result, True)
        self._call_user(self.scheduler.on_trial_error, trial.trial_id)
        fail_fast = self.setup.failure_config.fail_fast
        if fail_fast and self._drain_reason is None:
            self._begin_drain(f"fail_fast: trial {trial.trial_name} failed")
            if fail_fast == "raise":
                self._fatal = TrialError(trial.trial_name, error)

    def _write_error(self, trial: Trial, error: str) -> None:
        try:
            self.storage.write_atomic(posixpath.join(trial.relpath, "error.txt"), error.encode())
        except OSError as exc:
            self.warnings.append(f"could not write error.txt of {trial.trial_name}: {exc}")

    # ---- stopping ----

    def _begin_drain(self, reason: str, final: bool = False) -> None:
        """Stop the run. A final drain (stop_all, time budget) ends unfinished trials as
        TERMINATED; any other (signals, fail_fast, errors) leaves them PAUSED or PENDING, to be
        resumed by `Tuner.restore`."""
        self._drain_reason = reason
        self._drain_is_final = final
        self._final_drain_deadline = time.monotonic() + FINAL_DRAIN_GRACE_S
        if final:
            self._searcher_finished = True
            for trial_id in self.pending:
                self.trials[trial_id].status = T.TERMINATED
            self.pending = []
        # a final drain ends the trials: as in Ray Tune, the result a trial is working on when the
        # run ends is not recorded ("finish"); any other drain records it, and class trainables
        # checkpoint there, so the restore loses nothing
        mode = "finish" if final else "drain"
        for slot in self._busy_slots():
            slot.actor.request_stop.remote(mode)
        for slot in self._idle:
            self._kill(slot)
        self._idle = []
        for ref, (kind, slot) in list(self._inflight.items()):
            if kind == "ready":
                del self._inflight[ref]
                self._starting -= 1
                self._kill(slot)
        self._write_state()

    def _end_stragglers(self) -> None:
        """Trials that did not reach a report within the final drain's grace: their actors are
        killed and they end as the drain ends them (TERMINATED) with the results they gave."""
        for ref, (kind, slot) in list(self._inflight.items()):
            if kind != "poll" or slot.trial is None:
                continue
            del self._inflight[ref]
            trial = slot.trial
            self._launches.pop(trial.trial_id, None)
            self._kill(slot)
            slot.trials = []
            self.warnings.append(
                f"trial {trial.trial_name} did not stop within {FINAL_DRAIN_GRACE_S:g} s of "
                f"'{self._drain_reason}' (it never reached a report); its actor was killed"
            )
            self._on_trial_finished(trial, "stopped")

    def _force_stop(self) -> None:
        """Kill every trial actor now. Their news in flight is lost, not their work: each
        stopped trial is brought up to what its actor had committed to storage, so the final
        state records those checkpoints and fit()'s results show the matching last result."""
        stopped = [trial for _, trial, _ in self._dying]  # no time to tell lost actor from Ray
        self._dying = []
        for ref, (_kind, slot) in list(self._inflight.items()):
            self._inflight.pop(ref, None)
            if slot.trial is not None:
                stopped.append(slot.trial)
            self._kill(slot)
        for trial in stopped:
            trial.status = T.PAUSED
            trial.stopping = False
            try:
                reconcile_with_storage(self.storage, trial)
            except (OSError, ValueError) as exc:  # the restore reconciles again
                self.warnings.append(f"could not read back {trial.trial_name}'s storage: {exc}")

    def _release(self, slot: _Slot) -> None:
        if self.setup.reuse_actors and self._drain_reason is None:
            self._idle.append(slot)
        else:
            self._kill(slot)

    def _kill(self, slot: _Slot) -> None:
        self._unqueue(slot)
        try:
            ray.kill(slot.actor)
        except Exception:
            pass
        if slot.placement_group is not None:
            try:
                remove_placement_group(slot.placement_group)
            except Exception:
                pass

    def _release_all_actors(self) -> None:
        cleanups = [slot.actor.shutdown.remote() for slot in self._idle]
        if cleanups:
            ray.wait(cleanups, num_returns=len(cleanups), timeout=5)
        for slot in self._idle:
            self._kill(slot)
        self._idle = []
        for _ref, (_, slot) in list(self._inflight.items()):
            if slot.trial is not None and slot.trial.status == T.RUNNING:
                slot.trial.status = T.PAUSED
            self._kill(slot)
        self._inflight = {}

    def _call_user(self, fn: Any, *args: Any) -> Any:
        """Call user code (searcher, stopper, scheduler); its exception ends the run cleanly."""
        try:
            return fn(*args)
        except Exception as exc:
            if self._fatal is None:
                self._fatal = exc
                self._fatal_tb = traceback.format_exc()
            if self._drain_reason is None:
                self._begin_drain(f"error in {getattr(fn, '__qualname__', fn)}: {exc}")
            return None

    # ---- state and status ----

    def _state_header(self) -> dict:
        """The experiment-level part of the state, written with every snapshot and delta."""
        return {
            "experiment_name": self.setup.experiment_name,
            "experiment_uid": self.setup.experiment_uid,
            "timestamp": time.time(),
            "searcher": pack(self.searcher.get_state()),
            "searcher_finished": self._searcher_finished,
            "scheduler": pack(self.scheduler.get_state()),
            "stopper": pack(self.stopper),
            "stop_reason": self._drain_reason,
        }

    def _write_state(self) -> None:
        if self._lease is not None and self._lease.lost:
            return  # another run owns the experiment now
        started = time.monotonic()
        try:
            self.state_writer.write(self._state_header, self.trials.values(), self._lock, started)
        except StorageError as exc:  # the trials are not lost: restore reconciles with storage
            self._on_storage_failure(str(exc))
            return
        self._dirty = False

    def _on_lease_lost(self, why: str) -> None:
        """Another run took the experiment's lease (ours had expired, or two starters raced on an
        object store): stop at once and write nothing more (called from the lease's thread)."""
        self.warnings.append(why)
        self._fatal = self._fatal or ExperimentLeased(why)
        self.request_stop(force=True, reason=why)

    def _on_storage_failure(self, error: str) -> None:
        """Storage stayed unusable through its retries: stop the run, leaving every trial
        resumable from its last committed checkpoint, and tell the user how to go on."""
        self.storage.retry_s = min(self.storage.retry_s, 10.0)  # the final write: a last try
        if self._fatal is None:
            self._fatal = StorageError(
                f"{error}. The run stopped; its trials are resumable from their last committed "
                f"checkpoints. Once the storage works again, resume with "
                f"Tuner.restore({self.storage.uri()!r})."
            )
        if self._drain_reason is None:
            self._begin_drain(f"storage failed: {error}")

    def _status_snapshot(self) -> dict:
        counts: dict[str, int] = {}
        for trial in self.trials.values():
            counts[trial.status] = counts.get(trial.status, 0) + 1
        shown = sorted(
            self.trials.values(), key=lambda t: (_STATUS_ORDER.get(t.status, 9), t.index)
        )[:20]
        requested: dict[str, float] = {}
        for slot in self._busy_slots():
            for key, value in slot.request.total().items():
                requested[key] = requested.get(key, 0) + value
        return {
            "counts": counts,
            "num_trials": len(self.trials),
            "total_trials": getattr(self.searcher, "total_trials", None),
            "rows": [
                {
                    "name": t.trial_name,
                    "status": t.status,
                    "config": t.config,
                    "last_result": t.last_result,
                }
                for t in shown
            ],
            "requested": requested,
            "elapsed_s": time.monotonic() - self._started_at,
            "drain_reason": self._drain_reason,
            "controller_pid": os.getpid(),
            "scheduler": self.scheduler.debug_string(),
            "done": self._done,
        }

    def _summary(self) -> dict:
        user_objects = self._user_objects()  # first: its warnings go with the summary
        with self._lock:  # as they are: pickled whole, cheaper than state records both ways
            trials = list(self.trials.values())
        return {
            "trials": trials,
            "fatal": pack(self._fatal) if self._fatal is not None else None,
            "fatal_tb": self._fatal_tb,
            "stop_reason": self._drain_reason,
            "run_stats": {
                **self.state_writer.stats(),
                "controller_run_s": time.monotonic() - self._started_at,
                "controller_cpu_s": self._loop_cpu_s,
                "results_seen": self._results_seen,
                "trials_asked_back": self._taken_back,
                "trials_queued_ahead": self._queued_ahead,
                "first_to_last_result_s": max(0.0, self._result_times[1] - self._result_times[0]),
            },
            "warnings": list(self.warnings),
            "drain_is_final": self._drain_is_final,
            "events": list(self.events),
            "status": self._status_snapshot(),
            "user_objects": user_objects,
        }

    def _user_objects(self) -> dict:
        """The searcher's, scheduler's and stopper's final state, for the driver to put back
        into the objects the user passed (they ran here, on copies); one that does not pickle
        is left out, never costing the run's results."""
        packed = {}
        for key, get in (
            ("searcher", self.searcher.get_state),
            ("scheduler", self.scheduler.get_state),
            ("stopper", lambda: self.stopper),
        ):
            try:
                packed[key] = pack(get())
            except Exception as exc:
                self.warnings.append(f"the {key}'s final state could not be sent back: {exc}")
        return packed


def _brief(result: dict) -> str:
    shown = {
        k: (round(v, 4) if isinstance(v, float) else v)
        for k, v in result.items()
        if k not in _AUTOFILLED and isinstance(v, (int, float, str))
    }
    return ", ".join(f"{k}={v}" for k, v in list(shown.items())[:4])


_AUTOFILLED = {
    "training_iteration",
    "time_this_iter_s",
    "time_total_s",
    "time_since_restore",
    "iterations_since_restore",
    "timestamp",
    "date",
    "trial_id",
    "experiment_tag",
    "hostname",
    "node_ip",
    "pid",
    "done",
    "checkpoint_dir_name",
}


_STATUS_ORDER = {T.RUNNING: 0, T.PENDING: 1, T.PAUSED: 2, T.ERROR: 3, T.TERMINATED: 4}


def _score_metrics(result: dict, checkpoint_config: Any) -> dict:
    attribute = checkpoint_config.checkpoint_score_attribute
    if attribute and attribute in result:
        return {attribute: result[attribute]}
    return {}


def load_trials(state: dict) -> list[Trial]:
    return [Trial.from_state(t) for t in state["trials"]]


def load_searcher_state(state: dict) -> Any:
    return unpack(state["searcher"])


RemoteController = ray.remote(num_cpus=0, max_concurrency=8)(Controller)
