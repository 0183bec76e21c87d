"""Model-based search of many trivial trials: rtune beside Ray Tune and beside the library alone.

    python benchmarks/searchers.py [--searcher optuna|hyperopt] [--trials 500] [--concurrency 2]
        [--repeat 1] [--num-cpus N] [--skip-raytune]

Each trial reports one result, a quadratic of `x` and `y`, so the figures are the cost of asking
the searcher, running a trial and telling the searcher, with nothing else. The searcher is
seeded TPE (`OptunaSearch(seed=0)` or `HyperOptSearch(random_state_seed=0)`) for both tuning
libraries; the same search run by the library alone in one process (Optuna's `study.optimize`
with a journal-file storage, as a user keeping a durable study would, or HyperOpt's `fmin` with
its in-memory `Trials`) is the floor. Figures: fit() wall time and trials/s, and for rtune the
size of the searcher's state at the end and the time to pickle it (rtune writes it with every
experiment-state write, so this is the searcher's share of a write). Runs alternate; `--repeat N`
takes the median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import cloudpickle
from _common import alternate, print_comparison, start_ray

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")


def score(x: float, y: float) -> float:
    return -((x - 0.3) ** 2) - (y - 0.5) ** 2


def _trainable(lib):
    def quadratic(config):
        lib.report({"score": score(config["x"], config["y"])})

    return quadratic


def _searcher(lib_name: str, searcher: str):
    if searcher == "optuna":
        if lib_name == "rtune":
            from rtune.search.optuna import OptunaSearch
        else:
            from ray.tune.search.optuna import OptunaSearch
        return OptunaSearch(seed=0)
    if lib_name == "rtune":
        from rtune.search.hyperopt import HyperOptSearch
    else:
        from ray.tune.search.hyperopt import HyperOptSearch
    return HyperOptSearch(random_state_seed=0)


def run_tuner(lib_name: str, args: argparse.Namespace, storage: str) -> dict:
    if lib_name == "rtune":
        import rtune as lib
    else:
        from ray import tune as lib
    searcher = _searcher(lib_name, args.searcher)
    tune_config = {"reuse_actors": True} if lib_name == "ray tune" else {}
    started = time.perf_counter()
    grid = lib.Tuner(
        _trainable(lib),
        param_space={"x": lib.uniform(0, 1), "y": lib.uniform(0, 1)},
        tune_config=lib.TuneConfig(
            search_alg=searcher,
            metric="score",
            mode="max",
            num_samples=args.trials,
            max_concurrent_trials=args.concurrency,
            **tune_config,
        ),
        run_config=lib.RunConfig(
            storage_path=storage,
            name=f"searchers_{lib_name.replace(' ', '_')}_{time.time_ns()}",
            verbose=0,
            # Ray Tune runs without its loggers (TUNE_DISABLE_AUTO_CALLBACK_LOGGERS): so does rtune
            **({"default_loggers": False} if lib_name == "rtune" else {}),
        ),
    ).fit()
    wall = time.perf_counter() - started
    assert len(grid) == args.trials and grid.num_errors == 0, (len(grid), grid.num_errors)
    figures = {"wall": wall, "trials_per_s": args.trials / wall}
    if lib_name == "rtune":
        figures.update(_state_cost(searcher))
    return figures


def _state_cost(searcher) -> dict:
    """What the searcher adds to each experiment-state write at the end of the run."""
    times, size = [], 0
    for _ in range(5):
        started = time.perf_counter()
        size = len(cloudpickle.dumps(searcher.get_state()))
        times.append(time.perf_counter() - started)
    return {"state_bytes": size, "state_pickle_s": statistics.median(times)}


def run_alone(args: argparse.Namespace, directory: str) -> float:
    """The same seeded search by the library alone, in this process: the floor."""
    started = time.perf_counter()
    if args.searcher == "optuna":
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        backend = optuna.storages.journal.JournalFileBackend(
            os.path.join(directory, f"study-{time.time_ns()}.log")
        )
        study = optuna.create_study(
            storage=optuna.storages.journal.JournalStorage(backend),
            sampler=optuna.samplers.TPESampler(seed=0),
            direction="maximize",
        )
        study.optimize(
            lambda t: score(t.suggest_float("x", 0, 1), t.suggest_float("y", 0, 1)),
            n_trials=args.trials,
        )
    else:
        import hyperopt
        import numpy as np

        hyperopt.fmin(
            lambda c: -score(c["x"], c["y"]),
            {"x": hyperopt.hp.uniform("x", 0, 1), "y": hyperopt.hp.uniform("y", 0, 1)},
            algo=hyperopt.tpe.suggest,
            max_evals=args.trials,
            trials=hyperopt.Trials(),
            rstate=np.random.default_rng(0),
            show_progressbar=False,
        )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--searcher", choices=["optuna", "hyperopt"], default="optuna")
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--num-cpus", type=int, default=None)
    parser.add_argument("--skip-raytune", action="store_true")
    args = parser.parse_args()

    start_ray(args.num_cpus)
    storage = tempfile.mkdtemp(prefix="rtune_bench_searchers_")
    runs = [("rtune", lambda: run_tuner("rtune", args, storage))]
    if not args.skip_raytune:
        runs.append(("ray tune", lambda: run_tuner("ray tune", args, storage)))
    medians = alternate(runs, args.repeat)
    alone = statistics.median(run_alone(args, storage) for _ in range(args.repeat))
    print(
        f"{args.searcher} TPE, {args.trials} trivial trials, {args.concurrency} at a time "
        f"(median of {args.repeat})"
    )
    print_comparison(
        [
            ("fit() wall time", "wall", "s"),
            ("searcher state at the end", "state_bytes", "B"),
            ("pickling it (each state write)", "state_pickle_s", "ms"),
        ],
        medians,
    )
    rates = ", ".join(f"{lib} {m['trials_per_s']:,.0f}" for lib, m in medians.items())
    print(f"trials/s: {rates}")
    print(
        f"{args.searcher} alone, the same search in one process: {alone:.2f} s "
        f"({args.trials / alone:,.0f} trials/s); rtune's fit() is "
        f"{medians['rtune']['wall'] / alone:.2f}x that"
    )


if __name__ == "__main__":
    main()
