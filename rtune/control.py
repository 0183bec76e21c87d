"""Finding a running experiment's controller from anywhere on its cluster, and stopping it.

Each controller is a named actor in the "rtune" namespace, named after its experiment and a digest
of its storage location: `<experiment name>.<digest>`. A script, a shell on any node, or a Ray
job's operator can then drain a run without knowing the pid of the process that called `fit()`
(which, inside a remote task, is a Ray worker's):

    rtune stop my_experiment              # by name, on the cluster of RAY_ADDRESS / `ray start`
    rtune stop s3://bucket/exps/my_experiment?endpoint_override=...
    rtune.stop_experiment("my_experiment")
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

import ray

from rtune._storage import Storage

CONTROLLER_NAMESPACE = "rtune"


def controller_name(storage: Storage) -> str:
    digest = hashlib.sha1(storage.uri().encode()).hexdigest()[:16]
    return f"{posix_basename(storage.root)}.{digest}"


def posix_basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


@dataclass
class RunningExperiment:
    name: str
    location: str
    actor: Any


def running_experiments() -> list[RunningExperiment]:
    """Every experiment whose controller is alive on the connected cluster."""
    found = []
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry["namespace"] != CONTROLLER_NAMESPACE:
            continue
        try:
            actor = ray.get_actor(entry["name"], namespace=CONTROLLER_NAMESPACE)
            location = ray.get(actor.location.remote(), timeout=10)
        except Exception:  # it ended between the listing and the call
            continue
        found.append(RunningExperiment(entry["name"].rsplit(".", 1)[0], location, actor))
    return found


def find_experiment(name_or_path: str | os.PathLike) -> RunningExperiment:
    """The running experiment with this name, or at this path / URI; a clear error otherwise."""
    wanted = os.fspath(name_or_path)
    running = running_experiments()
    if "/" in wanted:
        location = Storage.at(wanted).uri()
        matches = [run for run in running if run.location == location]
    else:
        matches = [run for run in running if run.name == wanted]
    if len(matches) == 1:
        return matches[0]
    listing = ", ".join(run.location for run in running) or "none"
    if not matches:
        raise LookupError(
            f"No running rtune experiment {wanted!r} on this Ray cluster (running: {listing})"
        )
    raise LookupError(
        f"{len(matches)} running experiments are named {wanted!r}; give the path instead: "
        + ", ".join(run.location for run in matches)
    )


def stop_experiment(name_or_path: str | os.PathLike, force: bool = False) -> str:
    """Ask a running experiment to drain, as Ctrl+C in its driver would (`force`: at once, as a
    second Ctrl+C). Returns the experiment's location, which `Tuner.restore` takes. Connects to
    the cluster of RAY_ADDRESS (or the one `ray start` made) when Ray is not initialized."""
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS", "auto"), log_to_driver=False)
    run = find_experiment(name_or_path)
    ray.get(run.actor.request_stop.remote(force=force, reason="rtune stop"), timeout=30)
    return run.location
