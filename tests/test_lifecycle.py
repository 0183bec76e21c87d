"""Trial lifecycle (rtune/_execution/lifecycle.py): the only writer of a trial's status. A wrong
status loses work on restore, so the allowed transitions are pinned here edge by edge, and each
of Lifecycle's changes is checked for what goes with it: the pending queue, the status-block
line, the event listeners receive. Real Trial objects, no Ray."""

import itertools

import pytest

from rtune._durable.trial import ERROR, PAUSED, PENDING, RUNNING, TERMINATED, Trial
from rtune._execution import events as E
from rtune._execution.events import EventBus
from rtune._execution.lifecycle import TRANSITIONS, Lifecycle, TransitionError, move
from rtune._execution.reporting import Journal
from rtune._execution.resources import ResourceRequest

ONE_CPU = ResourceRequest(((("CPU", 1.0),),))
STATUSES = (PENDING, RUNNING, PAUSED, TERMINATED, ERROR)

# The documented edges. A change here is a change to what a restore can decide from: make it
# here on purpose, together with the table.
ALLOWED = {
    (PENDING, RUNNING),
    (PENDING, TERMINATED),
    (PENDING, PAUSED),  # a restore carrying out a pause decided before the stop
    (RUNNING, PENDING),
    (RUNNING, PAUSED),
    (RUNNING, TERMINATED),
    (RUNNING, ERROR),
    (PAUSED, PENDING),
    (PAUSED, TERMINATED),
    (ERROR, PENDING),
}


def make_trial(index: int, status: str = PENDING, **fields) -> Trial:
    """A trial as the intake makes it (TrialMaker.make)."""
    trial_id = f"exp_{index:05d}"
    trial = Trial(
        trial_id=trial_id,
        index=index,
        trial_name=f"train_{trial_id}",
        relpath=f"train_{trial_id}",
        config={"lr": index / 10},
        experiment_tag=f"{index}_lr={index / 10}",
        resources=ONE_CPU,
        status=status,
    )
    for name, value in fields.items():
        setattr(trial, name, value)
    return trial


def make_run(*trials: Trial, listeners=None):
    table = {t.trial_id: t for t in trials}
    bus = EventBus(listeners or [])
    journal = Journal()
    return Lifecycle(table, bus, journal), bus, journal


def launch(lifecycle: Lifecycle, trial: Trial) -> None:
    """What the launcher does: off the pending queue, onto an actor, running."""
    lifecycle.pending.remove(trial.trial_id)
    lifecycle.start(trial)


# ---- the transition table ----


def test_the_table_holds_exactly_the_documented_edges():
    assert set(TRANSITIONS) == ALLOWED
    assert len(TRANSITIONS) == 10
    assert all(isinstance(why, str) and why for why in TRANSITIONS.values())


@pytest.mark.parametrize(("before", "after"), sorted(ALLOWED))
def test_an_allowed_transition_changes_the_status(before, after):
    trial = make_trial(3, status=before)
    move(trial, after)
    assert trial.status == after


@pytest.mark.parametrize(
    ("before", "after"),
    [pair for pair in itertools.product(STATUSES, STATUSES) if pair not in ALLOWED],
)
def test_any_other_transition_is_refused_naming_the_trial_and_both_statuses(before, after):
    trial = make_trial(3, status=before)
    with pytest.raises(TransitionError) as raised:
        move(trial, after)
    message = str(raised.value)
    assert trial.trial_name in message
    assert f"{before} -> {after}" in message
    assert trial.status == before


def test_lifecycle_changes_go_through_the_table():
    """A trial that finished cannot be completed again: the lifecycle refuses, not overwrites."""
    trial = make_trial(0)
    lifecycle, _, _ = make_run(trial)
    launch(lifecycle, trial)
    lifecycle.completed(trial, "score=1")
    with pytest.raises(TransitionError, match="TERMINATED -> TERMINATED"):
        lifecycle.completed(trial, "score=1")
    with pytest.raises(TransitionError, match="TERMINATED -> PAUSED"):
        lifecycle.paused(trial)
    assert trial.status == TERMINATED


# ---- a drain reaching queued trials ----


def test_a_queued_trial_dropped_in_a_final_drain_ends_terminated():
    queued = make_trial(0)
    lifecycle, _, _ = make_run(queued, make_trial(1))
    lifecycle.pending.remove(queued.trial_id)  # handed to a busy actor, never began
    lifecycle.begin_drain(final=True)
    lifecycle.requeue(queued)
    assert queued.status == TERMINATED
    assert lifecycle.pending == []


def test_a_queued_trial_dropped_in_a_resumable_drain_stays_pending_for_a_restore():
    queued, other = make_trial(0), make_trial(1)
    lifecycle, _, _ = make_run(queued, other)
    lifecycle.pending.remove(queued.trial_id)
    lifecycle.begin_drain(final=False)
    lifecycle.requeue(queued)
    assert queued.status == PENDING
    assert lifecycle.pending == [other.trial_id]
    assert other.status == PENDING


def test_a_queued_trial_dropped_outside_a_drain_runs_next():
    queued, other = make_trial(0), make_trial(1)
    lifecycle, _, _ = make_run(queued, other)
    lifecycle.pending.remove(queued.trial_id)
    lifecycle.requeue(queued)
    assert queued.status == PENDING
    assert lifecycle.pending == [queued.trial_id, other.trial_id]


def test_a_started_trial_dropped_in_a_final_drain_ends_terminated():
    trial = make_trial(0)
    lifecycle, _, _ = make_run(trial)
    launch(lifecycle, trial)
    lifecycle.begin_drain(final=True)
    lifecycle.dropped(trial)
    assert trial.status == TERMINATED
    assert lifecycle.pending == []


def test_a_final_drain_ends_every_pending_trial_and_empties_the_queue_in_place():
    waiting = [make_trial(i) for i in range(4)]
    running = make_trial(9)
    paused = make_trial(10, status=PAUSED)
    lifecycle, _, _ = make_run(*waiting, running, paused)
    launch(lifecycle, running)
    queue = lifecycle.pending
    assert queue == [t.trial_id for t in waiting]
    lifecycle.begin_drain(final=True)
    assert lifecycle.pending is queue
    assert queue == []
    assert [t.status for t in waiting] == [TERMINATED] * 4
    assert running.status == RUNNING  # its actor ends it
    assert paused.status == PAUSED


def test_a_resumable_drain_leaves_pending_trials_pending():
    waiting = [make_trial(i) for i in range(3)]
    lifecycle, _, _ = make_run(*waiting)
    lifecycle.begin_drain(final=False)
    assert lifecycle.pending == [t.trial_id for t in waiting]
    assert [t.status for t in waiting] == [PENDING] * 3


# ---- a launch and how it ends ----


def test_a_trial_dropped_before_it_began_is_as_it_was_and_waits_again():
    checkpoint = {"path": "/ckpt/3", "training_iteration": 3}
    trial = make_trial(
        0,
        last_result={"training_iteration": 3, "score": 0.5},
        restore_from_scratch=True,
        latest_checkpoint=checkpoint,
    )
    other = make_trial(1)
    lifecycle, _, _ = make_run(trial, other)
    launch(lifecycle, trial)
    assert trial.status == RUNNING
    assert trial.last_result == {}  # started from scratch
    assert trial.restore_from_scratch is False
    assert lifecycle.started_at(trial.trial_id) is not None
    lifecycle.dropped(trial)
    assert trial.status == PENDING
    assert trial.last_result == {"training_iteration": 3, "score": 0.5}
    assert trial.restore_from_scratch is True
    assert trial.latest_checkpoint == checkpoint
    assert lifecycle.pending == [trial.trial_id, other.trial_id]
    assert lifecycle.started_at(trial.trial_id) is None


def test_a_restored_trial_keeps_its_last_result_when_started():
    trial = make_trial(
        0,
        last_result={"training_iteration": 3},
        latest_checkpoint={"path": "/ckpt/3", "training_iteration": 3},
    )
    lifecycle, _, _ = make_run(trial)
    launch(lifecycle, trial)
    assert trial.last_result == {"training_iteration": 3}


def test_a_failed_trial_to_retry_runs_next():
    trial, other = make_trial(0), make_trial(1)
    lifecycle, _, journal = make_run(trial, other)
    launch(lifecycle, trial)
    trace = "Traceback (most recent call last):\n  File ...\nValueError: boom\n"
    lifecycle.failed(trial, trace, retry=True)
    assert trial.status == PENDING
    assert trial.num_failures == 1
    assert trial.error == trace
    assert lifecycle.pending == [trial.trial_id, other.trial_id]
    assert journal.events[-1] == f"Trial {trial.trial_name} failed (failure 1): ValueError: boom"


def test_a_failed_trial_out_of_retries_is_an_error():
    trial = make_trial(0, num_failures=2)
    lifecycle, _, journal = make_run(trial)
    launch(lifecycle, trial)
    lifecycle.failed(trial, "", retry=False)
    assert trial.status == ERROR
    assert trial.num_failures == 3
    assert lifecycle.pending == []
    assert journal.events[-1] == f"Trial {trial.trial_name} failed (failure 3): unknown error"


def test_a_completed_trial_is_terminated_with_done_in_its_last_result():
    trial = make_trial(0)
    lifecycle, _, journal = make_run(trial)
    launch(lifecycle, trial)
    trial.last_result = {"training_iteration": 2, "score": 3}
    trial.stopping = True
    lifecycle.completed(trial, "score=3")
    assert trial.status == TERMINATED
    assert trial.last_result == {"training_iteration": 2, "score": 3, "done": True}
    assert trial.stopping is False
    assert journal.events[-1] == f"Trial {trial.trial_name} completed after 2 iterations: score=3"


def test_a_paused_trial_says_why_or_how_far_it_got():
    first, second = make_trial(0), make_trial(1)
    lifecycle, _, journal = make_run(first, second)
    for trial in (first, second):
        launch(lifecycle, trial)
        trial.last_result = {"training_iteration": 4}
    lifecycle.paused(first)
    lifecycle.paused(second, why="storage unavailable")
    assert (first.status, second.status) == (PAUSED, PAUSED)
    assert journal.events == [
        f"Trial {first.trial_name} paused after 4 iterations.",
        f"Trial {second.trial_name} paused: storage unavailable.",
    ]
    assert lifecycle.pending == []


def test_a_run_ending_mid_launch_leaves_the_trial_resumable():
    running, done = make_trial(0), make_trial(1)
    lifecycle, _, _ = make_run(running, done)
    launch(lifecycle, running)
    launch(lifecycle, done)
    lifecycle.completed(done, "")
    lifecycle.stopped_unfinished(running)
    lifecycle.stopped_unfinished(done)
    assert (running.status, done.status) == (PAUSED, TERMINATED)


# ---- events ----


def test_listeners_receive_each_change_in_order():
    received = []
    fresh = make_trial(0)
    retried = make_trial(1)
    restored = make_trial(2, latest_checkpoint={"path": "/ckpt/2", "training_iteration": 2})
    lifecycle, bus, _ = make_run(fresh, retried, restored, listeners=[received.append])
    launch(lifecycle, fresh)
    fresh.last_result = {"training_iteration": 1, "score": 7}
    lifecycle.completed(fresh, "score=7")
    launch(lifecycle, retried)
    lifecycle.failed(retried, "RuntimeError: flaky", retry=True)
    launch(lifecycle, retried)
    lifecycle.paused(retried, why="scheduler")
    launch(lifecycle, restored)
    assert bus.close() is True

    assert [(e.kind, e.trial_id) for e in received] == [
        (E.TRIAL_STARTED, fresh.trial_id),
        (E.TRIAL_COMPLETED, fresh.trial_id),
        (E.TRIAL_STARTED, retried.trial_id),
        (E.TRIAL_ERRORED, retried.trial_id),
        (E.TRIAL_STARTED, retried.trial_id),
        (E.TRIAL_PAUSED, retried.trial_id),
        (E.TRIAL_RESTORED, restored.trial_id),
    ]
    completed = received[1]
    assert completed.trial_name == fresh.trial_name
    assert completed.config == fresh.config
    assert completed.result == {"training_iteration": 1, "score": 7, "done": True}
    assert received[3].data == {"error": "RuntimeError: flaky", "will_retry": True}
    assert received[5].data == {"why": "scheduler"}
    # where a restored trial goes on from: what it reports past that comes again
    assert received[6].data == {
        "checkpoint": "/ckpt/2",
        "restored_iteration": 2,
        "experiment_tag": restored.experiment_tag,
    }
    assert received[0].data == {
        "checkpoint": None,
        "restored_iteration": 0,
        "experiment_tag": fresh.experiment_tag,
    }
    assert received[6].relpath == restored.relpath


def test_an_event_holds_the_result_as_it_was_then():
    received = []
    trial = make_trial(0)
    lifecycle, bus, _ = make_run(trial, listeners=[received.append])
    launch(lifecycle, trial)
    trial.last_result = {"training_iteration": 1}
    lifecycle.paused(trial)
    trial.last_result = {"training_iteration": 99}
    assert bus.close() is True
    assert received[-1].result == {"training_iteration": 1}


def test_a_restore_from_scratch_is_a_start_not_a_restore():
    received = []
    trial = make_trial(
        0, latest_checkpoint={"path": "/ckpt/2", "training_iteration": 2}, restore_from_scratch=True
    )
    lifecycle, bus, _ = make_run(trial, listeners=[received.append])
    launch(lifecycle, trial)
    assert bus.close() is True
    assert [e.kind for e in received] == [E.TRIAL_STARTED]
