"""A driver process for tests/test_signals.py: an experiment the test can signal, kill and resume.

    python tests/drivers/experiment.py <storage_path or URI> <name> <progress_dir>
        [--kind function|class] [--restore] [--iterations N] [--sleep S] [--trials K]
        [--checkpoint-frequency F] [--concurrency C] [--block-at I] [--in-task] [--join]
        [--resources JSON] [--signal-at I]

It starts its own Ray (so a `kill -9` takes down nothing but this experiment), runs K trials
(a grid over `id`) of N iterations each, and leaves evidence the test can read without Ray:

- `<progress_dir>/trial_<id>.log` gets "<id> <iteration>" when an iteration *starts* executing, so
  the test counts re-executed iterations (lines beyond N); `<progress_dir>/nodes.log` gets
  "<id> <iteration> <node ip>", so a multi-node test sees where each iteration ran;
- `<progress_dir>/ray_session` names this Ray's session directory, so the test can find (and, after
  a `kill -9`, reap) this Ray's processes and no other's; `<progress_dir>/ray_address` its GCS
  address, for `rtune stop`;
- `<progress_dir>/fit_returned` appears once fit() returned, `<progress_dir>/done` at a normal exit;
- stdout gets "RESULTS <json>": {id: [status, last training_iteration, [training_iteration of each
  metrics_dataframe row]]}, and "HANDLERS_RESTORED true" when fit() left the SIGINT, SIGTERM and
  SIGUSR1 handlers as it found them;
- with `--callback`, `<progress_dir>/heard.json` what the `HeardOnce` callback heard.

`--block-at I` makes iteration I wait for `<progress_dir>/release`, so a test can hold every trial
in the middle of an iteration (what a graceful stop would wait for). `--signal-at I` makes trial 0
send SIGUSR1 to the driver when its iteration I starts (once), so a test can stop a run at a
precise point, such as fit()'s start-up, when the driver has started the first trials and the
controller not yet. `--in-task` runs fit() inside a
`@ray.remote` task, which writes its pid to `<progress_dir>/task_pid` (SIGUSR1 is how a remote
task is asked to stop). `--restore` continues the experiment with `Tuner.restore(path).fit()`,
reading the trainable back from the experiment, as a user's resumed script would. `--join` uses
the cluster the process is told of (RAY_ADDRESS, as in a `ray job submit` entrypoint) instead of a
Ray of its own.

The trainables live in this script, so they are pickled by value (as `__main__`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time

import ray

import rtune as tune

BLOCK_LIMIT_S = 120.0  # a blocked iteration gives up eventually, so a broken test cannot hang


def log_execution(config: dict, iteration: int) -> None:
    """Record that `iteration` started executing, then hold it if the test asked to."""
    path = os.path.join(config["progress_dir"], f"trial_{config['id']}.log")
    with open(path, "a") as log:
        log.write(f"{config['id']} {iteration}\n")
    with open(os.path.join(config["progress_dir"], "nodes.log"), "a") as log:
        log.write(f"{config['id']} {iteration} {ray.util.get_node_ip_address()}\n")
    signalled = os.path.join(config["progress_dir"], "signalled")
    if config["id"] == 0 and iteration == config["signal_at"] and not os.path.exists(signalled):
        open(signalled, "w").close()
        os.kill(config["driver_pid"], signal.SIGUSR1)
    if iteration == config["block_at"]:
        release = os.path.join(config["progress_dir"], "release")
        deadline = time.monotonic() + BLOCK_LIMIT_S
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.05)


def counting(config: dict) -> None:
    """A function trainable: one checkpoint per iteration, resumed from the newest one."""
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as directory:
            with open(os.path.join(directory, "iteration")) as src:
                start = int(src.read())
    for iteration in range(start + 1, config["iterations"] + 1):
        log_execution(config, iteration)
        time.sleep(config["sleep"])
        with tempfile.TemporaryDirectory() as directory:
            with open(os.path.join(directory, "iteration"), "w") as out:
                out.write(str(iteration))
            tune.report(
                {"value": config["id"] * 100 + iteration, "resumed_from": start},
                checkpoint=tune.Checkpoint.from_directory(directory),
            )


class Counting(tune.Trainable):
    """The class trainable: the same counting, with its state in save/load_checkpoint."""

    def setup(self, config: dict) -> None:
        self.count = 0

    def step(self) -> dict:
        log_execution(self.config, self.iteration + 1)
        time.sleep(self.config["sleep"])
        self.count += 1
        return {"value": self.config["id"] * 100 + self.count, "count": self.count}

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        with open(os.path.join(checkpoint_dir, "count"), "w") as out:
            out.write(str(self.count))

    def load_checkpoint(self, checkpoint_dir: str) -> None:
        with open(os.path.join(checkpoint_dir, "count")) as src:
            self.count = int(src.read())


class HeardOnce(tune.Callback):
    """Counts each (trial's config[key], iteration) it hears, keeping the counts in its state;
    forgets what a trial resumed before, or all of a trial that starts from its beginning (that
    comes again); with a `progress_dir`, writes them to `<progress_dir>/heard.json` when the run
    ends, so a test sees what it heard across stops and restores."""

    def __init__(self, progress_dir: str | None = None, key: str = "id") -> None:
        self.progress_dir, self.key = progress_dir, key
        self.heard: dict[str, int] = {}

    def _forget(self, trial, past: int) -> None:
        name = str(trial.config[self.key])
        self.heard = {
            k: count
            for k, count in self.heard.items()
            if not (k.split(":")[0] == name and int(k.split(":")[1]) > past)
        }

    def on_trial_start(self, iteration, trials, trial, **info):
        self._forget(trial, 0)

    def on_trial_restore(self, iteration, trials, trial, **info):
        self._forget(trial, trial.last_result.get("training_iteration", 0))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        key = f"{trial.config[self.key]}:{result['training_iteration']}"
        self.heard[key] = self.heard.get(key, 0) + 1

    def on_experiment_end(self, trials, **info):
        if self.progress_dir is None:
            return
        path = os.path.join(self.progress_dir, "heard.json")
        with open(path + ".tmp", "w") as out:
            json.dump(self.heard, out)
        os.replace(path + ".tmp", path)

    def get_state(self):
        return {"heard": dict(self.heard)}

    def set_state(self, state):
        self.heard = dict(state["heard"])


def summarize(grid: tune.ResultGrid) -> dict:
    summary = {}
    for result in grid:
        frame = result.metrics_dataframe
        history = [int(i) for i in frame["training_iteration"]] if len(frame) else []
        summary[str(result.config["id"])] = [
            result.status,
            result.metrics.get("training_iteration"),
            history,
        ]
    return summary


def run_experiment(args: argparse.Namespace) -> tuple[dict, bool]:
    watched = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
    handlers_before = [signal.getsignal(sig) for sig in watched]
    base, _, query = args.storage_path.partition("?")  # a URI's query stays at the end
    path = f"{base.rstrip('/')}/{args.name}" + (f"?{query}" if query else "")
    if args.restore:
        grid = tune.Tuner.restore(path).fit()
    else:
        trainable = Counting if args.kind == "class" else counting
        if args.resources:
            trainable = tune.with_resources(trainable, json.loads(args.resources))
        grid = tune.Tuner(
            trainable,
            param_space={
                "id": tune.grid_search(list(range(args.trials))),
                "iterations": args.iterations,
                "sleep": args.sleep,
                "block_at": args.block_at,
                "signal_at": args.signal_at,
                "driver_pid": os.getpid(),
                "progress_dir": args.progress_dir,
            },
            tune_config=tune.TuneConfig(max_concurrent_trials=args.concurrency),
            run_config=tune.RunConfig(
                name=args.name,
                storage_path=args.storage_path,
                # the function trainable ends by itself; the class one needs a stop criterion
                stop={"training_iteration": args.iterations} if args.kind == "class" else None,
                checkpoint_config=tune.CheckpointConfig(
                    checkpoint_frequency=args.checkpoint_frequency if args.kind == "class" else 0
                ),
                verbose=1,
                callbacks=[HeardOnce(args.progress_dir)] if args.callback else None,
            ),
        ).fit()
    with open(os.path.join(args.progress_dir, "fit_returned"), "w"):
        pass
    handlers_restored = [signal.getsignal(sig) for sig in watched] == handlers_before
    return summarize(grid), handlers_restored


@ray.remote(num_cpus=0)
def run_in_task(args: argparse.Namespace) -> tuple[dict, bool]:
    with open(os.path.join(args.progress_dir, "task_pid"), "w") as out:
        out.write(str(os.getpid()))
    return run_experiment(args)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("storage_path")
    parser.add_argument("name")
    parser.add_argument("progress_dir")
    parser.add_argument("--kind", choices=("function", "class"), default="function")
    parser.add_argument("--restore", action="store_true")
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--sleep", type=float, default=0.2)
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--checkpoint-frequency", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=None)
    parser.add_argument("--block-at", type=int, default=0)
    parser.add_argument("--signal-at", type=int, default=0)
    parser.add_argument("--in-task", action="store_true")
    parser.add_argument("--join", action="store_true")
    parser.add_argument("--resources", default=None, help="a with_resources dict, as JSON")
    parser.add_argument("--callback", action="store_true", help="with the HeardOnce callback")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.join:  # a `ray job submit` entrypoint: the job's cluster (RAY_ADDRESS)
        ray.init()
    else:
        ray.init(address="local", num_cpus=4, include_dashboard=False)
    # private, but nothing public names the session directory this driver's Ray runs in
    session_dir = ray._private.worker._global_node.get_session_dir_path()
    with open(os.path.join(args.progress_dir, "ray_session"), "w") as out:
        out.write(session_dir)
    with open(os.path.join(args.progress_dir, "ray_address"), "w") as out:
        out.write(ray.get_runtime_context().gcs_address)
    if args.in_task:
        summary, handlers_restored = ray.get(run_in_task.remote(args))
    else:
        summary, handlers_restored = run_experiment(args)
    print("RESULTS " + json.dumps(summary, sort_keys=True), flush=True)
    print("HANDLERS_RESTORED " + json.dumps(handlers_restored), flush=True)
    ray.shutdown()
    with open(os.path.join(args.progress_dir, "done"), "w"):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
