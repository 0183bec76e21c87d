"""Driver for tests/test_autoscaling.py: trials asking for a resource ("big") that no node has when
the run starts, so they can only run once the cluster grows.

    python tests/drivers/autoscaled.py <storage_path> join   # RAY_ADDRESS: an autoscaling head
    python tests/drivers/autoscaled.py <storage_path> grow   # a ray.cluster_utils.Cluster it grows
    python tests/drivers/autoscaled.py <storage_path> vanish # the "big" node goes, then comes back

`grow` starts an in-process `Cluster` (head: 1 CPU, no "big"), waits until the running experiment
shows every trial PENDING, then adds a node with "big". `vanish` starts with a "big" node, removes
it while a trial runs there, waits until both trials show PENDING (the lost one retried, with
nowhere to go), prints "PENDING_AFTER_LOSS", then adds a "big" node again.

Prints "RESULTS <json>": {trial id: [status, last training_iteration, id of the node the trial
ran on]}, and "BIG_NODES <json>": the ids of the nodes that have "big".
"""

import json
import sys
import threading
import time

import ray

import rtune as tune

TRIALS = 2


def train(config):
    node = ray.get_runtime_context().get_node_id()
    for _ in range(config["iterations"]):
        time.sleep(0.2)
        tune.report({"node": node})


def tuner(storage: str, iterations: int = 3) -> tune.Tuner:
    return tune.Tuner(
        tune.with_resources(train, {"cpu": 1, "big": 1}),
        param_space={"iterations": iterations, "id": tune.grid_search(list(range(TRIALS)))},
        run_config=tune.RunConfig(
            storage_path=storage,
            name="autoscaled",
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=1),
        ),
    )


def counts() -> dict:
    from rtune.control import running_experiments

    for run in running_experiments():
        return ray.get(run.actor.status.remote()).counts
    return {}


def all_pending() -> bool:
    return counts() == {"PENDING": TRIALS}


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.1)


def main(storage: str, mode: str) -> None:
    if mode == "join":
        ray.init()
        grid = tuner(storage).fit()
    else:
        from ray.cluster_utils import Cluster

        cluster = Cluster(
            initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
        )
        ray.init(address=cluster.address)
        results = []
        if mode == "grow":
            fit = threading.Thread(target=lambda: results.append(tuner(storage).fit()))
            fit.start()
            wait_for(all_pending, "every trial PENDING")
            print("ALL_PENDING_BEFORE_GROWING", flush=True)
        else:  # vanish
            big = cluster.add_node(num_cpus=1, resources={"big": 1})
            fit = threading.Thread(target=lambda: results.append(tuner(storage, 20).fit()))
            fit.start()
            wait_for(lambda: counts().get("RUNNING") == 1, "a trial RUNNING on the big node")
            cluster.remove_node(big)
            wait_for(all_pending, "both trials PENDING after the node was lost")
            print("PENDING_AFTER_LOSS", flush=True)
        cluster.add_node(num_cpus=1, resources={"big": 1})
        fit.join()
        grid = results[0]
    big_nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("big")]
    summary = {
        str(r.config["id"]): [r.status, r.metrics.get("training_iteration"), r.metrics.get("node")]
        for r in grid
    }
    print("RESULTS " + json.dumps(summary), flush=True)
    print("BIG_NODES " + json.dumps(big_nodes), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
