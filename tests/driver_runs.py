"""Driver processes for the tests where a real process boundary is the point: start one in a
session of its own, signal it, reap the Ray it leaves behind (by pid: never `ray stop`), and
interrupt one over and over at seeded moments (`crash_loop`)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

START_TIMEOUT_S = 60.0  # Ray start and the first iterations, on a busy 2-core machine
EXIT_TIMEOUT_S = 60.0  # a drained driver writes its state, shuts its Ray down and exits
RUN_TIMEOUT_S = 90.0  # a whole restored run
# a dead Ray's trial actors notice within ~1-3 s and exit; a worker process the raylet was still
# starting when it died waits for it for a minute, so the rest is killed (a lost node's fate)
REAP_TIMEOUT_S = 5.0


def wait_until(condition, what: str, timeout: float, run: Run | None = None) -> None:
    """Poll `condition` until it holds; fail naming `what` (and the driver's output) otherwise."""
    deadline = time.monotonic() + timeout
    while not condition():
        if run is not None and run.proc.poll() is not None:
            pytest.fail(f"the driver exited ({run.proc.returncode}) before {what}\n{run.tail()}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout:g} s\n{run.tail() if run else ''}")
        time.sleep(0.05)


def session_processes(session_dir: str) -> list[int]:
    """Live processes of one Ray instance: those naming its session directory on their command
    line (gcs, raylet, agents) or holding a file in it open (workers log there)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        proc = f"/proc/{entry}"
        try:
            with open(f"{proc}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
            with open(f"{proc}/cmdline", "rb") as cmdline:
                mine = session_dir.encode() in cmdline.read()
            if not mine:
                for fd in os.listdir(f"{proc}/fd"):
                    if os.readlink(f"{proc}/fd/{fd}").startswith(session_dir):
                        mine = True
                        break
        except OSError:  # gone meanwhile, or not ours to look at
            continue
        if mine:
            found.append(int(entry))
    return found


def reap(session_dir: str) -> list[int]:
    """Wait for a dead driver's Ray processes to exit, then kill (by pid, this instance's only)
    whatever is left; returns the pids that had to be killed. Never `ray stop`: that would kill
    every Ray on the machine."""
    deadline = time.monotonic() + REAP_TIMEOUT_S
    while (left := session_processes(session_dir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


class Run:
    """One driver (or CLI) process, in a session of its own so a whole group can be signalled."""

    def __init__(self, command: list[str], out: Path, err: Path, progress: Path):
        self.out, self.err, self.progress = out, err, progress
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            self.proc = subprocess.Popen(
                command, stdout=stdout, stderr=stderr, start_new_session=True
            )

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def tail(self) -> str:
        return f"--- stdout ---\n{self.stdout()[-3000:]}\n--- stderr ---\n{self.stderr()[-3000:]}"

    def send(self, sig: int, group: bool = False) -> None:
        """`group` signals the whole process group, as Ctrl+C in a terminal does (the driver's own
        Ray processes get it too)."""
        if group:
            os.killpg(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the driver did not exit within {timeout:g} s\n{self.tail()}")

    def succeed(self, timeout: float) -> str:
        """Wait for a zero exit; return stdout and stderr together."""
        rc = self.wait(timeout)
        assert rc == 0, f"exit code {rc}\n{self.tail()}"
        return self.stdout() + self.stderr()

    def line(self, prefix: str):
        for line in self.stdout().splitlines():
            if line.startswith(prefix + " "):
                return json.loads(line[len(prefix) + 1 :])
        pytest.fail(f"no {prefix} line\n{self.tail()}")

    def results(self) -> dict[int, tuple[str, int | None, list[int]]]:
        """{trial id: (status, last training_iteration, metrics_dataframe iterations)}."""
        return {int(k): tuple(v) for k, v in self.line("RESULTS").items()}

    @property
    def session_dir(self) -> str | None:
        path = self.progress / "ray_session"
        return path.read_text() if path.exists() else None


STOP_SIGNALS = [signal.SIGKILL, signal.SIGINT, signal.SIGUSR1, signal.SIGTERM]


def crash_loop(
    launch: Callable[[int], Run],
    progress: Callable[[], int],
    finished: Callable[[Run], bool],
    seed: int,
    interruptions: int,
    max_delay_s: float,
    returned: Callable[[Run], bool] | None = None,
) -> tuple[Run, list[str]]:
    """Launch a driver (`launch(cycle)`, restoring from the second cycle on), interrupt it up to
    `interruptions` times with kill -9 or a stop signal at a seeded random moment, until a run
    ends with `finished(run)`: its fit() returned a finished run. A stop signal waits for
    `progress()` (work done, e.g. iterations started) to grow: it means something only once
    fit() runs. A stopped driver must exit 0, unless the signal came after its fit() had
    `returned` (default: `finished`). Returns the final run and what was done, for failure
    messages (rerun with the same seed to replay)."""
    rng = random.Random(seed)
    done: list[str] = []
    for cycle in range(interruptions + 1):
        run = launch(cycle)
        if cycle == interruptions:
            run.succeed(RUN_TIMEOUT_S)
            return run, done
        sig = rng.choice(STOP_SIGNALS)
        before = progress()

        def moment_reached(sig=sig, before=before, run=run) -> bool:
            if sig == signal.SIGKILL:  # any moment once Ray is up, fit() or not
                return run.session_dir is not None
            return progress() > before

        deadline = time.monotonic() + START_TIMEOUT_S
        while not moment_reached() and run.proc.poll() is None:
            assert time.monotonic() < deadline, f"{done}: no {sig} moment\n{run.tail()}"
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, max_delay_s))  # a random moment, not an assertion
        if run.proc.poll() is not None:  # it finished first
            assert run.proc.returncode == 0 and finished(run), f"{done}\n{run.tail()}"
            return run, done
        done.append(f"{signal.Signals(sig).name} in cycle {cycle}")
        run.send(sig, group=sig == signal.SIGINT)
        rc = run.wait(EXIT_TIMEOUT_S)
        if sig == signal.SIGKILL:
            os.killpg(run.proc.pid, signal.SIGKILL)
        reap(run.session_dir)  # no trial actor of this run outlives it into the next
        if finished(run):  # the signal came after fit() returned a finished run
            return run, done
        graceful = sig == signal.SIGKILL or rc == 0 or (returned or finished)(run)
        assert graceful, f"{done}: exit {rc}\n{run.tail()}"
    raise AssertionError("unreachable")
