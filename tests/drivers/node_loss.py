"""Driver for tests/test_cluster.py: one trial pinned to worker nodes, checkpointing every
iteration, logging each executed iteration with the node it ran on."""

import os
import sys
import tempfile
import time

import rtune as tune


def train(config):
    import ray

    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as directory:
            start = int(open(os.path.join(directory, "it")).read())
    for it in range(start, config["iterations"]):
        time.sleep(config["sleep"])
        with open(config["progress"], "a") as log:
            log.write(f"{ray.util.get_node_ip_address()} {it + 1}\n")
        with tempfile.TemporaryDirectory() as directory:
            with open(os.path.join(directory, "it"), "w") as out:
                out.write(str(it + 1))
            tune.report({"it": it + 1}, checkpoint=tune.Checkpoint.from_directory(directory))


if __name__ == "__main__":
    storage, progress = sys.argv[1], sys.argv[2]
    results = tune.Tuner(
        tune.with_resources(train, {"cpu": 1, "worker": 1}),
        param_space={"iterations": 10, "sleep": 0.4, "progress": progress},
        run_config=tune.RunConfig(
            storage_path=storage,
            name="node_loss",
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=2),
        ),
    ).fit()
    result = results[0]
    frame = result.metrics_dataframe
    print("HISTORY", list(frame["training_iteration"]) if len(frame) else [])
    print("STATUS", result.status, result.metrics.get("it"))
