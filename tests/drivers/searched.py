"""A driver process for tests/test_optuna.py: an OptunaSearch experiment to kill and restore.

    python tests/drivers/searched.py <storage_path> <progress_dir>
        [--trials N] [--steps K] [--concurrency C] [--sleep S] [--restore]

It starts its own Ray (so a `kill -9` takes down nothing but this experiment) and runs `N`
trials of a TPE `OptunaSearch` (seeded) over `x` and `y`, `C` at a time, each `K` checkpointed
steps. Evidence the test reads without Ray:

- `<progress_dir>/steps.log` gets a line each time a step starts (the crash loop's progress);
- `<progress_dir>/ray_session` names this Ray's session directory, so the test can reap it;
- stdout gets "OUTCOME <json>" once fit() returned: {"trials": [[status, last step, x, y], ...]
  in trial order, "study": [[state, x, y], ...] of the searcher's final study}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import ray

import rtune as tune
from rtune.search.optuna import OptunaSearch

NAME = "searched"


def searched(config):
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            with open(os.path.join(directory, "step")) as src:
                start = int(src.read())
    for step in range(start + 1, config["steps"] + 1):
        with open(os.path.join(config["progress"], "steps.log"), "a") as log:
            log.write(f"{step}\n")
        time.sleep(config["sleep"])
        with tempfile.TemporaryDirectory() as directory:
            with open(os.path.join(directory, "step"), "w") as out:
                out.write(str(step))
            score = -((config["x"] - 0.3) ** 2) - config["y"] / 100
            tune.report({"score": score}, checkpoint=tune.Checkpoint.from_directory(directory))


def tuner(args: argparse.Namespace) -> tune.Tuner:
    return tune.Tuner(
        searched,
        param_space={
            "x": tune.uniform(0, 1),
            "y": tune.randint(0, 10),
            "progress": args.progress_dir,
            "sleep": args.sleep,
            "steps": args.steps,
        },
        tune_config=tune.TuneConfig(
            search_alg=OptunaSearch(seed=3),
            metric="score",
            mode="max",
            num_samples=args.trials,
            max_concurrent_trials=args.concurrency,
        ),
        run_config=tune.RunConfig(
            storage_path=args.storage_path,
            name=NAME,
            verbose=0,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        ),
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("storage_path")
    parser.add_argument("progress_dir")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--sleep", type=float, default=0.1)
    parser.add_argument("--restore", action="store_true")
    args = parser.parse_args(argv)
    ray.init(address="local", num_cpus=4, include_dashboard=False)
    # private, but nothing public names the session directory this driver's Ray runs in
    session_dir = ray._private.worker._global_node.get_session_dir_path()
    with open(os.path.join(args.progress_dir, "ray_session"), "w") as out:
        out.write(session_dir)
    if args.restore:
        restored = tune.Tuner.restore(os.path.join(args.storage_path, NAME))
        grid = restored.fit()
        searcher = restored._searcher  # private: Ray Tune's Tuner has no accessor either
    else:
        fresh = tuner(args)
        grid = fresh.fit()
        searcher = fresh._searcher
    while not isinstance(searcher, OptunaSearch):  # the ConcurrencyLimiter around it
        searcher = searcher.searcher
    trials = [
        [r.status, r.metrics.get("training_iteration"), r.config["x"], r.config["y"]]
        for r in sorted(grid, key=lambda r: r.path)
    ]
    study = [[t.state.name, t.params.get("x"), t.params.get("y")] for t in searcher.study.trials]
    print("OUTCOME " + json.dumps({"trials": trials, "study": study}), flush=True)
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
