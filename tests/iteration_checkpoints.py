"""The checkpoint pattern the test trainables share: the checkpoint holds the number of completed
iterations, so a resumed trial continues right after it."""

from __future__ import annotations

import os
import tempfile
import time

import rtune as tune


def resume_iteration() -> int:
    """Completed iterations in the checkpoint the trial resumes from (0 without one)."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as directory:
        with open(os.path.join(directory, "it")) as src:
            return int(src.read())


def report_iteration(completed: int, metrics: dict) -> None:
    """Report `metrics` with a checkpoint saying `completed` iterations are done."""
    with tempfile.TemporaryDirectory() as directory:
        with open(os.path.join(directory, "it"), "w") as out:
            out.write(str(completed))
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


def hold_until_stopped(go_path: str, limit_s: float = 60) -> None:
    """Wait inside an iteration until rtune asks the trial to stop (or `go_path` exists, or the
    limit passes, so a broken test cannot hang): a test stops the run at a known iteration."""
    deadline = time.monotonic() + limit_s
    while not (
        tune.get_context().stop_requested or os.path.exists(go_path) or time.monotonic() > deadline
    ):
        time.sleep(0.02)


def ctrl_c_when(condition, timeout_s: float = 60) -> None:
    """Send this process a real SIGINT, from a background thread, once `condition()` holds: the
    driver under test is the test process itself, and fit() is running in its main thread."""
    import signal
    import threading

    def watch() -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.02)

    threading.Thread(target=watch, daemon=True).start()
