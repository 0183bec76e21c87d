"""A Ray head with Ray's real autoscaler and its fake node provider, on 127.0.0.1, so pending
demand turns into new (local) worker nodes as it would on a cloud cluster.

    python -m cluster.autoscaling start --dir /tmp/rtune_autoscaling   # prints RAY_ADDRESS
    python -m cluster.autoscaling stop --dir /tmp/rtune_autoscaling

The node types are in cluster/fake_autoscaler.yaml. The head is a `ray start --block` process in a
session of its own; the worker nodes the autoscaler adds are children of its monitor, in the same
process group, so stopping the group (by pid, never `ray stop`) stops them all.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys

from cluster.local_cluster import LocalCluster, Node, _env

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG_TEMPLATE = os.path.join(HERE, "fake_autoscaler.yaml")
IP = "127.0.0.1"


def start_autoscaling_cluster(root: str, port: int = 6395, head_cpus: int = 1) -> LocalCluster:
    """Start the head; `cluster.address` is what drivers join. Workers come from the autoscaler."""
    import yaml

    if os.path.exists(root):
        shutil.rmtree(root)
    os.makedirs(root)
    with open(CONFIG_TEMPLATE) as src:
        config = yaml.safe_load(src)
    config["provider"]["gcs_address"] = f"{IP}:{port}"
    config_path = os.path.join(root, "autoscaler.yaml")
    with open(config_path, "w") as out:
        json.dump(config, out)  # JSON is YAML
    env = {**_env(), "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
    # single-node address mode keeps every fake node on 127.0.0.1
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    temp_dir = os.path.join(root, "head")
    log = open(os.path.join(root, "head.log"), "w")
    process = subprocess.Popen(
        [
            ray_bin,
            "start",
            "--head",
            "--block",
            "--node-ip-address",
            IP,
            "--port",
            str(port),
            "--num-cpus",
            str(head_cpus),
            "--include-dashboard",
            "false",
            "--temp-dir",
            temp_dir,
            f"--autoscaling-config={config_path}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    cluster = AutoscalingCluster(root, port, [Node("head", IP, process.pid, temp_dir)])
    cluster._save()
    try:
        cluster.wait_for_nodes(1)
    except BaseException:
        cluster.stop()
        raise
    return cluster


class AutoscalingCluster(LocalCluster):
    @property
    def address(self) -> str:
        return f"{IP}:{self.port}"

    def driver_env(self) -> dict[str, str]:
        """Single-node address mode: drivers, like the nodes, stay on 127.0.0.1."""
        return {**_env(), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def main() -> None:
    parser = argparse.ArgumentParser(description="a Ray head with the fake autoscaler")
    parser.add_argument("command", choices=["start", "stop"])
    parser.add_argument("--dir", default="/tmp/rtune_autoscaling")
    parser.add_argument("--port", type=int, default=6395)
    args = parser.parse_args()
    if args.command == "start":
        cluster = start_autoscaling_cluster(args.dir, args.port)
        print(f"RAY_ADDRESS={cluster.address}")
    else:
        AutoscalingCluster.load(args.dir).stop()


if __name__ == "__main__":
    main()
