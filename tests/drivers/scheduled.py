"""A driver process for tests/test_scheduler_restore.py: scheduled experiments to kill and restore.

    python tests/drivers/scheduled.py <storage_path> <progress_dir> <scheduler>[=<hold_at>] ...
        [--trials K] [--steps N] [--concurrency C] [--sleep S] [--num-to-keep M]

It starts its own Ray (so a `kill -9` takes down nothing but these experiments) and runs one
experiment per scheduler named (asha, hyperband, median, pbt, pbt_synch), named after it.
Several run at once, each fit() in a thread of its own (a `kill -9` then catches each at its
own point); one runs in the main thread, where the stop signals reach it. The trainable is
deterministic, so a restored run can be compared with an uninterrupted one (`outcome`), and
leaves evidence the test reads without Ray:

- `<progress_dir>/<scheduler>.log` gets a fixed-width line each time a step *starts*; the step
  that writes line `hold_at` waits there (for `<progress_dir>/<scheduler>.go`, or until rtune asks
  the trial to stop), so a test freezes each experiment at a known, seeded point;
- `<progress_dir>/ray_session` names this Ray's session directory, so the test can reap it;
- stdout gets "OUTCOME <json>": {scheduler: outcome(...)} once every fit() returned.

The test imports this module for the experiment's definition (the uninterrupted runs happen in the
test process); the driver's own trainable is pickled by value (as `__main__`), so a restore in
another process needs nothing but the experiment's storage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time

import ray

import rtune as tune
from rtune.schedulers import (
    ASHAScheduler,
    HyperBandScheduler,
    MedianStoppingRule,
    PopulationBasedTraining,
)

SCHEDULERS = ("asha", "hyperband", "median", "pbt", "pbt_synch")
XS = [3.0, 7.0, 1.0, 9.0, 5.0, 2.0, 8.0, 4.0]
LINE = "{:05d}\n"  # one fixed-width line per started step: its end offset numbers it
HOLD_LIMIT_S = 120.0  # a held step gives up eventually, so a broken test cannot hang
RUN_ONLY = ("progress", "hold_at", "sleep")  # config keys that say how to run, not what


def _started(progress: str, scheduler: str, step: int) -> int:
    """Append this step to the experiment's log; the line's number (1-based), unique even when
    trials append at once (O_APPEND writes whole lines; the offset after ours is our own)."""
    fd = os.open(os.path.join(progress, f"{scheduler}.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, LINE.format(step).encode())
        return os.lseek(fd, 0, os.SEEK_CUR) // len(LINE.format(0))
    finally:
        os.close(fd)


def _hold(go: str) -> None:
    deadline = time.monotonic() + HOLD_LIMIT_S
    while not (
        tune.get_context().stop_requested or os.path.exists(go) or time.monotonic() > deadline
    ):
        time.sleep(0.02)


def gain(config: dict, step: int) -> float:
    """A step's score: the larger x leads the first three steps, the smaller one after, so early
    and late cut-offs disagree (the schedulers have something to decide)."""
    return config["lr"] * (config["x"] if step <= 3 else 10.0 - config["x"])


def stepper(config: dict) -> None:
    """Adds `gain` each step; its checkpoint (every step) holds the total and the step, so a
    restored or exploiting trial goes on from exactly there."""
    total, start = 0.0, 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # a missing or damaged checkpoint fails the trial, loudly
        with checkpoint.as_directory() as directory:
            with open(os.path.join(directory, "state.json")) as src:
                saved = json.load(src)
        total, start = saved["total"], saved["step"]
    for step in range(start + 1, config["steps"] + 1):
        line = _started(config["progress"], config["scheduler"], step)
        if line == config["hold_at"]:
            _hold(os.path.join(config["progress"], f"{config['scheduler']}.go"))
        time.sleep(config["sleep"])
        total += gain(config, step)
        with tempfile.TemporaryDirectory() as directory:
            with open(os.path.join(directory, "state.json"), "w") as out:
                json.dump({"total": total, "step": step}, out)
            tune.report({"score": total}, checkpoint=tune.Checkpoint.from_directory(directory))


def scheduler_for(name: str):
    if name == "asha":
        return ASHAScheduler(max_t=9, grace_period=1, reduction_factor=3)
    if name == "hyperband":
        return HyperBandScheduler(max_t=9, reduction_factor=3)
    if name == "median":
        return MedianStoppingRule(
            time_attr="training_iteration", grace_period=2, min_samples_required=2
        )
    if name in ("pbt", "pbt_synch"):
        return PopulationBasedTraining(
            time_attr="training_iteration",
            perturbation_interval=3,
            hyperparam_mutations={"lr": [0.5, 1.0, 2.0, 4.0]},
            synch=name == "pbt_synch",
        )
    raise ValueError(f"no scheduler {name!r}: one of {SCHEDULERS}")


def tuner(
    name: str,
    storage_path: str,
    progress: str,
    hold_at: int = 0,
    trials: int = 6,
    steps: int = 9,
    concurrency: int = 1,
    sleep: float = 0.0,
    num_to_keep: int | None = 1,
    trainable=stepper,
) -> tune.Tuner:
    return tune.Tuner(
        trainable,
        param_space={
            "x": tune.grid_search(XS[:trials]),
            "lr": 1.0,
            "steps": steps,
            "scheduler": name,
            "progress": progress,
            "hold_at": hold_at,
            "sleep": sleep,
        },
        tune_config=tune.TuneConfig(
            scheduler=scheduler_for(name),
            metric="score",
            mode="max",
            max_concurrent_trials=concurrency,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage_path,
            verbose=0,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=num_to_keep),
        ),
    )


def _core(config: dict) -> dict:
    return {k: v for k, v in sorted(config.items()) if k not in RUN_ONLY}


def outcome(grid: tune.ResultGrid) -> dict:
    """What a user compares between two runs: each trial's status, last iteration, final config
    and score, and the iterations of its history; PBT's exploits in order, from its global log."""
    trials = []
    for result in grid:
        frame = result.metrics_dataframe
        trials.append(
            [
                result.status,
                result.metrics.get("training_iteration"),
                _core(result.config),
                round(result.metrics.get("score", 0.0), 6),
                [int(i) for i in frame["training_iteration"]] if len(frame) else [],
                None if result.error is None else str(result.error)[:300],
            ]
        )
    exploits = []
    path = os.path.join(grid.experiment_path, "pbt_global.txt")
    if os.path.exists(path):
        with open(path) as src:
            for line in src:
                a, b, i, j, old, new = json.loads(line)
                exploits.append([a, b, i, j, _core(old), _core(new)])
    return {"trials": sorted(trials, key=json.dumps), "exploits": exploits}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("storage_path")
    parser.add_argument("progress_dir")
    parser.add_argument("experiments", nargs="+", help="<scheduler>[=<hold_at>]")
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--steps", type=int, default=9)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--num-to-keep", type=int, default=1)
    parser.add_argument("--restore", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    # logical CPUs for every experiment to run its trial at once (each holds one while frozen)
    ray.init(address="local", num_cpus=8, include_dashboard=False)
    # private, but nothing public names the session directory this driver's Ray runs in
    session_dir = ray._private.worker._global_node.get_session_dir_path()
    with open(os.path.join(args.progress_dir, "ray_session"), "w") as out:
        out.write(session_dir)
    outcomes: dict[str, dict] = {}

    def run(spec: str) -> None:
        name, _, hold_at = spec.partition("=")
        if args.restore:
            grid = tune.Tuner.restore(os.path.join(args.storage_path, name)).fit()
        else:
            grid = tuner(
                name,
                args.storage_path,
                args.progress_dir,
                hold_at=int(hold_at or 0),
                trials=args.trials,
                steps=args.steps,
                concurrency=args.concurrency,
                sleep=args.sleep,
                num_to_keep=args.num_to_keep,
            ).fit()
        outcomes[name] = outcome(grid)

    if len(args.experiments) == 1:
        run(args.experiments[0])
    else:
        threads = [threading.Thread(target=run, args=(spec,)) for spec in args.experiments]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    print("OUTCOME " + json.dumps(outcomes, sort_keys=True), flush=True)
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
