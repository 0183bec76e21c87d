"""The pipelining policy (rtune/_execution/dispatch.py) as the controller applies it: which
busy actor is woken for its next trial, which queued trials are taken back, and how many
pending trials go with an actor's next poll. The policy is pure, so `now` is a plain float and
no Ray or real time is involved."""

import pytest

from rtune._execution.dispatch import (
    PIPELINE_BELOW_S,
    QUEUE_AHEAD_AFTER_TRIALS,
    QUEUE_AHEAD_S,
    QUEUE_DEPTH,
    QUEUE_FOR_S,
    TAKE_BACK_AFTER,
    Dispatch,
    SlotView,
    TakeBack,
    TrialPace,
    Wake,
)

R = "request R"  # any hashable stands for a resource request
S = "request S"
T0 = 1000.0  # when the running trial began
INF = float("inf")

POLICY = Dispatch(may_pipeline=True)


def long_pace(ended: int = QUEUE_AHEAD_AFTER_TRIALS) -> TrialPace:
    """Trials of about a second, with enough of them ended for the average to count."""
    return TrialPace(seconds=1.0, ended=ended)


def short_pace(seconds: float = QUEUE_FOR_S / 4) -> TrialPace:
    assert seconds < PIPELINE_BELOW_S
    return TrialPace(seconds=seconds, ended=50)


def plan(busy, pending=(), idle=(), pace=None, now=T0, draining=False, policy=POLICY):
    return policy.plan(
        list(busy), list(idle), list(pending), pace or long_pace(), now, draining=draining
    )


# ---- a slow trial's successor is taken back ----

TAKE_BACK_AT = T0 + TAKE_BACK_AFTER * 1.0


@pytest.mark.parametrize("pending", [(), (R,), (S, R)])
def test_a_queued_successor_is_left_alone_until_the_running_trial_runs_long(pending):
    slot = SlotView(R, T0, queued=("next",))
    for now in (T0, T0 + 1.0, TAKE_BACK_AT - 1e-6):
        result = plan([slot], pending=pending, now=now)
        assert result.actions == []
        assert result.next_due == TAKE_BACK_AT


@pytest.mark.parametrize("now", [TAKE_BACK_AT, TAKE_BACK_AT + 0.001, TAKE_BACK_AT + 60])
def test_a_slow_trials_successors_are_taken_back_once_it_runs_long(now):
    later = T0 + 100  # another actor's trial, well within its time
    busy = [SlotView(S, later, queued=("other",)), SlotView(R, T0, queued=("next", "after"))]
    result = plan(busy, now=now)
    assert result.actions == [TakeBack(1, ("next", "after"))]
    assert result.next_due == later + TAKE_BACK_AFTER * 1.0


def test_nothing_is_taken_back_twice():
    slot = SlotView(R, T0, queued=("next",), taking_back=frozenset({"next"}))
    result = plan([slot], now=TAKE_BACK_AT + 10)
    assert result.actions == []
    assert result.next_due == INF


def test_an_actor_whose_running_trial_began_at_an_unknown_time_is_left_alone():
    result = plan([SlotView(R, None, queued=("next",))], now=T0 + 1e6)
    assert result.actions == []
    assert result.next_due == INF


# ---- queue-ahead: a long trial's successor is fetched shortly before it ends ----

WAKE_AT = T0 + 1.0 - QUEUE_AHEAD_S


def test_an_actor_is_woken_for_its_next_trial_shortly_before_its_running_one_ends():
    slot = SlotView(R, T0)
    before = plan([slot], pending=[R], now=WAKE_AT - 0.001)
    assert before.actions == []
    assert before.next_due == WAKE_AT
    for now in (WAKE_AT, WAKE_AT + 0.01, TAKE_BACK_AT - 0.001):
        due = plan([slot], pending=[R, S], now=now)
        assert due.actions == [Wake(0)]


def test_only_the_actor_whose_trial_fits_the_first_pending_one_is_woken():
    busy = [SlotView(S, T0), SlotView(R, T0)]
    assert plan(busy, pending=[R, S], now=WAKE_AT).actions == [Wake(1)]


def test_the_earliest_wake_is_when_the_loop_wakes():
    busy = [SlotView(R, T0 + 0.5), SlotView(R, T0)]
    assert plan(busy, pending=[R], now=T0).next_due == WAKE_AT


@pytest.mark.parametrize(
    ("why", "slot", "pending", "pace", "now", "draining", "policy"),
    [
        ("first pending trial asks for another request", SlotView(R, T0), [S, R], None, WAKE_AT,
         False, POLICY),
        ("nothing pending", SlotView(R, T0), [], None, WAKE_AT, False, POLICY),
        ("already woken", SlotView(R, T0, wants_next=True), [R], None, WAKE_AT, False, POLICY),
        ("running trial is already past its take-back time", SlotView(R, T0), [R], None,
         TAKE_BACK_AT, False, POLICY),
        ("too few trials ended for the average to count", SlotView(R, T0), [R],
         long_pace(ended=QUEUE_AHEAD_AFTER_TRIALS - 1), WAKE_AT, False, POLICY),
        ("a drain starts nothing new", SlotView(R, T0), [R], None, WAKE_AT, True, POLICY),
        ("pipelining not allowed", SlotView(R, T0), [R], None, WAKE_AT, False,
         Dispatch(may_pipeline=False)),
    ],
)  # fmt: skip
def test_no_wake(why, slot, pending, pace, now, draining, policy):
    result = plan([slot], pending=pending, pace=pace, now=now, draining=draining, policy=policy)
    assert result.actions == [], why
    assert result.next_due == INF, why


def test_no_take_back_while_draining_or_without_pipelining():
    slot = SlotView(R, T0, queued=("next",))
    assert plan([slot], now=TAKE_BACK_AT, draining=True).actions == []
    assert plan([slot], now=TAKE_BACK_AT, policy=Dispatch(may_pipeline=False)).actions == []


# ---- an idle actor takes over queued trials ----


@pytest.mark.parametrize("pace", [short_pace(), long_pace(), TrialPace()])
def test_an_idle_actor_takes_back_the_last_trial_waiting_on_a_busy_one(pace):
    busy = [SlotView(R, T0, queued=("a", "b"))]
    result = plan(busy, idle=[R], pace=pace, now=T0)
    assert result.actions == [TakeBack(0, ("b",))]


def test_two_idle_actors_take_back_one_trial_each():
    busy = [SlotView(R, T0, queued=("a", "b"))]
    result = plan(busy, idle=[R, R], pace=short_pace(), now=T0)
    assert result.actions == [TakeBack(0, ("b",)), TakeBack(0, ("a",))]


def test_a_trial_already_being_taken_back_is_not_asked_for_again():
    busy = [SlotView(R, T0, queued=("a", "b"), taking_back=frozenset({"b"}))]
    assert plan(busy, idle=[R, R], pace=short_pace()).actions == [TakeBack(0, ("a",))]
    busy = [SlotView(R, T0, queued=("a", "b"), taking_back=frozenset({"a", "b"}))]
    assert plan(busy, idle=[R], pace=short_pace()).actions == []


def test_an_idle_actor_takes_only_trials_of_its_own_request():
    busy = [SlotView(S, T0, queued=("s1",)), SlotView(R, T0, queued=("r1", "r2"))]
    assert plan(busy, idle=[R], pace=short_pace()).actions == [TakeBack(1, ("r2",))]
    assert plan(busy[1:], idle=[S], pace=short_pace()).actions == []


def test_idle_actors_take_nothing_while_trials_are_pending():
    busy = [SlotView(R, T0, queued=("a", "b"))]
    for pending in ([R], [S]):
        assert plan(busy, idle=[R], pending=pending, pace=short_pace()).actions == []


# ---- how many pending trials go with an actor's next poll ----


def depth_for(pace: TrialPace) -> int:
    return min(QUEUE_DEPTH, max(1, round(QUEUE_FOR_S / pace.seconds)))


@pytest.mark.parametrize(
    ("seconds", "depth"),
    [
        (QUEUE_FOR_S / 4, 4),
        (QUEUE_FOR_S / (QUEUE_DEPTH * 4), QUEUE_DEPTH),  # capped
        (PIPELINE_BELOW_S * 0.9, 1),  # at least one
    ],
)
def test_short_trials_are_queued_about_queue_for_s_deep(seconds, depth):
    pace = short_pace(seconds)
    assert depth_for(pace) == depth
    pending = [R] * (QUEUE_DEPTH + 5)
    for held in range(depth + 3):
        expected = max(0, depth + 1 - held)
        got = POLICY.to_hand(held, R, pending, pace, draining=False, woken=False)
        assert got == expected, f"held={held}"


def test_short_trials_handed_stop_at_the_first_pending_trial_of_another_request():
    pace = short_pace(QUEUE_FOR_S / 8)  # room for 8 beyond the running one
    assert POLICY.to_hand(1, R, [R, R, S, R, R], pace, draining=False, woken=False) == 2
    assert POLICY.to_hand(1, R, [S, R, R], pace, draining=False, woken=False) == 0
    assert POLICY.to_hand(1, R, [R, R], pace, draining=False, woken=False) == 2
    assert POLICY.to_hand(1, R, [], pace, draining=False, woken=False) == 0


@pytest.mark.parametrize("pace", [short_pace(), long_pace()])
@pytest.mark.parametrize("woken", [False, True])
def test_a_drain_reaching_queued_trials_hands_out_nothing_new(pace, woken):
    assert POLICY.to_hand(1, R, [R] * 20, pace, draining=True, woken=woken) == 0


def test_short_trials_are_not_queued_without_pipelining():
    policy = Dispatch(may_pipeline=False)
    assert policy.to_hand(1, R, [R] * 20, short_pace(), draining=False, woken=False) == 0
    assert policy.to_hand(1, R, [R] * 20, short_pace(), draining=False, woken=True) == 0


def test_a_long_trial_gets_one_successor_only_when_woken_for_it():
    pending = [R] * 5
    assert POLICY.to_hand(1, R, pending, long_pace(), draining=False, woken=True) == 1
    assert POLICY.to_hand(1, R, pending, long_pace(), draining=False, woken=False) == 0
    # already holding a successor
    assert POLICY.to_hand(2, R, pending, long_pace(), draining=False, woken=True) == 0
    # the first pending trial needs another actor
    assert POLICY.to_hand(1, R, [S, R], long_pace(), draining=False, woken=True) == 0
    # no queuing ahead yet: too few trials ended
    young = long_pace(ended=QUEUE_AHEAD_AFTER_TRIALS - 1)
    assert POLICY.to_hand(1, R, pending, young, draining=False, woken=True) == 0
    policy = Dispatch(may_pipeline=False)
    assert policy.to_hand(1, R, pending, long_pace(), draining=False, woken=True) == 0


# ---- the pace ----


def test_pace_is_a_running_average_weighting_the_newest_trial_a_fifth():
    pace = TrialPace()
    assert (pace.seconds, pace.ended) == (PIPELINE_BELOW_S * 10, 0)
    start = pace.seconds
    pace.record(2.0)
    assert pace.seconds == pytest.approx(0.8 * start + 0.2 * 2.0)
    assert pace.ended == 1
    pace.record(0.0)
    assert pace.seconds == pytest.approx(0.8 * (0.8 * start + 0.2 * 2.0))
    assert pace.ended == 2
    for _ in range(100):
        pace.record(0.01)
    assert pace.seconds == pytest.approx(0.01, rel=1e-6)
    assert pace.ended == 102


def test_a_run_of_short_trials_turns_pipelining_on():
    pace = TrialPace()
    assert not POLICY.pipelining(pace)
    while not POLICY.pipelining(pace):
        pace.record(0.005)
        assert pace.ended < 100
    assert pace.seconds < PIPELINE_BELOW_S
