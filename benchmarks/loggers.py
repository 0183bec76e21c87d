"""What the default loggers (CSV, JSON, TensorBoard) cost: rtune with them beside rtune without.

    python benchmarks/loggers.py [--trials 2000] [--results 2000] [--sleepy 100] [--repeat 3]

Workloads, each run with `RunConfig(default_loggers=True)` and `False`, alternating:
- trivial trials: `--trials` function trials, one report each; trials/s of fit() wall time;
- results: 4 trials reporting `--results` results each as fast as they can; results/s of fit();
- sleepy: `--sleepy` trials of one 1 s iteration on 2 CPUs (0 to skip); fit() wall time over
  the minimum.
The target (issue 15): with the loggers on, within 5% of the figures without them. A warm-up
round runs first, uncounted.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from _common import alternate, start_ray  # noqa: E402


def _fit(trainable, param_space: dict, storage: str, loggers: bool, **tune_config) -> float:
    import rtune

    started = time.perf_counter()
    rtune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=rtune.TuneConfig(**tune_config),
        run_config=rtune.RunConfig(storage_path=storage, verbose=0, default_loggers=loggers),
    ).fit()
    return time.perf_counter() - started


def trivial_trials(n: int, storage: str, loggers: bool) -> float:
    import rtune

    def trivial(config):
        rtune.report({"x": config["i"], "nested": {"y": 1.0}})

    return n / _fit(trivial, {"i": rtune.grid_search(list(range(n)))}, storage, loggers)


def results(r: int, storage: str, loggers: bool) -> float:
    import rtune

    def chatty(config):
        for i in range(config["r"]):
            rtune.report({"i": i, "s": 1.0})

    space = {"r": r, "t": rtune.grid_search([0, 1, 2, 3])}
    return 4 * r / _fit(chatty, space, storage, loggers, max_concurrent_trials=4)


def sleepy(n: int, storage: str, loggers: bool) -> float:
    import rtune

    def one_second(config):
        time.sleep(1.0)
        rtune.report({"i": config["t"]})

    space = {"t": rtune.grid_search(list(range(n)))}
    wall = _fit(rtune.with_resources(one_second, {"cpu": 1}), space, storage, loggers)
    return wall / (n / 2) - 1.0  # over the minimum, on 2 CPUs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--results", type=int, default=2000)
    parser.add_argument("--sleepy", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-raytune", action="store_true", help="(rtune only anyway)")
    args = parser.parse_args()
    start_ray(2)
    storage = tempfile.mkdtemp(prefix="rtune_bench_loggers_")

    def run(loggers: bool) -> dict:
        figures = {
            "trials_per_s": trivial_trials(args.trials, storage, loggers),
            "results_per_s": results(args.results, storage, loggers),
        }
        if args.sleepy:
            figures["sleepy_over"] = sleepy(args.sleepy, storage, loggers)
        return figures

    trivial_trials(50, storage, True)  # warm-up: Ray's worker processes, imports
    medians = alternate([("on", lambda: run(True)), ("off", lambda: run(False))], args.repeat)
    on, off = medians["on"], medians["off"]
    print(f"default loggers on / off (median of {args.repeat})")
    print(
        f"{args.trials} trivial trials, trials/s: {on['trials_per_s']:,.0f} / "
        f"{off['trials_per_s']:,.0f} ({on['trials_per_s'] / off['trials_per_s']:.3f}x)"
    )
    print(
        f"4 x {args.results} results, results/s: {on['results_per_s']:,.0f} / "
        f"{off['results_per_s']:,.0f} ({on['results_per_s'] / off['results_per_s']:.3f}x)"
    )
    if args.sleepy:
        print(
            f"{args.sleepy} x 1 s trials on 2 CPUs, over the minimum: "
            f"{on['sleepy_over']:+.1%} / {off['sleepy_over']:+.1%}"
        )


if __name__ == "__main__":
    main()
