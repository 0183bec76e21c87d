"""Scale, rtune beside Ray Tune: memory, status latency and experiment state of many trials.

    python benchmarks/scale.py --trials 10000 [--repeat 1] [--skip-raytune] [--num-cpus N]

Workload (issue 5, workload 7): N trivial function trials, one report each. While fit() runs, a
thread of the driver samples every 0.1 s:
- rtune: its controller actor (found with `ray.util.list_named_actors` in the "rtune" namespace;
  its pid from `__ray_call__`, else the driver's descendant whose command line names
  `ray::Controller`): the controller's peak RSS (the process's VmHWM, else the sampled maximum),
  and the latency of `controller.status` every 0.5 s, the call behind the status block, asking
  like the driver for the events and warnings not yet seen (median and max);
- both: the driver's RSS (sampled peak during fit(); Ray Tune's controller is the driver), and
  `ru_maxrss` after fit(), which covers the process's life so far.
After the run: the largest `experiment_state-*.json` or `experiment_delta-*.json` under the
experiment directory. Ray Tune runs
with reuse_actors=True (its fastest setting); its status latency is not observable (n/a). Targets:
the controller below 1 GB, the status block within 1 s. Runs alternate.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import threading
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")

import ray  # noqa: E402
from _common import alternate, print_comparison, start_ray  # noqa: E402

STATUS_EVERY_S = 0.5
SAMPLE_EVERY_S = 0.1


def peak_rss(pid: int) -> int | None:
    """The process's own high-water mark (Linux), in bytes."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def controller_pid(actor) -> int | None:
    import psutil  # Ray's vendored copy, importable once ray is

    try:
        return ray.get(actor.__ray_call__.remote(lambda self: os.getpid()), timeout=10)
    except Exception:
        pass
    for process in psutil.Process().children(recursive=True):
        try:
            if "ray::Controller" in " ".join(process.cmdline()):
                return process.pid
        except psutil.Error:
            continue
    return None


class Monitor(threading.Thread):
    def __init__(self, watch_controller: bool):
        super().__init__(daemon=True)
        self.watch_controller = watch_controller
        self.done = threading.Event()
        self.driver_rss = 0
        self.controller_rss = 0
        self.controller_hwm: int | None = None
        self.latencies: list[float] = []

    def run(self) -> None:
        import psutil

        driver = psutil.Process()
        actor = pid = None
        events = warnings = 0
        last_status = 0.0
        while not self.done.is_set():
            self.driver_rss = max(self.driver_rss, driver.memory_info().rss)
            if self.watch_controller:
                if actor is None:
                    actor = self._find_controller()
                    pid = controller_pid(actor) if actor is not None else None
                if pid is not None:
                    try:
                        self.controller_rss = max(
                            self.controller_rss, psutil.Process(pid).memory_info().rss
                        )
                        self.controller_hwm = peak_rss(pid) or self.controller_hwm
                    except psutil.Error:
                        pid = None
                if actor is not None and time.monotonic() - last_status >= STATUS_EVERY_S:
                    last_status = time.monotonic()
                    try:
                        status = ray.get(actor.status.remote(events, warnings), timeout=30)
                    except Exception:  # the run ended and the controller with it
                        actor = None
                    else:
                        self.latencies.append(time.monotonic() - last_status)
                        events += len(status.events)
                        warnings += len(status.warnings)
            self.done.wait(SAMPLE_EVERY_S)

    @staticmethod
    def _find_controller():
        for entry in ray.util.list_named_actors(all_namespaces=True):
            if entry["namespace"] == "rtune":
                try:
                    return ray.get_actor(entry["name"], namespace="rtune")
                except ValueError:
                    pass
        return None


STATE_FILES = ("experiment_state-", "experiment_delta-")


def largest_state_file(experiment_dir: str) -> int:
    largest = 0
    for root, _, names in os.walk(experiment_dir):
        for name in names:
            # rtune's deltas too: a run's last write (every trial's end) may be a delta
            if name.startswith(STATE_FILES) and name.endswith(".json"):
                largest = max(largest, os.path.getsize(os.path.join(root, name)))
    return largest


def rtune_scale(trials: int, storage: str) -> dict:
    import rtune

    def trivial(config):
        rtune.report({"x": config["i"]})

    name = f"scale_rtune_{time.monotonic_ns()}"
    monitor = Monitor(watch_controller=True)
    monitor.start()
    started = time.perf_counter()
    rtune.Tuner(
        trivial,
        param_space={"i": rtune.grid_search(list(range(trials)))},
        run_config=rtune.RunConfig(
            storage_path=storage, name=name, verbose=0, default_loggers=False
        ),
    ).fit()
    wall = time.perf_counter() - started
    monitor.done.set()
    monitor.join()
    figures = {
        "wall s": wall,
        "driver rss": monitor.driver_rss,
        "driver ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "state file": largest_state_file(os.path.join(storage, name)),
    }
    if monitor.controller_rss:
        figures["controller rss"] = max(monitor.controller_hwm or 0, monitor.controller_rss)
    if monitor.latencies:
        figures["status median s"] = statistics.median(monitor.latencies)
        figures["status max s"] = max(monitor.latencies)
        figures["status calls"] = len(monitor.latencies)
    return figures


def raytune_scale(trials: int, storage: str) -> dict:
    from ray import tune

    def trivial(config):
        tune.report({"x": config["i"]})

    name = f"scale_raytune_{time.monotonic_ns()}"
    monitor = Monitor(watch_controller=False)
    monitor.start()
    started = time.perf_counter()
    tune.Tuner(
        trivial,
        param_space={"i": tune.grid_search(list(range(trials)))},
        tune_config=tune.TuneConfig(reuse_actors=True),
        run_config=tune.RunConfig(storage_path=storage, name=name, verbose=0),
    ).fit()
    wall = time.perf_counter() - started
    monitor.done.set()
    monitor.join()
    return {
        "wall s": wall,
        "driver rss": monitor.driver_rss,
        "driver ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "state file": largest_state_file(os.path.join(storage, name)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--skip-raytune", action="store_true")
    parser.add_argument("--num-cpus", type=int, default=None)
    args = parser.parse_args()

    start_ray(args.num_cpus)
    storage = tempfile.mkdtemp(prefix="rtune_bench_")
    runs = [("rtune", lambda: rtune_scale(args.trials, storage))]
    if not args.skip_raytune:
        runs.append(("ray tune", lambda: raytune_scale(args.trials, storage)))
    medians = alternate(runs, args.repeat)
    print(f"{args.trials} trivial trials, one report each (medians of {args.repeat})")
    rows = [
        ("fit() wall time", "wall s", "s"),
        ("controller peak RSS", "controller rss", "B"),
        ("status block latency, median", "status median s", "ms"),
        ("status block latency, max", "status max s", "ms"),
        ("status calls timed", "status calls", ""),
        ("driver peak RSS (sampled in fit())", "driver rss", "B"),
        ("driver ru_maxrss after fit()", "driver ru_maxrss", "B"),
        ("largest experiment state file", "state file", "B"),
    ]
    print_comparison(rows, medians)
    controller = medians["rtune"].get("controller rss")
    worst = medians["rtune"].get("status max s")
    print(
        "targets: controller below 1 GB: "
        + ("n/a" if controller is None else "met" if controller < 2**30 else "NOT met")
        + "; status block within 1 s: "
        + ("n/a" if worst is None else "met" if worst <= 1.0 else "NOT met")
    )


if __name__ == "__main__":
    main()
