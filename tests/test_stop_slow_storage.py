"""A stop takes effect at once whatever storage is doing, and status() answers meanwhile.

The experiment runs on the S3-compatible server through the fault proxy. Once results flow, the
proxy delays every chunk by a second: a state write then takes ~10 s (no request fails, so to
rtune the store is slow, not down) and the controller's loop sits in one. Trials that report
without a checkpoint keep running ahead of that blocked loop; so the iterations they start
after `rtune.stop_experiment()` count how long the stop took to reach them. Storage recovers only
once every trainable has seen the stop; then the run ends as a drain and the restore completes
it from the checkpoints the trainables reported when they saw the stop.

The driver's own status block must survive slow storage too: one due before the controller's loop
published anything (its start waits on the lease write) gets no snapshot to show."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

import pytest
import ray
import test_faults
from conftest import experiment_path

import rtune as tune
from rtune._execution.driver_messages import Status
from rtune.control import find_experiment

NAME = "stop_on_slow_store"
TRIALS = 2
ITERATIONS = 100
SLEEP_S = 0.1
CHUNK_DELAY_S = 1.0  # per forwarded chunk: a write takes ~10 s; 2 s would time requests out
START_TIMEOUT_S = 60.0  # Ray, the controller and the first iterations on a busy machine
BLOCK_TIMEOUT_S = 30.0  # for the loop to enter a slowed state write
OBSERVE_TIMEOUT_S = 30.0  # the trainables see the stop long before this, storage still slow
STATUS_ANSWER_S = 4.0  # STATUS_WAIT_S (0.5 s) plus a generous margin, well below one write
END_TIMEOUT_S = 90.0  # the drain's writes, once storage is fast again
MAX_STARTED_AFTER_STOP = 2  # the iteration in flight, and one that began as the stop was sent

proxied_s3 = test_faults.proxied_s3  # the fixture: the S3 server behind a FaultProxy


def log_line(config: dict, *words: object) -> None:
    path = os.path.join(config["progress_dir"], f"trial_{config['id']}.log")
    with open(path, "a") as log:
        log.write(" ".join(map(str, words)) + "\n")


def paced(config: dict) -> None:
    """Reports each iteration without a checkpoint (nothing for it to write to slow storage), and
    with one once it sees the stop, as a user's trainable checking `stop_requested` would."""
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as directory:
            start = int(Path(directory, "iteration").read_text())
    log_line(config, "resumed", start)
    iteration = start
    try:
        for iteration in range(start + 1, ITERATIONS + 1):
            log_line(config, "start", iteration)
            time.sleep(SLEEP_S)
            metrics = {"value": config["id"] * 1000 + iteration, "resumed_from": start}
            if not tune.get_context().stop_requested:
                tune.report(metrics)
                continue
            log_line(config, "observed", iteration)
            with tempfile.TemporaryDirectory() as directory:
                Path(directory, "iteration").write_text(str(iteration))
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
    except BaseException:  # the stop unwinds report(), even one that began before it came
        log_line(config, "unwound", iteration)
        raise


def trial_logs(progress: Path) -> dict[int, list[tuple[str, int]]]:
    logs = {}
    for trial in range(TRIALS):
        path = progress / f"trial_{trial}.log"
        lines = path.read_text().splitlines() if path.exists() else []
        logs[trial] = [(word, int(number)) for word, number in (line.split() for line in lines)]
    return logs


def started(progress: Path) -> dict[int, int]:
    return {t: sum(w == "start" for w, _ in log) for t, log in trial_logs(progress).items()}


def saw_stop(progress: Path) -> dict[int, int]:
    """{trial: the iteration at which its trainable saw the stop} for those that did."""
    seen = {}
    for trial, log in trial_logs(progress).items():
        for word, iteration in log:
            if word in ("observed", "unwound"):
                seen.setdefault(trial, iteration)
    return seen


def wait_until(condition, what: str, timeout_s: float, fit_outcome: dict) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if "error" in fit_outcome or "value" in fit_outcome:
            pytest.fail(f"fit() returned before {what}: {fit_outcome}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout_s:g} s")
        time.sleep(0.05)


def wait_for_results(fit_outcome: dict):
    """The controller, once its status shows every trial running with results."""
    found: dict = {}

    def flowing() -> bool:
        try:
            found["controller"] = find_experiment(NAME).actor
            status = ray.get(found["controller"].status.remote(), timeout=STATUS_ANSWER_S)
        except (LookupError, ray.exceptions.GetTimeoutError):  # not started yet
            return False
        rows = status.rows  # none before the loop's first snapshot
        return status.counts == {"RUNNING": TRIALS} and all(
            row.last_result.get("training_iteration", 0) >= 3 for row in rows
        )

    wait_until(flowing, "results of every trial in the status", START_TIMEOUT_S, fit_outcome)
    return found["controller"]


def prompt_status(controller) -> Status:
    """The controller's status, which must answer within STATUS_ANSWER_S whatever its loop does."""
    try:
        return ray.get(controller.status.remote(), timeout=STATUS_ANSWER_S)
    except ray.exceptions.GetTimeoutError:
        pytest.fail(f"status() did not answer within {STATUS_ANSWER_S:g} s")


@pytest.mark.slow
def test_a_stop_reaches_the_trials_while_the_loop_waits_on_slow_storage(proxied_s3, tmp_path):
    proxy, uri = proxied_s3
    progress = tmp_path / "progress"
    progress.mkdir()
    tuner = tune.Tuner(
        paced,
        param_space={"id": tune.grid_search(list(range(TRIALS))), "progress_dir": str(progress)},
        tune_config=tune.TuneConfig(max_concurrent_trials=TRIALS),
        run_config=tune.RunConfig(storage_path=uri, name=NAME, verbose=0),
    )
    fit_thread, fit_outcome = test_faults._run_in_thread(tuner.fit)
    try:
        controller = wait_for_results(fit_outcome)

        proxy.slow(CHUNK_DELAY_S)
        # the loop is blocked once it stops publishing: a status call asks it for a fresh
        # snapshot, and gets the last one when none comes within STATUS_WAIT_S
        previous = prompt_status(controller)
        deadline = time.monotonic() + BLOCK_TIMEOUT_S
        while True:
            time.sleep(1.2)  # longer than the loop's publishing period (1 s): a poll interval
            blocked = prompt_status(controller)
            if blocked.elapsed_s == previous.elapsed_s:
                break
            assert time.monotonic() < deadline, "the loop never blocked in a slowed state write"
            previous = blocked
        assert blocked.counts == {"RUNNING": TRIALS}, blocked.counts
        # trials run ahead of a blocked loop (they need no acknowledgement): without a stop that
        # reaches them directly, they would go on for as long as storage stays slow
        while_blocked = started(progress)
        wait_until(
            lambda: all(n >= while_blocked[t] + 3 for t, n in started(progress).items()),
            "3 more iterations in every trial while the loop is blocked",
            BLOCK_TIMEOUT_S,
            fit_outcome,
        )
        at_stop = started(progress)

        tune.stop_experiment(NAME)  # as `rtune stop` would, from any process on the cluster

        wait_until(
            lambda: len(saw_stop(progress)) == TRIALS,
            "trainable seeing the stop in every trial",
            OBSERVE_TIMEOUT_S,
            fit_outcome,
        )
        after_stop = started(progress)
        still_blocked = prompt_status(controller)
        for trial in range(TRIALS):
            started_after = after_stop[trial] - at_stop[trial]
            assert started_after <= MAX_STARTED_AFTER_STOP, (trial, at_stop, after_stop)
        # the loop has not had a turn since before the stop: the trials heard it from the stop
        # call itself, not from the loop
        assert still_blocked.elapsed_s == blocked.elapsed_s, (
            "the loop had a turn before the trainables saw the stop; this test needs it held in "
            "one slowed state write throughout (did the write end early?)"
        )
        assert still_blocked.drain_reason is None
    finally:
        proxy.slow(0)  # storage recovers
        fit_thread.join(END_TIMEOUT_S)

    assert not fit_thread.is_alive(), "fit() did not return once storage recovered"
    assert "error" not in fit_outcome, fit_outcome.get("error")
    assert started(progress) == after_stop  # nothing began once the trainables had stopped
    seen = saw_stop(progress)
    for result in fit_outcome["value"]:
        trial = result.config["id"]
        assert result.status == "PAUSED", (trial, result.status, result.error)
        last = result.metrics["training_iteration"]
        assert last == seen[trial] < ITERATIONS, (trial, last, seen)
        assert list(result.metrics_dataframe["training_iteration"]) == list(range(1, last + 1))

    checkpointed = {
        t: seen[t] for t, log in trial_logs(progress).items() if ("observed", seen[t]) in log
    }
    restored = tune.Tuner.restore(experiment_path(uri, NAME)).fit()
    for result in restored:
        trial = result.config["id"]
        assert result.status == "TERMINATED", (trial, result.error)
        history = list(result.metrics_dataframe["training_iteration"])
        assert history == list(range(1, ITERATIONS + 1)), trial  # each iteration once
        # resumed from the checkpoint reported when its trainable saw the stop
        assert result.metrics["resumed_from"] == checkpointed.get(trial, 0), trial


def short(config: dict) -> None:
    for iteration in range(1, 21):
        time.sleep(SLEEP_S)
        tune.report({"value": config["id"] * 1000 + iteration})


@pytest.mark.slow
def test_a_status_block_before_the_loops_first_snapshot_does_not_fail_the_run(proxied_s3, tmp_path):
    proxy, uri = proxied_s3
    name = "status_before_first_snapshot"
    controller_seen = threading.Event()

    def slow_once_the_controller_exists():
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                find_experiment(name)
            except LookupError:
                time.sleep(0.05)
                continue
            proxy.slow(CHUNK_DELAY_S)
            controller_seen.set()
            # the slowness outlasts the driver's first status block (5 s after it started the
            # controller); its length, not an assertion
            time.sleep(8)
            proxy.slow(0)
            return

    slower = threading.Thread(target=slow_once_the_controller_exists, daemon=True)
    slower.start()
    tuner = tune.Tuner(
        short,
        param_space={"id": tune.grid_search(list(range(TRIALS)))},
        run_config=tune.RunConfig(storage_path=uri, name=name, verbose=1),
    )
    try:
        results = tuner.fit()
    finally:
        slower.join()
        proxy.slow(0)
        try:  # a failed fit() leaves its controller running the trials: not into later tests
            tune.stop_experiment(name, force=True)
        except (LookupError, ray.exceptions.RayError):  # it ended meanwhile
            pass
    assert controller_seen.is_set()
    assert [result.status for result in results] == ["TERMINATED"] * TRIALS
