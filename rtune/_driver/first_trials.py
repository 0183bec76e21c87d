"""The first trials of a fresh run, started by the driver while the controller actor starts.

Ray starts the controller's process after the trial actors' (as many at once as there are CPUs),
~0.2-0.3 s later on a small machine: every fit() paid that before its first trial. The driver
starts the first trial actors and trials itself, through the controller's own trial intake, and
the controller adopts them (`Controller._adopt`), with the error user code raised here, if any.
"""

from __future__ import annotations

import traceback
from typing import Any

import ray

from rtune._execution.actor_pool import MAX_STARTING_ACTORS, new_slot
from rtune._execution.driver_messages import FirstTrials
from rtune._execution.intake import Intake
from rtune._execution.protocol import Poll
from rtune._execution.resources import actors_that_fit, static_request
from rtune._execution.setup import ExperimentSetup

# A longer head start delays the controller that short trials need at once: at 1.0 s, 2,000
# trivial trials ran at ~970 trials/s instead of ~1,200; at 0.3 s, at ~1,200-1,300.
FIRST_TRIALS_WAIT_S = 0.3


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
        new_slot(request, setup.storage, setup.trainable_holder).actor for _ in range(max(count, 0))
    ]


def driver_starts_trials(setup: ExperimentSetup) -> bool:
    """Whether the driver may start trials: where the searcher's suggestions may be made ahead,
    the scheduler runs trials in order (both declared in their `needs`), no name creator runs,
    and nothing is restored."""
    return bool(
        not setup.restored_trials
        and not setup.known_trial_dirs
        and setup.searcher.needs.suggests_ahead
        and setup.scheduler.needs.runs_in_order
        and setup.trial_name_creator is None
        and setup.trial_dirname_creator is None
    )


def start_first_trials(setup: ExperimentSetup, actors: list) -> FirstTrials:
    """Start the first trials on the driver's first actors, where `driver_starts_trials`. The
    searcher's state moves on with it: `setup` is sent to the controller afterwards."""
    first = FirstTrials(actors)
    if not (actors and driver_starts_trials(setup)):
        return first

    def call_user(fn: Any, *args: Any) -> Any:
        """Configs may hold user functions (sample_from): an error there ends the run, in the
        controller, as one there would."""
        try:
            return fn(*args)
        except Exception as exc:
            if first.error is None:
                first.error = (exc, traceback.format_exc(), getattr(fn, "__qualname__", str(fn)))
            return None

    intake = Intake(setup, {}, call_user)
    for actor in actors:
        trial = intake.next_trial() if first.error is None else None
        if trial is None:
            break
        spec = intake.maker.spec_for(trial)
        first.trials.append(trial)
        first.running.append((actor, trial.trial_id, actor.poll.remote(Poll({}, [spec]))))
    setup.searcher_finished = intake.finished
    return first


def await_first_trials(first: FirstTrials) -> None:
    """Before the controller actor is asked for, give the actors running the driver's first
    trials a head start of up to FIRST_TRIALS_WAIT_S. Three processes starting at once on a small
    machine share its cores: the first trials began 0.1-0.4 s later with the controller's process
    starting beside theirs, though they do not need it (their results wait in the actors)."""
    if first.running:
        refs = [actor.ready.remote() for actor, _, _ in first.running]
        ray.wait(refs, num_returns=len(refs), timeout=FIRST_TRIALS_WAIT_S)
