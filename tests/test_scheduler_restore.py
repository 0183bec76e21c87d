"""A restored scheduled run decides as the uninterrupted one: ASHA, HyperBand, median stopping and
PBT (asynchronous and synchronous), after a Ctrl-C and after a `kill -9`, compared on what a user
sees (each trial's status, last iteration, final config, score and history; PBT's exploits).

The experiments are tests/drivers/scheduled.py's: a deterministic trainable, one trial at a time,
stopped at a seeded step (RTUNE_SCHED_SEED replays another). The uninterrupted runs and every
restore happen in this process; the `kill -9` hits a driver process running all four at once, each
frozen at its own point. A crash loop of seeded `kill -9`s and stop signals over a PBT run of 8
trials, with `num_to_keep=1`, ends with every trial finished and each iteration once in its
history, and no exploit or restore ever read a checkpoint that was not there (the trainable fails
loudly on one).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
from pathlib import Path

import pytest
from driver_runs import (
    START_TIMEOUT_S,
    Run,
    crash_loop,
    reap,
    wait_until,
)
from drivers import scheduled
from iteration_checkpoints import ctrl_c_when

import rtune as tune

DRIVER = Path(__file__).parent / "drivers" / "scheduled.py"
SEED = int(os.environ.get("RTUNE_SCHED_SEED", "2026"))


def _lines(progress: Path, name: str) -> int:
    log = progress / f"{name}.log"
    return log.stat().st_size // len(scheduled.LINE.format(0)) if log.exists() else 0


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, ray_local):
    """{scheduler: (outcome, results recorded)} of one uninterrupted run each."""
    tmp = tmp_path_factory.mktemp("uninterrupted")
    runs = {}
    for name in scheduled.SCHEDULERS:
        found = scheduled.outcome(scheduled.tuner(name, str(tmp / "results"), str(tmp)).fit())
        recorded = sum(len(history) for *_, history, _ in found["trials"])
        runs[name] = (found, recorded)
    # the schedulers had something to decide: a restore that forgot them would show
    assert any(t[1] < 9 for t in runs["asha"][0]["trials"])
    assert any(t[1] < 9 for t in runs["hyperband"][0]["trials"])
    assert any(t[1] < 9 for t in runs["median"][0]["trials"])
    assert runs["pbt"][0]["exploits"]
    # synchronous: every exploit at a perturbation point, donor and recipient at the same step
    assert runs["pbt_synch"][0]["exploits"]
    assert all(i == j and i % 3 == 0 for _, _, i, j, *_ in runs["pbt_synch"][0]["exploits"])
    return runs


def _hold_points(uninterrupted: dict) -> dict[str, int]:
    """A seeded step per scheduler, among those every run starts (each recorded result was one)."""
    rng = random.Random(SEED)
    return {name: rng.randint(2, recorded - 1) for name, (_, recorded) in uninterrupted.items()}


def _restored(storage: str, name: str) -> dict:
    return scheduled.outcome(tune.Tuner.restore(os.path.join(storage, name)).fit())


@pytest.mark.slow
@pytest.mark.parametrize("name", scheduled.SCHEDULERS)
def test_ctrl_c_at_a_seeded_step_then_restore_decides_as_the_uninterrupted_run(
    name, uninterrupted, tmp_path
):
    hold_at = _hold_points(uninterrupted)[name]
    storage = str(tmp_path / "results")
    ctrl_c_when(lambda: _lines(tmp_path, name) >= hold_at)
    stopped = scheduled.outcome(scheduled.tuner(name, storage, str(tmp_path), hold_at).fit())
    assert any(t[0] != "TERMINATED" for t in stopped["trials"]), f"seed {SEED}: not stopped"
    assert _restored(storage, name) == uninterrupted[name][0], f"seed {SEED}, step {hold_at}"


@pytest.mark.slow
def test_kill_9_at_a_seeded_step_then_restore_decides_as_the_uninterrupted_run(
    uninterrupted, tmp_path
):
    holds = _hold_points(uninterrupted)
    storage = str(tmp_path / "results")
    specs = [f"{name}={step}" for name, step in holds.items()]
    command = [sys.executable, str(DRIVER), storage, str(tmp_path), *specs]
    run = Run(command, tmp_path / "driver.out", tmp_path / "driver.err", tmp_path)
    try:

        def all_held() -> bool:
            return all(_lines(tmp_path, name) >= step for name, step in holds.items())

        wait_until(all_held, f"every experiment at its step {holds}", START_TIMEOUT_S, run)
    finally:
        if run.proc.poll() is None:
            os.killpg(run.proc.pid, signal.SIGKILL)
        run.proc.wait()
        if run.session_dir:
            reap(run.session_dir)
    assert "OUTCOME" not in run.stdout()  # killed before any fit() returned
    for name in scheduled.SCHEDULERS:
        found = _restored(storage, name)
        assert found == uninterrupted[name][0], f"{name}, seed {SEED}, steps {holds}"


CRASH_TRIALS, CRASH_STEPS = 8, 15


def _outcome(run: Run) -> dict | None:
    for line in run.stdout().splitlines():
        if line.startswith("OUTCOME "):
            return json.loads(line[len("OUTCOME ") :])["pbt"]
    return None


def _finished(run: Run) -> bool:
    """Whether the run's fit() returned with every trial ended (not drained by a stop signal)."""
    found = _outcome(run)
    return found is not None and all(t[0] in ("TERMINATED", "ERROR") for t in found["trials"])


def _pbt_crash_loop(tmp_path: Path, seed: int, interruptions: int) -> tuple[Run, list[str]]:
    """`crash_loop` over the PBT experiment in a driver: 8 trials, 4 at a time, num_to_keep=1."""

    def launch(cycle: int) -> Run:
        (tmp_path / "ray_session").unlink(missing_ok=True)
        command = [sys.executable, str(DRIVER), str(tmp_path / "results"), str(tmp_path), "pbt"]
        command += ["--trials", str(CRASH_TRIALS), "--steps", str(CRASH_STEPS)]
        command += ["--concurrency", "4", "--sleep", "0.1", "--num-to-keep", "1"]
        if (tmp_path / "results" / "pbt" / "tuner.pkl").exists():
            command.append("--restore")
        tag = f"cycle{cycle}"
        return Run(command, tmp_path / f"{tag}.out", tmp_path / f"{tag}.err", tmp_path)

    return crash_loop(
        launch, lambda: _lines(tmp_path, "pbt"), _finished, seed, interruptions, max_delay_s=2.0
    )


@pytest.mark.slow
def test_a_pbt_crash_loop_with_num_to_keep_1_finishes_every_trial_losing_nothing(
    tmp_path, ray_local
):
    seed = int(os.environ.get("RTUNE_CRASH_SEED", str(SEED)))
    final, done = _pbt_crash_loop(tmp_path, seed, interruptions=3)
    print(f"PBT crash loop, seed {seed}: {done}")
    assert done, "the run finished before any interruption: nothing was tested"
    found = _outcome(final)
    assert found["exploits"], f"seed {seed}, {done}: no exploit happened"
    assert len(found["trials"]) == CRASH_TRIALS
    for status, last, config, _, history, error in found["trials"]:
        # an exploit or restore that read a missing checkpoint fails its trial
        assert (status, last, error) == ("TERMINATED", CRASH_STEPS, None), (seed, done, config)
        # each iteration once: an exploit jumps to the donor's step, never back
        assert history == sorted(set(history)) and history[-1] == CRASH_STEPS, (seed, done)
