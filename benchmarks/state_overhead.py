"""Experiment checkpoint overhead, rtune beside Ray Tune: what writing the experiment state costs.

    python benchmarks/state_overhead.py --trials 1000 --iterations 20 --concurrency 2
    python benchmarks/state_overhead.py ... [--repeat 1] [--skip-raytune] [--num-cpus N]

Workload (issue 5, workload 4): N trivial function trials, each reporting `iterations` times with
no work between reports, `max_concurrent_trials=concurrency`. For rtune, from
`Tuner.last_run_stats`: the share of `fit()`'s wall time spent writing experiment state (the
issue's measure) and, stricter, of the controller's own run time (start-up excluded); the number
of state writes and the bytes written per trial. For both libraries: the files and bytes under
the experiment directory after the run, and the largest `experiment_state-*.json` (or rtune's
`experiment_delta-*.json`).
Ray Tune's share of time is not observable from outside (n/a). Ray Tune runs with
reuse_actors=True (its fastest setting). With TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1, as in every
benchmark here, Ray Tune writes no per-trial result files, so its directory holds experiment state
alone, while rtune's also holds each trial's params and results. Runs alternate.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")

from _common import alternate, print_comparison, start_ray  # noqa: E402

STATE_FILES = ("experiment_state-", "experiment_delta-")


def directory_figures(experiment_dir: str) -> dict[str, float]:
    """Files and bytes under the experiment directory; the largest state file (rtune's deltas
    too: a run's last write, every trial's end, may be a delta)."""
    files = total = largest_state = 0
    for root, _, names in os.walk(experiment_dir):
        for name in names:
            size = os.path.getsize(os.path.join(root, name))
            files += 1
            total += size
            if name.startswith(STATE_FILES) and name.endswith(".json"):
                largest_state = max(largest_state, size)
    return {"files": files, "bytes": total, "largest state file": largest_state}


def rtune_state(trials: int, iterations: int, concurrency: int, storage: str) -> dict:
    import rtune

    def trivial(config):
        for i in range(config["iterations"]):
            rtune.report({"i": i})

    name = f"state_rtune_{time.monotonic_ns()}"
    tuner = rtune.Tuner(
        trivial,
        param_space={"t": rtune.grid_search(list(range(trials))), "iterations": iterations},
        tune_config=rtune.TuneConfig(max_concurrent_trials=concurrency),
        run_config=rtune.RunConfig(
            storage_path=storage, name=name, verbose=0, default_loggers=False
        ),
    )
    started = time.perf_counter()
    tuner.fit()
    wall = time.perf_counter() - started
    stats = tuner.last_run_stats
    return {
        "wall s": wall,
        "state write share": stats["state_write_s"] / wall,
        "state write share of controller": stats["state_write_s"] / stats["controller_run_s"],
        "state writes": stats["state_writes"],
        "state bytes/trial": stats["state_bytes"] / trials,
        **directory_figures(os.path.join(storage, name)),
    }


def raytune_state(trials: int, iterations: int, concurrency: int, storage: str) -> dict:
    from ray import tune

    def trivial(config):
        for i in range(config["iterations"]):
            tune.report({"i": i})

    name = f"state_raytune_{time.monotonic_ns()}"
    started = time.perf_counter()
    tune.Tuner(
        trivial,
        param_space={"t": tune.grid_search(list(range(trials))), "iterations": iterations},
        tune_config=tune.TuneConfig(max_concurrent_trials=concurrency, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=storage, name=name, verbose=0),
    ).fit()
    wall = time.perf_counter() - started
    return {"wall s": wall, **directory_figures(os.path.join(storage, name))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--skip-raytune", action="store_true")
    parser.add_argument("--num-cpus", type=int, default=None)
    args = parser.parse_args()

    start_ray(args.num_cpus)
    storage = tempfile.mkdtemp(prefix="rtune_bench_")
    work = (args.trials, args.iterations, args.concurrency, storage)
    runs = [("rtune", lambda: rtune_state(*work))]
    if not args.skip_raytune:
        runs.append(("ray tune", lambda: raytune_state(*work)))
    medians = alternate(runs, args.repeat)
    print(
        f"{args.trials} trials x {args.iterations} reports, {args.concurrency} at a time "
        f"(medians of {args.repeat})"
    )
    rows = [
        ("fit() wall time", "wall s", "s"),
        ("time writing experiment state, of fit()", "state write share", "%"),
        ("  of the controller's run time", "state write share of controller", "%"),
        ("experiment state writes", "state writes", ""),
        ("state bytes written per trial", "state bytes/trial", "B"),
        ("files in the experiment dir", "files", ""),
        ("bytes in the experiment dir", "bytes", "B"),
        ("largest experiment state file", "largest state file", "B"),
    ]
    print_comparison(rows, medians)


if __name__ == "__main__":
    main()
