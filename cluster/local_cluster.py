"""A real multi-node Ray cluster on one machine, on 127.0.0.x only, for tests and for people.

    python -m cluster.local_cluster start --dir /tmp/rtune_cluster --workers 2
    python -m cluster.local_cluster stop --dir /tmp/rtune_cluster

Each node is a `ray start --block` process with its own --temp-dir and node IP (head 127.0.0.10,
workers 127.0.0.11, 127.0.0.12, ...: addresses Ray does not rewrite to the machine's public one),
an explicit dashboard port, `RAY_AUTH_MODE` set explicitly (Ray 2.60 turns token auth on when
~/.ray/auth_token exists and workers then fail to join), and a custom resource `node_<i>` so a test
can pin work to a node. Nodes are stopped by their own pids: never `ray stop`, which kills every
Ray on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field

HEAD_IP = "127.0.0.10"


@dataclass
class Node:
    name: str
    ip: str
    pid: int
    temp_dir: str


@dataclass
class LocalCluster:
    """A running cluster; `address` is what `ray.init(address=...)` and RAY_ADDRESS take."""

    root: str
    port: int
    nodes: list[Node] = field(default_factory=list)
    dashboard_port: int | None = None
    # the Ray installation the nodes run (its `ray` next to this Python by default)
    python: str = sys.executable

    @property
    def address(self) -> str:
        return f"{HEAD_IP}:{self.port}"

    def _ray_start(
        self, name: str, ip: str, args: list[str], cpus: int, resources: dict | None = None
    ) -> Node:
        temp_dir = os.path.join(self.root, name)
        os.makedirs(temp_dir, exist_ok=True)
        log = open(os.path.join(self.root, f"{name}.log"), "w")
        ray_bin = os.path.join(os.path.dirname(self.python), "ray")
        process = subprocess.Popen(
            [
                ray_bin,
                "start",
                "--block",
                "--node-ip-address",
                ip,
                "--num-cpus",
                str(cpus),
                "--temp-dir",
                temp_dir,
                "--resources",
                json.dumps({f"node_{name}": 1, **(resources or {})}),
                *args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_env(),
            start_new_session=True,
        )
        node = Node(name, ip, process.pid, temp_dir)
        self.nodes.append(node)
        self._save()
        return node

    def start_head(
        self, cpus: int = 1, dashboard_port: int = 8275, dashboard: bool = False
    ) -> Node:
        """`dashboard`: also run the dashboard, whose job server `ray job submit` talks to
        (needs `ray[default]`); `dashboard_url` is then its address."""
        self.dashboard_port = dashboard_port if dashboard else None
        return self._ray_start(
            "head",
            HEAD_IP,
            [
                "--head",
                "--port",
                str(self.port),
                "--dashboard-host",
                HEAD_IP,
                "--dashboard-port",
                str(dashboard_port),
                "--include-dashboard",
                "true" if dashboard else "false",
            ],
            cpus,
        )

    @property
    def dashboard_url(self) -> str:
        if self.dashboard_port is None:
            raise RuntimeError("this cluster was started without a dashboard (dashboard=False)")
        return f"http://{HEAD_IP}:{self.dashboard_port}"

    def add_worker(
        self, cpus: int = 1, resources: dict | None = None, timeout_s: float = 60
    ) -> Node:
        index = len(self.nodes)
        node = self._ray_start(
            f"w{index}", f"127.0.0.{10 + index}", ["--address", self.address], cpus, resources
        )
        self.wait_for_nodes(len(self.nodes), timeout_s)
        return node

    def wait_for_nodes(self, count: int, timeout_s: float = 60) -> None:
        """Wait until `count` nodes are alive, asking the cluster itself (a short-lived driver)."""
        deadline = time.monotonic() + timeout_s
        script = (
            f"import ray; ray.init(address='{self.address}', log_to_driver=False);"
            "print(sum(1 for n in ray.nodes() if n['Alive']))"
        )
        while time.monotonic() < deadline:
            probe = subprocess.run(
                [sys.executable, "-c", script],
                capture_output=True,
                text=True,
                env=self.driver_env(),
                timeout=max(5, timeout_s),
            )
            if probe.returncode == 0 and probe.stdout.strip().splitlines()[-1:] == [str(count)]:
                return
            time.sleep(0.5)
        raise TimeoutError(f"the local cluster at {self.address} did not reach {count} nodes")

    def driver_env(self) -> dict[str, str]:
        """The environment a process joining this cluster needs."""
        return _env()

    def remove_node(self, name: str) -> None:
        """Stop one node by its pid (its `ray start --block` stops the node's processes)."""
        node = next(n for n in self.nodes if n.name == name)
        _terminate(node.pid)
        self.nodes.remove(node)
        self._save()

    def stop(self) -> None:
        """Stop every node at once: SIGTERM to each, one shared grace period, then SIGKILL."""
        _terminate(*(node.pid for node in self.nodes))
        self.nodes = []
        self._save()

    def _save(self) -> None:
        with open(os.path.join(self.root, "cluster.json"), "w") as out:
            saved = {"port": self.port, "dashboard_port": self.dashboard_port}
            json.dump({**saved, "nodes": [asdict(n) for n in self.nodes]}, out)

    @classmethod
    def load(cls, root: str) -> LocalCluster:
        with open(os.path.join(root, "cluster.json")) as src:
            saved = json.load(src)
        nodes = [Node(**n) for n in saved["nodes"]]
        return cls(root, saved["port"], nodes, saved.get("dashboard_port"))


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("RAY_AUTH_MODE", "disabled")
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)  # multi-node needs Ray's cluster mode
    return env


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _terminate(*pids: int, timeout_s: float = 4) -> None:
    """SIGTERM each node's process group, then SIGKILL what is left after `timeout_s`
    (`ray start --block` can take 20 s and more to wind a node down on its own)."""
    for pid in pids:
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        _signal_group(pid, signal.SIGKILL)


def start_cluster(
    root: str,
    workers: int = 1,
    cpus: int = 1,
    port: int = 6391,
    resources: dict | None = None,
    dashboard: bool = False,
    python: str = sys.executable,
) -> LocalCluster:
    """A head and `workers` worker nodes; each worker also gets `resources`. `python` names the
    Ray installation to run (a virtualenv's interpreter)."""
    if os.path.exists(root):
        shutil.rmtree(root)
    os.makedirs(root)
    cluster = LocalCluster(root, port, python=python)
    try:
        cluster.start_head(cpus, dashboard=dashboard)
        cluster.wait_for_nodes(1)
        for _ in range(workers):
            cluster.add_worker(cpus, resources)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def main() -> None:
    parser = argparse.ArgumentParser(description="a multi-node Ray cluster on 127.0.0.x")
    parser.add_argument("command", choices=["start", "stop"])
    parser.add_argument("--dir", default="/tmp/rtune_cluster")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=1)
    parser.add_argument("--port", type=int, default=6391)
    parser.add_argument(
        "--dashboard", action="store_true", help="run the dashboard too, for `ray job submit`"
    )
    args = parser.parse_args()
    if args.command == "start":
        cluster = start_cluster(
            args.dir, args.workers, args.cpus, args.port, dashboard=args.dashboard
        )
        print(f"RAY_ADDRESS={cluster.address}")
        if args.dashboard:
            print(f"# ray job submit --address {cluster.dashboard_url} -- python my_tuning.py")
    else:
        LocalCluster.load(args.dir).stop()


if __name__ == "__main__":
    main()
