"""Trial and result throughput, rtune beside Ray Tune and bare Ray, in one run on one Ray.

    python benchmarks/throughput.py --trials 200 --results 2000 [--skip-raytune] [--repeat 2]

Workloads (issue 5, workloads 1 and 2):
- trials: N trivial function trials, one report each; trials per second of fit() wall time.
- results: 4 concurrent trials reporting as fast as they can, R results each; results per second
  of fit() wall time, and as seen by each library's controller (first result to last result:
  rtune's controller actor counts them, Ray Tune's driver-side controller through a Callback).
- results deciding (`--deciding stopper asha`, the default): the same, with the controller
  deciding on every result: a `Stopper` object that never stops, or ASHA whose rungs every
  trial passes (equal scores), so each library pays for its decisions and nothing else.
Ray Tune runs with reuse_actors=True (its fastest setting). The raw Ray baseline does the same work
with bare actors and method calls. Ray start-up is measured once, separately. A warm-up round of
every workload runs first and is not counted, so neither library pays for starting Ray's worker
processes. Runs alternate.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import ray
from _common import start_ray

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")


def rtune_trials(n: int, storage: str) -> float:
    import rtune

    def trivial(config):
        rtune.report({"x": config["i"]})

    started = time.perf_counter()
    rtune.Tuner(
        trivial,
        param_space={"i": rtune.grid_search(list(range(n)))},
        run_config=rtune.RunConfig(storage_path=storage, verbose=0, default_loggers=False),
    ).fit()
    return n / (time.perf_counter() - started)


def raytune_trials(n: int, storage: str) -> float:
    from ray import tune

    def trivial(config):
        tune.report({"x": config["i"]})

    started = time.perf_counter()
    tune.Tuner(
        trivial,
        param_space={"i": tune.grid_search(list(range(n)))},
        tune_config=tune.TuneConfig(reuse_actors=True),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    return n / (time.perf_counter() - started)


def raw_trials(n: int) -> float:
    @ray.remote(num_cpus=1)
    class Worker:
        def run(self, i):
            return {"x": i}

    workers = [Worker.remote() for _ in range(int(ray.cluster_resources()["CPU"]))]
    ray.get([w.run.remote(0) for w in workers])
    started = time.perf_counter()
    ray.get([workers[i % len(workers)].run.remote(i) for i in range(n)])
    elapsed = time.perf_counter() - started
    for w in workers:
        ray.kill(w)
    return n / elapsed


def _deciders(lib, decide: str | None, r: int) -> dict:
    """TuneConfig / RunConfig arguments that make the controller decide on every result: a
    `Stopper` object that never stops, or ASHA with rungs all trials pass (equal scores)."""
    if decide == "stopper":

        class Never(lib.Stopper):
            def __call__(self, trial_id, result):
                return False

            def stop_all(self):
                return False

        return {"stop": Never()}
    if decide == "asha":
        return {"scheduler": lib.schedulers.ASHAScheduler(metric="s", mode="max", max_t=r)}
    return {}


def rtune_results(r: int, storage: str, decide: str | None = None) -> tuple[float, float]:
    """(results/s of fit() wall time, results/s seen by the controller)."""
    import rtune
    import rtune.schedulers

    deciders = _deciders(rtune, decide, r)

    def chatty(config):
        for i in range(config["r"]):
            rtune.report({"i": i, "s": 1.0})

    started = time.perf_counter()
    tuner = rtune.Tuner(
        chatty,
        param_space={"r": r, "t": rtune.grid_search([0, 1, 2, 3])},
        tune_config=rtune.TuneConfig(max_concurrent_trials=4, scheduler=deciders.get("scheduler")),
        run_config=rtune.RunConfig(
            storage_path=storage, verbose=0, stop=deciders.get("stop"), default_loggers=False
        ),
    )
    tuner.fit()
    wall = time.perf_counter() - started
    stats = tuner.last_run_stats
    return 4 * r / wall, (stats["results_seen"] - 1) / stats["first_to_last_result_s"]


def raytune_results(r: int, storage: str, decide: str | None = None) -> tuple[float, float]:
    from ray import tune
    from ray.tune import schedulers as _  # noqa: F401  (tune.schedulers, for _deciders)

    deciders = _deciders(tune, decide, r)

    seen: list[float] = []

    class Clock(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            seen.append(time.perf_counter())

    def chatty(config):
        for i in range(config["r"]):
            tune.report({"i": i, "s": 1.0})

    started = time.perf_counter()
    tune.Tuner(
        tune.with_resources(chatty, {"cpu": 0.5}),
        param_space={"r": r, "t": tune.grid_search([0, 1, 2, 3])},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=4, reuse_actors=True, scheduler=deciders.get("scheduler")
        ),
        run_config=tune.RunConfig(
            storage_path=storage, verbose=0, callbacks=[Clock()], stop=deciders.get("stop")
        ),
    ).fit()
    wall = time.perf_counter() - started
    return 4 * r / wall, (len(seen) - 1) / (seen[-1] - seen[0])


def raw_results(r: int) -> float:
    @ray.remote(num_cpus=0.5)
    class Reporter:
        def report(self, i):
            return {"i": i}

    reporters = [Reporter.remote() for _ in range(4)]
    ray.get([x.report.remote(0) for x in reporters])
    started = time.perf_counter()
    for i in range(r):
        ray.get([x.report.remote(i) for x in reporters])
    elapsed = time.perf_counter() - started
    for x in reporters:
        ray.kill(x)
    return 4 * r / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--results", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--skip-raytune", action="store_true")
    parser.add_argument("--warmup", type=int, default=1, help="uncounted rounds first (0: none)")
    parser.add_argument("--num-cpus", type=int, default=None)
    parser.add_argument(
        "--deciding",
        nargs="*",
        default=["stopper", "asha"],
        choices=["stopper", "asha"],
        help="also measure results/s with these deciding on every result in the controller",
    )
    args = parser.parse_args()

    start_ray(args.num_cpus)
    storage = tempfile.mkdtemp(prefix="rtune_bench_")
    figures: dict[str, list[float]] = {}

    def rounds(trials: int, results: int) -> list:
        runs = [
            ("trials/s rtune", lambda: rtune_trials(trials, storage)),
            ("trials/s raw ray", lambda: raw_trials(trials)),
            ("results/s rtune", lambda: rtune_results(results, storage)),
            ("results/s raw ray", lambda: raw_results(results)),
        ]
        if not args.skip_raytune:
            runs[1:1] = [("trials/s ray tune", lambda: raytune_trials(trials, storage))]
            runs.append(("results/s ray tune", lambda: raytune_results(results, storage)))
        for decide in args.deciding:  # the controller decides on every result
            runs.append(
                (f"results/s {decide} rtune", lambda d=decide: rtune_results(results, storage, d))
            )
            if not args.skip_raytune:
                runs.append(
                    (
                        f"results/s {decide} ray tune",
                        lambda d=decide: raytune_results(results, storage, d),
                    )
                )
        return runs

    for _, run in rounds(min(args.trials, 100), min(args.results, 200)) * args.warmup:
        run()  # warm-up, not counted
    for _ in range(args.repeat):
        for name, run in rounds(args.trials, args.results):
            figure = run()
            if isinstance(figure, tuple):  # (of fit() wall time, as the controller saw them)
                figures.setdefault(name.replace("/s", "/s seen"), []).append(figure[1])
                figure = figure[0]
            figures.setdefault(name, []).append(figure)
    medians = {name: statistics.median(values) for name, values in figures.items()}
    for name, value in medians.items():
        print(f"{name:26s} {value:10.1f}")
    if "results/s seen ray tune" in medians:
        ratio = medians["results/s seen rtune"] / medians["results/s seen ray tune"]
        print(f"results/s seen by the controller, rtune / ray tune: {ratio:.1f}x")
    for decide in args.deciding:
        for seen in ("", " seen"):
            ours = medians.get(f"results/s{seen} {decide} rtune")
            theirs = medians.get(f"results/s{seen} {decide} ray tune")
            if ours and theirs:
                print(f"results/s{seen} with a {decide}, rtune / ray tune: {ours / theirs:.1f}x")
    for kind in ("trials/s", "results/s"):
        ours = medians[f"{kind} rtune"]
        if f"{kind} ray tune" in medians:
            print(f"{kind} rtune / ray tune: {ours / medians[f'{kind} ray tune']:.1f}x")
        print(f"{kind} rtune / raw ray: {ours / medians[f'{kind} raw ray']:.0%}")


if __name__ == "__main__":
    main()
