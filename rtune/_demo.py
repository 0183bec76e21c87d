"""`rtune demo`: a small real tuning job (SGD for linear regression on synthetic data, in numpy)
with checkpoints, that finishes well under a minute on 2 cores."""

from __future__ import annotations

import os
import tempfile

import numpy as np

import rtune as tune


def make_data(seed: int = 0, n: int = 40_000, features: int = 50):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features))
    true_w = rng.normal(size=features)
    y = x @ true_w + rng.normal(scale=0.5, size=n)
    split = int(n * 0.8)
    return x[:split], y[:split], x[split:], y[split:]


def train_regression(config: dict) -> None:
    x_train, y_train, x_val, y_val = make_data()
    weights = np.zeros(x_train.shape[1])
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            saved = np.load(os.path.join(directory, "model.npz"))
            weights, start = saved["weights"], int(saved["epoch"])
    rng = np.random.default_rng(start)
    for epoch in range(start, config["epochs"]):
        order = rng.permutation(len(x_train))
        for batch in np.array_split(order, len(order) // config["batch_size"]):
            grad = x_train[batch].T @ (x_train[batch] @ weights - y_train[batch]) / len(batch)
            weights -= config["lr"] * (grad + config["l2"] * weights)
        val_loss = float(np.mean((x_val @ weights - y_val) ** 2))
        metrics = {"val_loss": val_loss, "epoch": epoch + 1}
        if (epoch + 1) % 5 == 0 or tune.get_context().stop_requested:
            with tempfile.TemporaryDirectory() as directory:
                np.savez(os.path.join(directory, "model.npz"), weights=weights, epoch=epoch + 1)
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
        else:
            tune.report(metrics)


def run_demo(storage_path: str | None = None, name: str | None = None) -> tune.ResultGrid:
    tuner = tune.Tuner(
        train_regression,
        param_space={
            "lr": tune.loguniform(1e-3, 1e-1),
            "l2": tune.grid_search([0.0, 0.01]),
            "batch_size": tune.choice([32, 64]),
            "epochs": 20,
        },
        tune_config=tune.TuneConfig(metric="val_loss", mode="min", num_samples=4, seed=7),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage_path,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            verbose=1,
        ),
    )
    results = tuner.fit()
    best = results.get_best_result()
    print(f"Best val_loss: {best.metrics['val_loss']:.4f}")
    print(f"Best config: {best.config}")
    print(f"Best checkpoint: {best.checkpoint}")
    print(f"Experiment path: {results.experiment_path}")
    return results
