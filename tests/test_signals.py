"""Stop and resume with real processes: signals, a second Ctrl+C, `kill -9`, then a restore.

Each test runs tests/drivers/experiment.py as a subprocess with its own Ray, because what is under
test is the driver process itself: its signal handlers, its exit, what it leaves in storage when it
dies. The driver logs every iteration it *starts* to a progress file, so the test can tell how much
work a stop cost (iterations executed again after the restore), and it prints its ResultGrid (with
each trial's metrics_dataframe iterations) as JSON. A restore that is to run to the end runs in
this process instead, on the session's Ray (`Experiment.restore_here`): from storage alone, on
another Ray than the stopped run's, as a user's restoring script would; the driver is what is
under test only where a restore is itself interrupted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import S3_BUCKET, experiment_path
from driver_runs import (
    EXIT_TIMEOUT_S,
    RUN_TIMEOUT_S,
    START_TIMEOUT_S,
    Run,
    crash_loop,
    reap,
    session_processes,
    wait_until,
)
from drivers.experiment import summarize
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import rtune as tune

DRIVER = Path(__file__).parent / "drivers" / "experiment.py"
RTUNE_CLI = Path(sys.executable).parent / "rtune"
NAME = "exp"
TRIALS = 2
ITERATIONS = 10
SLEEP_S = 0.25
STOP_AFTER = 3  # iterations every trial has started before the test stops the run


# the stop/resume contract holds on a local path and on an object store alike
# (each case runs once, on one of the two, to keep the suite's time in bounds)
ON_S3 = pytest.mark.parametrize("experiment", ["s3"], indirect=True)


class Experiment:
    """One experiment's storage and progress files, and the processes run on it."""

    def __init__(self, tmp_path: Path, storage: str):
        self.tmp = tmp_path
        self.storage = storage
        self.progress = tmp_path / "progress"
        self.progress.mkdir()
        self.path = experiment_path(storage, NAME)
        self.runs: list[Run] = []

    def launch(self, *args: str) -> Run:
        """The driver with this file's trial count, length and pace; later `args` override."""
        command = [sys.executable, str(DRIVER), str(self.storage), NAME, str(self.progress)]
        command += ["--trials", str(TRIALS), "--iterations", str(ITERATIONS)]
        command += ["--sleep", str(SLEEP_S)]
        return self._start(command + list(args))

    def restore_here(self) -> dict[int, tuple[str, int | None, list[int]]]:
        """`Tuner.restore(path).fit()` in this process, on the session's Ray, as a user's
        restoring script would run it; the same summary as `Run.results()`. For restores that
        run to the end: a driver starting a Ray of its own costs ~8 s of a 2-core machine."""
        grid = tune.Tuner.restore(self.path).fit()
        return {int(k): tuple(v) for k, v in summarize(grid).items()}

    def resume_with_cli(self, *args: str) -> Run:
        return self._start([str(RTUNE_CLI), "resume", self.path, *args])

    def _start(self, command: list[str]) -> Run:
        tag = f"run{len(self.runs)}"
        run = Run(command, self.tmp / f"{tag}.out", self.tmp / f"{tag}.err", self.progress)
        self.runs.append(run)
        return run

    def executions(self) -> dict[int, list[int]]:
        """{trial id: iterations in the order they started executing, repeats included}."""
        started: dict[int, list[int]] = {}
        for log in self.progress.glob("trial_*.log"):
            for line in log.read_text().splitlines():
                trial, iteration = map(int, line.split())
                started.setdefault(trial, []).append(iteration)
        return started

    def wait_for_iterations(self, run: Run, count: int, trials: int = TRIALS) -> None:
        """Until `trials` trials have each started `count` iterations (repeats included)."""

        def enough_started() -> bool:
            return sum(len(s) >= count for s in self.executions().values()) >= trials

        what = f"{count} iterations started in {trials} trials"
        wait_until(enough_started, what, START_TIMEOUT_S, run)

    def cleanup(self) -> None:
        """Kill what a failed test left running: each driver's process group (its gcs, raylet and
        agents), then the workers of its Ray."""
        for run in self.runs:
            if run.proc.poll() is None:
                os.killpg(run.proc.pid, signal.SIGKILL)
                run.proc.wait()
                if run.session_dir:
                    reap(run.session_dir)


@pytest.fixture
def experiment(request, tmp_path, ray_local):
    """On local storage, or (parametrized indirectly with "s3") on the S3-compatible server."""
    if getattr(request, "param", "local") == "s3":
        storage = request.getfixturevalue("s3_server").uri(S3_BUCKET, tmp_path.name)
    else:
        storage = str(tmp_path / "results")
    exp = Experiment(tmp_path, storage)
    yield exp
    exp.cleanup()


def assert_stopped_early(results: dict, running: int = TRIALS, trials: int = TRIALS) -> None:
    """The first `running` trials were paused mid-run, with a history of each iteration they
    reported, once; the others were never started."""
    assert sorted(results) == list(range(trials))
    for trial, (status, last, history) in results.items():
        if trial >= running:
            assert (status, last, history) == ("PENDING", None, []), trial
            continue
        assert status == "PAUSED", (trial, status)
        assert last is None or last < ITERATIONS, (trial, last)
        assert history == list(range(1, (last or 0) + 1)), (trial, history)


def assert_completed(
    results: dict,
    executions: dict,
    max_repeats: int,
    iterations: int = ITERATIONS,
    trials: int = TRIALS,
) -> None:
    """Every trial finished all iterations with one history row each, and at most `max_repeats`
    iterations of it ran twice over all the stops and restores."""
    assert sorted(results) == list(range(trials))
    for trial, (status, last, history) in results.items():
        assert status == "TERMINATED", (trial, status)
        assert last == iterations, (trial, last)
        assert history == list(range(1, iterations + 1)), (trial, history)
    assert_executions(executions, max_repeats, iterations, trials)


def assert_executions(
    executions: dict, max_repeats: int, iterations: int = ITERATIONS, trials: int = TRIALS
) -> None:
    assert sorted(executions) == list(range(trials))
    for trial, started in executions.items():
        assert sorted(set(started)) == list(range(1, iterations + 1)), (trial, started)
        repeats = len(started) - iterations
        assert repeats <= max_repeats, f"trial {trial} re-executed {repeats}: {started}"


def assert_resume_hint(output: str, path: str) -> None:
    assert f'Tuner.restore("{path}")' in output, output[-3000:]
    assert f"rtune resume {path}" in output, output[-3000:]


def stop_gracefully(experiment: Experiment, run: Run, sig: int, group: bool) -> None:
    """Signal a running experiment once; it must drain, return from fit() and exit 0."""
    experiment.wait_for_iterations(run, STOP_AFTER)
    run.send(sig, group=group)
    output = run.succeed(EXIT_TIMEOUT_S)
    assert f"{signal.Signals(sig).name} received: stopping gracefully" in output
    assert_resume_hint(output, experiment.path)
    assert (experiment.progress / "fit_returned").exists()
    assert (experiment.progress / "done").exists()
    assert run.line("HANDLERS_RESTORED") is True


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig, group, experiment",
    [
        pytest.param(signal.SIGINT, True, "local", id="SIGINT-to-the-process-group"),  # Ctrl+C
        pytest.param(signal.SIGUSR1, False, "local", id="SIGUSR1"),
        pytest.param(signal.SIGTERM, False, "s3", id="SIGTERM-s3"),
    ],
    indirect=["experiment"],
)
def test_stop_signal_drains_then_restore_completes(experiment, sig, group):
    """Each stop signal drains: running trials finish their iteration and pause, the trial waiting
    for a slot is not started, fit() returns and says how to resume; the restored run finishes
    every trial without losing an iteration."""
    first = experiment.launch("--trials", "3", "--concurrency", "2")
    stop_gracefully(experiment, first, sig, group)
    assert_stopped_early(first.results(), running=2, trials=3)
    assert sorted(experiment.executions()) == [0, 1]

    assert_completed(experiment.restore_here(), experiment.executions(), max_repeats=1, trials=3)


@pytest.mark.slow
def test_a_stop_during_the_start_up_of_fit_drains(experiment):
    """A stop that arrives while fit() starts up (the first trials, started by the driver, run
    before the controller exists) drains like any other: the driver does not die of the signal,
    the trial waiting for a slot is listed as pending, and the restored run completes all."""
    first = experiment.launch("--trials", "3", "--concurrency", "2", "--signal-at", "1")
    output = first.succeed(RUN_TIMEOUT_S)
    assert "SIGUSR1 received: stopping gracefully" in output
    assert_resume_hint(output, experiment.path)
    results = first.results()
    assert sorted(results) == [0, 1, 2]
    status, last, history = results[0]
    assert status == "PAUSED" and last is not None and last < ITERATIONS, results[0]
    assert history == list(range(1, last + 1))
    status, last, history = results[1]  # may have been stopped before its actor was ready
    assert status in ("PAUSED", "PENDING") and (last or 0) < ITERATIONS, results[1]
    assert history == list(range(1, (last or 0) + 1))
    assert results[2] == ("PENDING", None, [])

    assert_completed(experiment.restore_here(), experiment.executions(), max_repeats=1, trials=3)


@pytest.mark.slow
def test_class_trainable_loses_nothing_on_a_graceful_stop(experiment):
    """With no periodic checkpoints at all, the drain's checkpoint at the iteration boundary is
    what the restore continues from: not one iteration runs twice."""
    first = experiment.launch("--kind", "class", "--checkpoint-frequency", "0")
    stop_gracefully(experiment, first, signal.SIGINT, group=True)
    assert_stopped_early(first.results())

    assert_completed(experiment.restore_here(), experiment.executions(), max_repeats=0)


@pytest.mark.slow
@pytest.mark.parametrize(
    "kill_after, whole_ray, experiment",
    [
        # a driver killed mid-run: see test_stop_then_crash_of_the_restored_run_then_restore
        pytest.param(1, False, "local", id="driver-in-the-first-iteration"),
        pytest.param(4, True, "s3", id="driver-and-its-ray-mid-run-s3"),
    ],
    indirect=["experiment"],
)
def test_kill_9_then_restore(experiment, kill_after, whole_ray):
    """A driver killed with no warning leaves a restorable experiment, and each trial resumes from
    the newest checkpoint in storage, so at most the iteration in flight runs twice. Killed alone,
    the driver's trial actors outlive it for a moment and commit checkpoints that no experiment
    state records; killed with its whole Ray (a lost machine), the state lags the checkpoints by
    up to its write period."""
    iterations = 32  # long enough that the trials are still running when their actors die
    first = experiment.launch("--iterations", str(iterations))
    experiment.wait_for_iterations(first, kill_after)
    session = first.session_dir
    doomed = session_processes(session) if whole_ray else []
    first.send(signal.SIGKILL)
    for pid in doomed:
        os.kill(pid, signal.SIGKILL)
    first.wait(EXIT_TIMEOUT_S)
    # Ray's head processes share the driver's process group; its agents outlive a kill -9 of the
    # driver, so take the group down as an operator would, then let the workers notice.
    os.killpg(first.proc.pid, signal.SIGKILL)
    reap(session)
    assert not (experiment.progress / "fit_returned").exists()
    crashed = experiment.executions()
    assert all(max(started) < iterations for started in crashed.values()), crashed

    assert_completed(experiment.restore_here(), experiment.executions(), 1, iterations)


@pytest.mark.slow
def test_stop_then_crash_of_the_restored_run_then_restore(experiment):
    """Interruptions compound: a graceful stop, then a `kill -9` of the restored driver, then a
    second restore. Each trial's history still holds every iteration once, and the whole sequence
    re-executes at most the one iteration the crash interrupted."""
    iterations = 32
    first = experiment.launch("--iterations", str(iterations))
    stop_gracefully(experiment, first, signal.SIGUSR1, group=False)

    second = experiment.launch("--restore")
    experiment.wait_for_iterations(second, STOP_AFTER + 4)
    session = second.session_dir
    second.send(signal.SIGKILL)
    second.wait(EXIT_TIMEOUT_S)
    os.killpg(second.proc.pid, signal.SIGKILL)
    reap(session)
    crashed = experiment.executions()
    assert all(max(started) < iterations for started in crashed.values()), crashed

    assert_completed(experiment.restore_here(), experiment.executions(), 1, iterations)


@pytest.mark.slow
def test_second_sigint_stops_at_once(experiment):
    """Every trial is held inside iteration 3, so a graceful drain could never finish: only the
    second Ctrl+C ends the run. The state is still written, so the restore redoes iteration 3."""
    iterations = 5
    first = experiment.launch("--iterations", str(iterations), "--block-at", "3")
    experiment.wait_for_iterations(first, 3)
    first.send(signal.SIGINT, group=True)
    wait_until(lambda: "stopping gracefully" in first.stderr(), "drain message", 30.0, first)
    first.send(signal.SIGINT, group=True)
    output = first.succeed(EXIT_TIMEOUT_S)
    assert "stopping at once" in output
    assert_resume_hint(output, experiment.path)
    for trial, (status, last, history) in first.results().items():
        assert (status, last, history) == ("PAUSED", 2, [1, 2]), trial

    (experiment.progress / "release").touch()
    assert_completed(experiment.restore_here(), experiment.executions(), 1, iterations)
    assert all(s == [1, 2, 3, 3, 4, 5] for s in experiment.executions().values())


@ON_S3
@pytest.mark.slow
def test_rtune_resume_cli_completes_a_stopped_experiment(experiment):
    """`rtune resume <path>`, as printed by the stopped run, finishes it."""
    first = experiment.launch()
    stop_gracefully(experiment, first, signal.SIGINT, group=True)

    resumed = experiment.resume_with_cli()
    output = resumed.succeed(RUN_TIMEOUT_S)
    assert f"{TRIALS} trials, {TRIALS} terminated, 0 errored" in output
    assert_executions(experiment.executions(), max_repeats=1)


@pytest.mark.slow
@pytest.mark.parametrize(
    "how, experiment",
    [("SIGUSR1", "local"), ("rtune stop", "s3")],
    indirect=["experiment"],
)
def test_fit_in_a_remote_task_is_drained(experiment, how):
    """fit() inside a `@ray.remote` task runs in a worker process that no terminal signals: SIGUSR1
    to that worker, or `rtune stop <name>` from any shell on the cluster (no pid needed), drains
    the run and the task returns its results normally. The experiment then resumes from an
    ordinary driver."""
    first = experiment.launch("--in-task")
    experiment.wait_for_iterations(first, STOP_AFTER)
    if how == "SIGUSR1":
        os.kill(int((experiment.progress / "task_pid").read_text()), signal.SIGUSR1)
    else:
        address = (experiment.progress / "ray_address").read_text()
        stop = subprocess.run(
            [str(RTUNE_CLI), "stop", NAME],
            env={**os.environ, "RAY_ADDRESS": address},
            capture_output=True,
            text=True,
            timeout=EXIT_TIMEOUT_S,
        )
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert f"rtune resume {experiment.path}" in stop.stdout
    first.succeed(EXIT_TIMEOUT_S)
    assert (experiment.progress / "fit_returned").exists()
    assert first.line("HANDLERS_RESTORED") is True
    assert_stopped_early(first.results())

    assert_completed(experiment.restore_here(), experiment.executions(), max_repeats=1)


CRASH_TRIALS, CRASH_ITERATIONS = 8, 8


def run_crash_loop(experiment: Experiment, seed: int, interruptions: int) -> tuple[Run, list[str]]:
    """`crash_loop` over this file's experiment: 8 trials of 8 checkpointed iterations."""
    path = Path(experiment.path)

    def launch(cycle: int) -> Run:
        for stale in ("ray_session", "fit_returned", "done"):
            (experiment.progress / stale).unlink(missing_ok=True)
        args = ["--trials", str(CRASH_TRIALS), "--iterations", str(CRASH_ITERATIONS)]
        args += ["--sleep", "0.25", "--concurrency", "4", "--callback"]
        return experiment.launch(*args, *(["--restore"] if (path / "tuner.pkl").exists() else []))

    def returned(run: Run) -> bool:
        return (experiment.progress / "fit_returned").exists()

    def finished(run: Run) -> bool:
        if not returned(run):
            return False
        found = [line for line in run.stdout().splitlines() if line.startswith("RESULTS ")]
        return bool(found) and all(
            status in ("TERMINATED", "ERROR")
            for status, _, _ in json.loads(found[0][len("RESULTS ") :]).values()
        )

    def iterations_started() -> int:
        return sum(map(len, experiment.executions().values()))

    started = iterations_started
    return crash_loop(launch, started, finished, seed, interruptions, 1.5, returned=returned)


@pytest.mark.slow
def test_crash_loop_loses_nothing(experiment):
    """Seeded random kill -9s and stop signals, each followed by a restore: every trial ends with
    each iteration once in its history, and no interruption cost a trial more than the iteration
    in flight (every iteration is checkpointed)."""
    seed = int(os.environ.get("RTUNE_CRASH_SEED", "2026"))
    interruptions = int(os.environ.get("RTUNE_CRASH_INTERRUPTIONS", "3"))
    final, done = run_crash_loop(experiment, seed, interruptions)
    print(f"crash loop, seed {seed}: {done}")
    assert done, "the run finished before any interruption: nothing was tested"
    try:
        final_results = final.results()
        executions = experiment.executions()
        assert_completed(final_results, executions, len(done), CRASH_ITERATIONS, CRASH_TRIALS)
        assert_logged_once(experiment, CRASH_ITERATIONS, CRASH_TRIALS)
    except AssertionError as failure:
        raise AssertionError(f"seed {seed}, {done}: {failure}") from failure


def assert_logged_once(experiment: Experiment, iterations: int, trials: int) -> None:
    """What users read besides the history holds each iteration once, as the history does:
    progress.csv, result.json, TensorBoard's scalars (read by TensorBoard's own reader), and a
    callback that keeps what it heard in its state."""
    expected = list(range(1, iterations + 1))
    trial_dirs = [p.parent for p in Path(experiment.path).glob("*/params.json")]
    assert len(trial_dirs) == trials, trial_dirs
    for trial_dir in trial_dirs:
        progress = pd.read_csv(trial_dir / "progress.csv")
        assert list(progress["training_iteration"]) == expected, (trial_dir.name, "csv")
        lines = (trial_dir / "result.json").read_text().splitlines()
        steps = [json.loads(line)["training_iteration"] for line in lines]
        assert steps == expected, (trial_dir.name, "json", steps)
        board = EventAccumulator(str(trial_dir))
        board.Reload()
        scalars = board.Scalars("ray/tune/value")
        assert [s.step for s in scalars] == expected, (trial_dir.name, "tensorboard")
        assert [s.value for s in scalars] == list(progress["value"]), trial_dir.name
    heard = json.loads((experiment.progress / "heard.json").read_text())
    assert heard == {f"{t}:{i}": 1 for t in range(trials) for i in expected}, heard


@pytest.mark.skipif(not os.environ.get("RTUNE_SOAK"), reason="a soak: RTUNE_SOAK=1 to run it")
@pytest.mark.parametrize("seed", range(10))
def test_crash_loop_soak(experiment, seed):
    """By hand: RTUNE_SOAK=1 pytest -k soak tests/test_signals.py (ten seeds, 12 interruptions)."""
    final, done = run_crash_loop(experiment, seed, 12)
    print(f"crash loop soak, seed {seed}: {len(done)} interruptions: {done}")
    results, executions = final.results(), experiment.executions()
    assert_completed(results, executions, len(done), CRASH_ITERATIONS, CRASH_TRIALS)
