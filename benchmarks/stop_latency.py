"""Stop and resume latency, rtune beside Ray Tune: SIGINT to a driver whose trials run 0.25 s
iterations (checkpointing each), then a restoring driver.

    python benchmarks/stop_latency.py [--repeat 2] [--iteration-s 0.25] [--skip-raytune]

Each run starts a driver subprocess (its own Ray), waits until every trial has run 3 iterations,
sends SIGINT, and records the time until `fit()` returned and until the process exited, and how
many iterations ran after the signal. Runs alternate between the libraries.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

DRIVER = r"""
import os, sys, tempfile, time
lib, work, iteration_s, mode = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
if lib == "rtune":
    import rtune as tune
else:
    from ray import tune
import ray
ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)

def train(config):
    start = 0
    if tune.get_checkpoint():
        with tune.get_checkpoint().as_directory() as directory:
            start = int(open(os.path.join(directory, "i")).read())
    for i in range(start + 1, 10_000):
        time.sleep(config["iteration_s"])
        with open(os.path.join(config["work"], f"progress_{config['t']}"), "a") as log:
            log.write(f"{time.time()} {i}\n")
        with tempfile.TemporaryDirectory() as directory:
            with open(os.path.join(directory, "i"), "w") as out:
                out.write(str(i))
            tune.report({"i": i}, checkpoint=tune.Checkpoint.from_directory(directory))

path = os.path.join(work, "results", "exp")
with open(os.path.join(work, f"{mode}_started"), "w") as out:
    out.write(str(time.time()))  # Ray is up: what follows is the library's own time
if mode == "restore":
    tune.Tuner.restore(path, trainable=train).fit()
else:
    tune.Tuner(
        train,
        param_space={"t": tune.grid_search([0, 1]), "work": work, "iteration_s": iteration_s},
        run_config=tune.RunConfig(
            storage_path=os.path.join(work, "results"), name="exp", verbose=0
        ),
    ).fit()
with open(os.path.join(work, f"{mode}_returned"), "w") as out:
    out.write(str(time.time()))
"""


def progress(work: str) -> dict[int, list[tuple[float, int]]]:
    """{trial: (time, iteration) of every iteration it ran, in both runs, in order}."""
    found: dict[int, list[tuple[float, int]]] = {}
    for t in (0, 1):
        path = os.path.join(work, f"progress_{t}")
        lines = open(path).read().splitlines() if os.path.exists(path) else []
        found[t] = [(float(a), int(b)) for a, b in (line.split() for line in lines)]
    return found


def since(work: str, before: dict) -> list[tuple[float, int, int]]:
    """(time, iteration, what that trial had done before) of each iteration run after `before`."""
    return [
        (when, i, max((b for _, b in before[t]), default=0))
        for t, runs in progress(work).items()
        for when, i in runs[len(before[t]) :]
    ]


def start_driver(lib: str, work: str, iteration_s: float, mode: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, lib, work, str(iteration_s), mode],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )


def wait_for(condition, driver: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 120
    while not condition():
        if time.monotonic() > deadline or driver.poll() is not None:
            raise RuntimeError(f"{what} never happened")
        time.sleep(0.01)


def stop(driver: subprocess.Popen) -> None:
    driver.send_signal(signal.SIGINT)
    driver.wait(timeout=120)
    try:
        os.killpg(driver.pid, signal.SIGKILL)  # what the driver's Ray left behind
    except ProcessLookupError:
        pass


def one_run(lib: str, iteration_s: float) -> tuple[float, float, int, float, int]:
    """SIGINT -> fit() returned, SIGINT -> exit, iterations after the signal; then a restore:
    restore started (Ray up) -> first resumed result, iterations executed a second time."""
    work = tempfile.mkdtemp(prefix=f"stop_{lib}_")
    driver = start_driver(lib, work, iteration_s, "run")

    def three_each() -> bool:
        return min(len(runs) for runs in progress(work).values()) >= 3

    wait_for(three_each, driver, f"{lib}: 3 iterations in each trial")
    signalled = time.time()
    driver.send_signal(signal.SIGINT)
    driver.wait(timeout=120)
    exited = time.time()
    returned = float(open(os.path.join(work, "run_returned")).read())
    first_run = progress(work)
    after = sum(1 for runs in first_run.values() for when, _ in runs if when > signalled)
    try:
        os.killpg(driver.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass

    restore = start_driver(lib, work, iteration_s, "restore")
    started_file = os.path.join(work, "restore_started")
    wait_for(lambda: since(work, first_run), restore, f"{lib}: a resumed result")
    to_resume = min(when for when, _, _ in since(work, first_run)) - float(
        open(started_file).read()
    )
    stop(restore)
    again = sum(1 for _, i, done in since(work, first_run) if i <= done)
    return returned - signalled, exited - signalled, after, to_resume, again


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--iteration-s", type=float, default=0.25)
    parser.add_argument("--skip-raytune", action="store_true")
    args = parser.parse_args()
    libs = ["rtune"] if args.skip_raytune else ["rtune", "raytune"]
    figures: dict[str, list[tuple[float, float, int, float, int]]] = {lib: [] for lib in libs}
    for _ in range(args.repeat):
        for lib in libs:
            figures[lib].append(one_run(lib, args.iteration_s))
    for lib, runs in figures.items():
        to_return = statistics.median(r[0] for r in runs)
        to_exit = statistics.median(r[1] for r in runs)
        after = statistics.median(r[2] for r in runs)
        to_resume = statistics.median(r[3] for r in runs)
        again = statistics.median(r[4] for r in runs)
        print(
            f"{lib:8s} SIGINT->fit() returned {to_return:.2f} s, ->exit {to_exit:.2f} s, "
            f"iterations after the signal {after:g}; restore->first resumed result "
            f"{to_resume:.2f} s, iterations executed again {again:g}"
        )


if __name__ == "__main__":
    main()
