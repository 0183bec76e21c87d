"""A script written against Ray Tune's public API. The only change for rtune is the import line:
`from ray import tune` became `import rtune as tune`. tests/test_compat.py runs it."""

import os
import sys
import tempfile

import rtune as tune  # was: from ray import tune
from rtune import Stopper  # was: from ray.tune import Stopper


def objective(config):
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as checkpoint_dir:
            with open(os.path.join(checkpoint_dir, "step.txt")) as f:
                start = int(f.read())
    for step in range(start, config["steps"]):
        score = (config["a"] - 3) ** 2 + config["b"] / (step + 1)
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "step.txt"), "w") as f:
                f.write(str(step + 1))
            tune.report(
                {"score": score, "step": step}, checkpoint=tune.Checkpoint.from_directory(tmp)
            )


class Trainer(tune.Trainable):
    def setup(self, config):
        self.total = 0.0

    def step(self):
        self.total += self.config["lr"]
        return {"total": self.total}

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "total.txt"), "w") as f:
            f.write(str(self.total))

    def load_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "total.txt")) as f:
            self.total = float(f.read())


class PlateauOrMax(Stopper):
    def __init__(self, max_iter):
        self.max_iter = max_iter

    def __call__(self, trial_id, result):
        return result["training_iteration"] >= self.max_iter

    def stop_all(self):
        return False


def main(storage_path):
    tuner = tune.Tuner(
        tune.with_resources(objective, {"cpu": 1}),
        param_space={
            "a": tune.grid_search([1, 3, 5]),
            "b": tune.uniform(0, 1),
            "c": tune.choice(["x", "y"]),
            "d": tune.loguniform(1e-4, 1e-1),
            "e": tune.randint(0, 10),
            "f": tune.sample_from(lambda spec: spec.config["a"] * 2),
            "steps": 4,
        },
        tune_config=tune.TuneConfig(
            metric="score", mode="min", num_samples=2, max_concurrent_trials=2
        ),
        run_config=tune.RunConfig(
            name="compat_fn",
            storage_path=storage_path,
            stop={"training_iteration": 3},
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=1),
            verbose=1,
        ),
    )
    results = tuner.fit()
    best = results.get_best_result()
    assert len(results) == 6, len(results)
    assert best.config["a"] == 3, best.config
    assert best.metrics["training_iteration"] == 3
    assert best.checkpoint is not None
    df = results.get_dataframe()
    assert len(df) == 6 and "config/a" in df.columns
    assert len(best.metrics_dataframe) == 3

    class_results = tune.Tuner(
        Trainer,
        param_space={"lr": tune.grid_search([0.1, 0.2])},
        tune_config=tune.TuneConfig(metric="total", mode="max"),
        run_config=tune.RunConfig(
            name="compat_class",
            storage_path=storage_path,
            stop=PlateauOrMax(5),
            checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=True),
        ),
    ).fit()
    best = class_results.get_best_result()
    assert best.config["lr"] == 0.2
    assert best.checkpoint is not None
    print("COMPAT OK", best.metrics["training_iteration"])


if __name__ == "__main__":
    main(sys.argv[1])
