"""The event bus (rtune/_execution/events.py): listeners run on a thread of their own, so a slow
one never holds up the controller's loop, a raising one is reported once and keeps listening,
and events arrive in the order they were emitted. No Ray; no sleeps: listeners block on
threading.Event and the test releases them."""

import threading

from rtune._execution import events as E
from rtune._execution.events import Event, EventBus

WAIT_S = 10.0  # a bound that only a broken bus reaches; never what a test measures


def event(n: int, kind: str = E.TRIAL_RESULT) -> Event:
    return Event(kind, f"t{n}", f"trial_{n}", {"n": n}, {"training_iteration": n})


def event_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "rtune-events"]


def test_a_slow_listener_never_delays_emit():
    release = threading.Event()
    first_seen = threading.Event()
    timed_out = []
    received = []

    def slow(e):
        received.append(e)
        first_seen.set()
        if not release.wait(WAIT_S):  # only an emit that waited on the listener gets here
            timed_out.append(e)

    bus = EventBus([slow])
    sent = [event(n) for n in range(1000)]
    try:
        for e in sent:
            bus.emit(e)
        # every emit returned while the listener sat on (at most) the first event
        assert timed_out == []
        assert received in ([], sent[:1])
        assert first_seen.wait(WAIT_S)
        assert received == sent[:1]
    finally:
        release.set()
    assert bus.close() is True
    assert received == sent
    assert timed_out == []


def test_every_listener_gets_every_event_in_order():
    first, second = [], []
    bus = EventBus([first.append, second.append])
    sent = [event(n, kind) for n, kind in enumerate(E.KINDS * 5)]
    for e in sent:
        bus.emit(e)
    assert bus.close() is True
    assert first == sent
    assert second == sent


def test_a_raising_listener_is_reported_once_and_keeps_receiving():
    warnings = []
    called = []
    healthy = []

    def broken(e):
        called.append(e)
        raise ValueError(f"bad {e.trial_id}")

    bus = EventBus([broken, healthy.append], warn=warnings.append)
    sent = [event(n, E.TRIAL_STARTED if n == 0 else E.TRIAL_RESULT) for n in range(5)]
    for e in sent:
        bus.emit(e)
    assert bus.close() is True
    assert called == sent
    assert healthy == sent
    assert len(warnings) == 1
    assert "broken" in warnings[0]
    assert "raised on trial_started" in warnings[0]
    assert "ValueError: bad t0" in warnings[0]


def test_each_raising_listener_is_reported_once():
    warnings = []

    def first(e):
        raise RuntimeError("one")

    def second(e):
        raise KeyError("two")

    bus = EventBus([first, second], warn=warnings.append)
    for n in range(3):
        bus.emit(event(n))
    assert bus.close() is True
    assert len(warnings) == 2
    assert "first" in warnings[0] and "RuntimeError: one" in warnings[0]
    assert "second" in warnings[1] and "KeyError" in warnings[1]


def test_emit_with_no_listeners_starts_no_thread():
    before = event_threads()
    bus = EventBus()
    assert bus.active is False
    for n in range(100):
        bus.emit(event(n))
    assert event_threads() == before
    assert bus.close() is True


def test_close_with_a_listener_still_busy_gives_up_after_its_timeout():
    release = threading.Event()
    started = threading.Event()
    warnings = []
    received = []

    def stuck(e):
        started.set()
        release.wait(WAIT_S)
        received.append(e)

    bus = EventBus([stuck], warn=warnings.append)
    bus.emit(event(0))
    bus.emit(event(1))
    try:
        assert started.wait(WAIT_S)
        threads = event_threads()
        assert bus.close(timeout_s=0.2) is False
        assert warnings == ["event listeners did not finish within 0.2 s; events dropped"]
    finally:
        release.set()
    for thread in threads:  # released, the old delivery thread finishes on its own
        thread.join(WAIT_S)
        assert not thread.is_alive()


def test_a_bus_closed_when_idle_returns_true_at_once():
    received = []
    bus = EventBus([received.append])
    assert bus.close() is True  # nothing was ever emitted
    sent = event(0)
    bus.emit(sent)
    assert bus.close() is True
    assert received == [sent]
