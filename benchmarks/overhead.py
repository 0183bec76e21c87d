"""Bookkeeping overhead, rtune beside Ray Tune: fit() wall time against the theoretical minimum.

    python benchmarks/overhead.py --trials 100 --iterations 1 --iteration-s 1.0
    python benchmarks/overhead.py --trials 100 --iterations 20 --iteration-s 0.05
    python benchmarks/overhead.py ... [--cpus 2] [--repeat 1] [--skip-raytune] [--raytune-defaults]

Workloads (issue 5, workload 3, and "100 trials x 20 iterations x 0.05 s on 2 CPUs"): N function
trials of 1 CPU each, each running `iterations` iterations of `time.sleep(iteration_s)` and a
report, on a Ray of `cpus` CPUs. The theoretical minimum is trials * iterations * iteration_s /
cpus; the figure is fit()'s wall time divided by it. Ray Tune runs with reuse_actors=True (its
fastest setting) and, with --raytune-defaults, also with its defaults (reuse_actors=False). Runs
alternate.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")

from _common import start_ray  # noqa: E402


def rtune_overhead(trials: int, iterations: int, iteration_s: float, storage: str) -> float:
    import rtune

    def sleepy(config):
        for i in range(config["iterations"]):
            time.sleep(config["iteration_s"])
            rtune.report({"i": i})

    started = time.perf_counter()
    rtune.Tuner(
        rtune.with_resources(sleepy, {"cpu": 1}),
        param_space={
            "t": rtune.grid_search(list(range(trials))),
            "iterations": iterations,
            "iteration_s": iteration_s,
        },
        run_config=rtune.RunConfig(storage_path=storage, verbose=0, default_loggers=False),
    ).fit()
    return time.perf_counter() - started


def raytune_overhead(
    trials: int, iterations: int, iteration_s: float, storage: str, reuse_actors: bool | None
) -> float:
    from ray import tune

    def sleepy(config):
        for i in range(config["iterations"]):
            time.sleep(config["iteration_s"])
            tune.report({"i": i})

    tune_config = (
        tune.TuneConfig() if reuse_actors is None else tune.TuneConfig(reuse_actors=reuse_actors)
    )
    started = time.perf_counter()
    tune.Tuner(
        tune.with_resources(sleepy, {"cpu": 1}),
        param_space={
            "t": tune.grid_search(list(range(trials))),
            "iterations": iterations,
            "iteration_s": iteration_s,
        },
        tune_config=tune_config,
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--iterations", type=int, default=1)
    parser.add_argument("--iteration-s", type=float, default=1.0)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--skip-raytune", action="store_true")
    parser.add_argument("--raytune-defaults", action="store_true")
    args = parser.parse_args()

    start_ray(args.cpus)
    storage = tempfile.mkdtemp(prefix="rtune_bench_")
    minimum = args.trials * args.iterations * args.iteration_s / args.cpus
    work = (args.trials, args.iterations, args.iteration_s, storage)
    runs = [("rtune", lambda: rtune_overhead(*work))]
    if not args.skip_raytune:
        runs.append(("ray tune", lambda: raytune_overhead(*work, reuse_actors=True)))
        if args.raytune_defaults:
            runs.append(("ray tune defaults", lambda: raytune_overhead(*work, reuse_actors=None)))
    walls: dict[str, list[float]] = {}
    for _ in range(args.repeat):
        for name, run in runs:
            walls.setdefault(name, []).append(run())
    medians = {name: statistics.median(values) for name, values in walls.items()}
    print(
        f"{args.trials} trials x {args.iterations} iterations x {args.iteration_s:g} s on "
        f"{args.cpus} CPUs: minimum {minimum:.2f} s"
    )
    for name, wall in medians.items():
        ratio = wall / minimum
        print(
            f"{name:18s} {wall:8.2f} s = {ratio:.2f} x the minimum "
            f"(+{(ratio - 1) * 100:.1f}% overhead)"
        )
    for name in ("ray tune", "ray tune defaults"):
        if name in medians:
            print(f"wall time {name} / rtune: {medians[name] / medians['rtune']:.2f}x")


if __name__ == "__main__":
    main()
