"""The actor pool: the only code that creates, places and kills trial actors, and the controller's
only caller of them.

It holds every actor the controller has: those starting (their `ready()` in flight), the busy
ones (one `poll()` in flight each, with the trials handed to them) and the idle ones kept for
reuse. Placement is Ray's: the pool asks for an actor with a trial's resource request (in a
placement group where the request has bundles) and Ray decides where it runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import RayActorError
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from rtune._durable.trial import Trial
from rtune._execution.protocol import Poll
from rtune._execution.resources import ResourceRequest, actors_that_fit, can_ever_fit
from rtune._execution.trial_actor import RemoteTrialRunner

MAX_STARTING_ACTORS = 16
AVAILABLE_TTL_S = 0.5
# A trial actor's death is acted on this much later: when the whole Ray is going down (the driver
# killed, its machine lost), the controller dies within it too, and the trial stays resumable
# instead of being recorded as failed by a controller that outlived its actors by a moment.
ACTOR_DEATH_GRACE_S = 1.5

STARTING, BUSY = "ready", "poll"  # what a ref in flight awaits: an actor's start, a poll


@dataclass
class Slot:
    """A trial actor and the trials handed to it: the running one first, then those queued."""

    actor: Any
    request: ResourceRequest
    placement_group: Any = None
    trials: list[Trial] = field(default_factory=list)
    taking_back: set[str] = field(default_factory=set)  # queued trials asked back
    wants_next: bool = False  # woken to take the next trial before its long one ends

    @property
    def trial(self) -> Trial | None:
        return self.trials[0] if self.trials else None


class ActorPool:
    """`on_unqueued` receives the trials queued on an actor that goes before they began (they
    wait for another); `warn` a line for the user."""

    def __init__(
        self,
        storage: Any,
        trainable_holder: list,
        on_unqueued: Callable[[Trial], None],
        warn: Callable[[str], None],
    ):
        self._storage = storage
        self._trainable_holder = trainable_holder
        self._on_unqueued = on_unqueued
        self._warn = warn
        self.inflight: dict[Any, tuple[str, Slot]] = {}
        self.idle: list[Slot] = []
        self.starting = 0
        self.dying: list[tuple[float, Trial, str]] = []  # (when to act, trial, error)
        # the busy actors as of the loop's last turn: what a stop from another thread tells
        self.stop_targets: tuple = ()
        self._available: dict[str, float] = {}
        self._available_at = -1e9
        self._warned_requests: set[ResourceRequest] = set()

    # ---- what is there ----

    def busy(self) -> list[Slot]:
        return [slot for kind, slot in self.inflight.values() if kind == BUSY]

    def publish_stop_targets(self) -> None:
        self.stop_targets = tuple(
            slot.actor for kind, slot in self.inflight.values() if kind == BUSY
        )

    # ---- getting an actor ----

    def adopt_busy(self, actor: Any, request: ResourceRequest, trial: Trial, poll: Any) -> Slot:
        """An actor the driver started, running a trial (see `_driver/first_trials.py`)."""
        slot = Slot(actor, request, trials=[trial])
        self.inflight[poll] = (BUSY, slot)
        return slot

    def adopt_starting(self, actor: Any, request: ResourceRequest) -> None:
        self.inflight[actor.ready.remote()] = (STARTING, Slot(actor, request))
        self.starting += 1

    def take_idle(
        self, request: ResourceRequest, wanted: Callable[[], set[ResourceRequest]]
    ) -> Slot | None:
        """An idle actor for the request; idle actors no `wanted()` request can use are freed."""
        for slot in self.idle:
            if slot.request == request:
                self.idle.remove(slot)
                return slot
        if not self.idle:
            return None
        needed = wanted()
        for slot in [slot for slot in self.idle if slot.request not in needed]:
            self.idle.remove(slot)
            self.kill(slot)
        return None

    def start_for(self, request: ResourceRequest, wanted: int, pending_demand: int) -> None:
        """Start as many actors as the free resources hold, plus `pending_demand` that wait:
        enough for `wanted` trials, and a visible demand for an autoscaler without a flood."""
        if self.starting >= min(wanted, MAX_STARTING_ACTORS):
            return  # enough on the way: no need to ask Ray what is free
        available = self._available_resources()
        fits = actors_that_fit(request, available, MAX_STARTING_ACTORS)
        limit = min(wanted, MAX_STARTING_ACTORS, fits + pending_demand)
        while self.starting < limit:
            self._warn_if_unschedulable(request)
            slot = self._new_actor(request)
            self.inflight[slot.actor.ready.remote()] = (STARTING, slot)
            self.starting += 1
            for key, value in request.total().items():  # until the next look at the cluster
                available[key] = available.get(key, 0) - value

    def on_started(self, ref: Any, slot: Slot, keep: bool) -> None:
        """Its `ready()` returned: idle from now on if `keep` and it started well."""
        self.starting -= 1
        try:
            ray.get(ref)
        except ray.exceptions.RayError:
            keep = False
        if keep:
            self.idle.append(slot)
        else:
            self.kill(slot)

    # ---- calls ----

    def poll(self, slot: Slot, poll: Poll) -> None:
        self.inflight[slot.actor.poll.remote(poll)] = (BUSY, slot)

    def wake(self, slot: Slot) -> None:
        slot.wants_next = True
        slot.actor.wake.remote()

    def take_back(self, slot: Slot, trial_ids: tuple[str, ...] | list[str]) -> None:
        slot.taking_back.update(trial_ids)
        slot.actor.drop_queued.remote(list(trial_ids))

    def request_stop(self, mode: str) -> None:
        for slot in self.busy():
            slot.actor.request_stop.remote(mode)

    # ---- losing an actor ----

    def on_poll_failed(self, slot: Slot, exc: Exception) -> Trial:
        """A poll raised: the actor goes, and its queued trials wait for another. Returns the
        running trial; where the actor died, it is also acted on ACTOR_DEATH_GRACE_S later
        (`due_deaths`), and the caller does nothing more with it."""
        trial = slot.trial
        assert trial is not None
        self.kill(slot)
        slot.trials = []
        if isinstance(exc, RayActorError):
            error = f"The trial actor died: {exc}"
            self.dying.append((time.monotonic() + ACTOR_DEATH_GRACE_S, trial, error))
        return trial

    def due_deaths(self) -> list[tuple[Trial, str]]:
        """The trials whose actor died long enough ago, with the error to record."""
        now = time.monotonic()
        due = [(trial, error) for at, trial, error in self.dying if at <= now]
        self.dying = [entry for entry in self.dying if entry[0] > now]
        return due

    def release(self, slot: Slot, keep: bool) -> None:
        """A slot whose trials all ended: kept for the next trial, or killed."""
        if keep:
            self.idle.append(slot)
        else:
            self.kill(slot)

    def kill_idle(self) -> None:
        for slot in self.idle:
            self.kill(slot)
        self.idle = []

    def kill_starting(self) -> None:
        for ref, (kind, slot) in list(self.inflight.items()):
            if kind == STARTING:
                del self.inflight[ref]
                self.starting -= 1
                self.kill(slot)

    def kill_busy(self) -> list[Trial]:
        """Kill the busy actors now; returns the trials they were running (the caller settles
        them)."""
        running = []
        for ref, (kind, slot) in list(self.inflight.items()):
            if kind == BUSY:
                del self.inflight[ref]
                if slot.trial is not None:
                    running.append(slot.trial)
                self.kill(slot)
                slot.trials = []
        return running

    def kill_all(self) -> list[Trial]:
        """Kill every actor in flight now; returns the trials they were running."""
        self.kill_starting()
        return self.kill_busy()

    def shutdown(self) -> list[Trial]:
        """The run is over: idle actors shut down (their cleanup runs), the others are killed.
        Returns the trials still running on them."""
        cleanups = [slot.actor.shutdown.remote() for slot in self.idle]
        if cleanups:
            ray.wait(cleanups, num_returns=len(cleanups), timeout=5)
        self.kill_idle()
        running = []
        for _ref, (_, slot) in list(self.inflight.items()):
            if slot.trial is not None:
                running.append(slot.trial)
            self.kill(slot)
        self.inflight = {}
        self.stop_targets = ()
        return running

    def kill(self, slot: Slot, keep_head: bool = True) -> None:
        """Kill the slot's actor; the trials queued behind its running one wait for another.
        Without `keep_head`, its first trial never began either (the running one ended)."""
        first = 1 if keep_head else 0
        queued = slot.trials[first:]
        del slot.trials[first:]
        slot.taking_back.clear()
        for trial in reversed(queued):
            self._on_unqueued(trial)
        try:
            ray.kill(slot.actor)
        except Exception:
            pass
        if slot.placement_group is not None:
            try:
                remove_placement_group(slot.placement_group)
            except Exception:
                pass

    # ---- placement ----

    def _new_actor(self, request: ResourceRequest) -> Slot:
        return new_slot(request, self._storage, self._trainable_holder)

    def _available_resources(self) -> dict[str, float]:
        """Ray's view of free resources, asked at most every AVAILABLE_TTL_S: asking is a GCS
        round trip that cost the controller ~40% of its time when done on every turn."""
        now = time.monotonic()
        if now - self._available_at > AVAILABLE_TTL_S:
            self._available = dict(ray.available_resources())
            self._available_at = now
        return self._available

    def _warn_if_unschedulable(self, request: ResourceRequest) -> None:
        if request in self._warned_requests:
            return
        self._warned_requests.add(request)
        nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
        if not can_ever_fit(request, nodes):
            self._warn(
                f"no node in the cluster can host a trial asking for {request.describe()}; "
                "its trials stay PENDING until such a node joins (an autoscaler may add one)."
            )


def new_slot(request: ResourceRequest, storage: Any, trainable_holder: list) -> Slot:
    """A new trial actor for the request, in a placement group of its bundles where it has
    them (the driver's first actors come from here too)."""
    options: dict[str, Any] = request.actor_options()
    pg = None
    if request.uses_placement_group:
        pg = placement_group([dict(b) for b in request.bundles], strategy=request.strategy)
        options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
            pg, placement_group_bundle_index=0, placement_group_capture_child_tasks=True
        )
    actor = RemoteTrialRunner.options(**options).remote(storage, trainable_holder)
    return Slot(actor, request, pg)


def kill_actors(actors: list) -> None:
    """Kill trial actors no pool holds (the driver's first ones, when its run ends)."""
    for actor in actors:
        try:
            ray.kill(actor)
        except Exception:  # gone already
            pass
