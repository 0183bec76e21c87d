"""Stop latency, rtune beside Ray Tune: SIGINT to a driver whose trials run 0.25 s iterations.

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
import os, sys, time
lib, work, iteration_s = sys.argv[1], sys.argv[2], float(sys.argv[3])
if lib == "rtune":
    import rtune as tune
else:
    from ray import tune
import ray
ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)

def train(config):
    for i in range(10_000):
        time.sleep(config["iteration_s"])
        with open(os.path.join(config["work"], f"progress_{config['t']}"), "a") as log:
            log.write(f"{time.time()}\n")
        tune.report({"i": i})

tune.Tuner(
    train,
    param_space={"t": tune.grid_search([0, 1]), "work": work, "iteration_s": iteration_s},
    run_config=tune.RunConfig(storage_path=os.path.join(work, "results"), verbose=0),
).fit()
with open(os.path.join(work, "fit_returned"), "w") as out:
    out.write(str(time.time()))
"""


def one_run(lib: str, iteration_s: float) -> tuple[float, float, int]:
    work = tempfile.mkdtemp(prefix=f"stop_{lib}_")
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    }
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, lib, work, str(iteration_s)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    logs = [os.path.join(work, f"progress_{t}") for t in (0, 1)]
    deadline = time.monotonic() + 120
    while not all(os.path.exists(p) and len(open(p).readlines()) >= 3 for p in logs):
        if time.monotonic() > deadline or driver.poll() is not None:
            raise RuntimeError(f"{lib}: the trials never started")
        time.sleep(0.01)
    signalled = time.time()
    driver.send_signal(signal.SIGINT)
    driver.wait(timeout=120)
    exited = time.time()
    returned = float(open(os.path.join(work, "fit_returned")).read())
    after = sum(1 for p in logs for line in open(p) if float(line) > signalled)
    try:
        os.killpg(driver.pid, signal.SIGKILL)  # what the driver's Ray left behind
    except ProcessLookupError:
        pass
    return returned - signalled, exited - signalled, after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--iteration-s", type=float, default=0.25)
    parser.add_argument("--skip-raytune", action="store_true")
    args = parser.parse_args()
    libs = ["rtune"] if args.skip_raytune else ["rtune", "raytune"]
    figures: dict[str, list[tuple[float, float, int]]] = {lib: [] for lib in libs}
    for _ in range(args.repeat):
        for lib in libs:
            figures[lib].append(one_run(lib, args.iteration_s))
    for lib, runs in figures.items():
        to_return = statistics.median(r[0] for r in runs)
        to_exit = statistics.median(r[1] for r in runs)
        after = statistics.median(r[2] for r in runs)
        print(
            f"{lib:8s} SIGINT->fit() returned {to_return:.2f} s, ->exit {to_exit:.2f} s, "
            f"iterations after the signal {after:g}"
        )


if __name__ == "__main__":
    main()
