"""Population-based training, rtune beside Ray Tune, in one run on one Ray.

    python benchmarks/pbt.py [--trials 8] [--iterations 50] [--checkpoint-mb 1] [--repeat 1]

Each trial reports every iteration with a checkpoint of `--checkpoint-mb` MB (a state file and a
blob) and restores both from the checkpoint it is given; `PopulationBasedTraining` with the same
parameters for both libraries (time_attr="training_iteration", perturbation_interval=5, one
mutation) exploits its bottom quarter into its top quarter. All trials ask for one CPU, so on a
small machine they take turns (PBT pauses trials at their perturbation points). Figures: fit()
wall time, exploits (lines of the experiment's pbt_global.txt), trials that ended in an error
(an exploit that could not load its donor's checkpoint would), and the experiment directory's
size at the end. `--num-to-keep` (default 2) applies to both. Ray Tune runs with
reuse_actors=True, its fastest setting. Runs alternate; `--repeat N` takes the median.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from _common import alternate, print_comparison, start_ray

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")


def _trainable(lib):
    def population_member(config):
        total, start = 0.0, 0
        checkpoint = lib.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as directory:
                with open(os.path.join(directory, "state.json")) as src:
                    saved = json.load(src)
                with open(os.path.join(directory, "blob"), "rb") as src:
                    assert len(src.read()) == config["mb"] << 20
            total, start = saved["total"], saved["step"]
        blob = os.urandom(config["mb"] << 20)
        for step in range(start + 1, config["iterations"] + 1):
            total += config["lr"]
            with tempfile.TemporaryDirectory() as directory:
                with open(os.path.join(directory, "state.json"), "w") as out:
                    json.dump({"total": total, "step": step}, out)
                with open(os.path.join(directory, "blob"), "wb") as out:
                    out.write(blob)
                lib.report({"score": total}, checkpoint=lib.Checkpoint.from_directory(directory))

    return population_member


def _size(path: str) -> int:
    return sum(
        os.path.getsize(os.path.join(root, name))
        for root, _, names in os.walk(path)
        for name in names
    )


def _figures(experiment: str, wall: float, errors: int) -> dict:
    log = os.path.join(experiment, "pbt_global.txt")
    with open(log) if os.path.exists(log) else open(os.devnull) as src:
        exploits = sum(1 for _ in src)
    return {"wall": wall, "exploits": exploits, "errors": errors, "bytes": _size(experiment)}


def run_pbt(lib_name: str, args: argparse.Namespace, storage: str) -> dict:
    if lib_name == "rtune":
        import rtune as lib
        from rtune.schedulers import PopulationBasedTraining
    else:
        from ray import tune as lib
        from ray.tune.schedulers import PopulationBasedTraining
    scheduler = PopulationBasedTraining(
        time_attr="training_iteration",
        perturbation_interval=5,
        hyperparam_mutations={"lr": [0.5, 1.0, 2.0, 4.0]},
    )
    tune_config = {"reuse_actors": True} if lib_name == "ray tune" else {}
    started = time.perf_counter()
    grid = lib.Tuner(
        _trainable(lib),
        param_space={
            "lr": lib.grid_search([0.5 + i * 0.25 for i in range(args.trials)]),
            "iterations": args.iterations,
            "mb": args.checkpoint_mb,
        },
        tune_config=lib.TuneConfig(scheduler=scheduler, metric="score", mode="max", **tune_config),
        run_config=lib.RunConfig(
            storage_path=storage,
            name=f"pbt_{lib_name.replace(' ', '_')}_{time.time_ns()}",
            verbose=0,
            checkpoint_config=lib.CheckpointConfig(num_to_keep=args.num_to_keep),
            # Ray Tune runs without its loggers (TUNE_DISABLE_AUTO_CALLBACK_LOGGERS): so does rtune
            **({"default_loggers": False} if lib_name == "rtune" else {}),
        ),
    ).fit()
    wall = time.perf_counter() - started
    return _figures(grid.experiment_path, wall, grid.num_errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--checkpoint-mb", type=int, default=1)
    parser.add_argument("--num-to-keep", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--num-cpus", type=int, default=None)
    parser.add_argument("--skip-raytune", action="store_true")
    args = parser.parse_args()

    start_ray(args.num_cpus)
    storage = tempfile.mkdtemp(prefix="rtune_bench_pbt_")
    runs = [("rtune", lambda: run_pbt("rtune", args, storage))]
    if not args.skip_raytune:
        runs.append(("ray tune", lambda: run_pbt("ray tune", args, storage)))
    medians = alternate(runs, args.repeat)
    what = (
        f"{args.trials} trials x {args.iterations} iterations, {args.checkpoint_mb} MB checkpoints"
    )
    print(f"PBT, {what}, num_to_keep={args.num_to_keep}")
    print_comparison(
        [
            ("fit() wall time", "wall", "s"),
            ("exploits", "exploits", ""),
            ("trials ended in an error", "errors", ""),
            ("experiment directory at the end", "bytes", "B"),
        ],
        medians,
    )


if __name__ == "__main__":
    main()
