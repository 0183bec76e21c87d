"""The first trials of a fresh run, started by the driver while the controller actor starts.

Ray starts the controller's process after the trial actors' (as many at once as there are CPUs),
~0.2-0.3 s later on a small machine: every fit() paid that before its first trial. The driver
starts the first trial actors and trials itself, with the controller's own `TrialMaker`, and the
controller adopts them (`Controller._adopt`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import ray

from rtune._durable.trial import Trial
from rtune._execution.controller import MAX_STARTING_ACTORS, ExperimentSetup
from rtune._execution.intake import TrialMaker
from rtune._execution.resources import actors_that_fit, static_request
from rtune._execution.trial_actor import RemoteTrialRunner
from rtune.schedulers import FIFOScheduler, TrialScheduler
from rtune.search import BasicVariantGenerator, Searcher

# A longer head start delays the controller that short trials need at once: at 1.0 s, 2,000
# trivial trials ran at ~970 trials/s instead of ~1,200; at 0.3 s, at ~1,200-1,300.
FIRST_TRIALS_WAIT_S = 0.3


@dataclass
class FirstTrials:
    """What the driver started before the controller was up: its trial actors, and the trials
    already running on some of them with the poll that awaits their news (refs in a dataclass:
    Ray passes them on, unresolved)."""

    actors: list
    trials: list[Trial] = field(default_factory=list)
    running: list[tuple[Any, str, Any]] = field(default_factory=list)  # (actor, trial id, poll)


def first_trial_actors(setup: ExperimentSetup, expected_trials: int | None) -> list:
    """Trial actors for the first trials. Only for a request known without a config and without
    a placement group; as many as the cluster holds, not only its free resources now: a fit()
    right after another finds the CPUs of the last one's actors, killed moments ago, not yet
    free (~0.4 s later start on a small machine)."""
    request = static_request(setup.trainable_resources)
    if request is None or request.uses_placement_group:
        return []
    count = actors_that_fit(request, ray.cluster_resources(), MAX_STARTING_ACTORS)
    for limit in (setup.max_concurrent_trials, expected_trials):
        if limit is not None:
            count = min(count, limit)
    return [
        RemoteTrialRunner.options(**request.actor_options()).remote(
            setup.storage, setup.trainable_holder
        )
        for _ in range(max(count, 0))
    ]


def start_first_trials(setup: ExperimentSetup, actors: list) -> FirstTrials:
    """Start the first trials on the driver's first actors.

    Only where no user code runs in making a trial (the default searcher, scheduler and names)
    and nothing is restored. The searcher's state moves on with it: `setup` is sent to the
    controller afterwards."""
    first = FirstTrials(actors)
    if not (
        actors
        and not setup.restored_trials
        and not setup.known_trial_dirs
        and type(setup.searcher) is BasicVariantGenerator
        and type(setup.scheduler) in (FIFOScheduler, TrialScheduler)
        and setup.trial_name_creator is None
        and setup.trial_dirname_creator is None
    ):
        return first
    maker = TrialMaker(setup, {}, call_user=lambda fn, *args: fn(*args))
    for actor in actors:
        trial_id = maker.next_id()
        try:  # configs may hold user functions (sample_from): the controller meets any error
            config = setup.searcher.suggest(trial_id)
        except Exception:
            break
        if config is None or config == Searcher.FINISHED:
            break
        trial = maker.make(trial_id, config)
        setup.scheduler.on_trial_add(trial_id, config)
        first.trials.append(trial)
        first.running.append((actor, trial_id, actor.poll.remote({}, [maker.spec_for(trial)])))
    return first


def await_first_trials(first: FirstTrials) -> None:
    """Before the controller actor is asked for, give the actors running the driver's first
    trials a head start of up to FIRST_TRIALS_WAIT_S. Three processes starting at once on a small
    machine share its cores: the first trials began 0.1-0.4 s later with the controller's process
    starting beside theirs, though they do not need it (their results wait in the actors)."""
    if first.running:
        refs = [actor.ready.remote() for actor, _, _ in first.running]
        ray.wait(refs, num_returns=len(refs), timeout=FIRST_TRIALS_WAIT_S)
