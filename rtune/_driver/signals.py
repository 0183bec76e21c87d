"""Stop signals while `fit()` runs: SIGINT (Ctrl+C), SIGUSR1 (remote tasks) and SIGTERM
(`ray job stop`) ask for a graceful drain; a second SIGINT asks to stop at once.

Handlers only record the request; the driver loop forwards it to the controller. They are installed
only from the main thread and the previous handlers are put back when `fit()` returns.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

STOP_SIGNALS = tuple(
    sig for sig in (signal.SIGINT, getattr(signal, "SIGUSR1", None), signal.SIGTERM) if sig
)


class StopRequests:
    def __init__(self) -> None:
        self.received: list[str] = []

    @property
    def force(self) -> bool:
        return self.received.count("SIGINT") >= 2

    def _handle(self, signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        self.received.append(name)
        if len(self.received) == 1:
            print(
                f"\nrtune: {name} received: stopping gracefully (no new trials; running trials "
                "stop after their current iteration). Press Ctrl+C again to stop at once.",
                file=sys.stderr,
                flush=True,
            )
        elif self.force and self.received[-1] == "SIGINT":
            print("\nrtune: stopping at once.", file=sys.stderr, flush=True)


@contextlib.contextmanager
def forward_stop_signals() -> Iterator[StopRequests]:
    requests = StopRequests()
    if threading.current_thread() is not threading.main_thread():
        yield requests
        return
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    try:
        for sig in STOP_SIGNALS:
            signal.signal(sig, requests._handle)
        yield requests
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
