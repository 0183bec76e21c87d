"""Finding a running experiment's controller from anywhere on its cluster, and stopping it.

Each controller is a named actor in the "rtune" namespace, named after its experiment and a digest
of its storage location: `<experiment name>.<digest>`. A script, a shell on any node, or a Ray
job's operator can then drain a run without knowing the pid of the process that called `fit()`
(which, inside a remote task, is a Ray worker's):

    rtune stop my_experiment              # by name, on the cluster of RAY_ADDRESS / `ray start`
    rtune stop s3://bucket/exps/my_experiment?endpoint_override=...
    rtune.stop_experiment("my_experiment")

`rtune stop` answers within seconds: it joins a cluster only once a GCS answers at its address
(a stale /tmp/ray/ray_current_cluster or a RAY_ADDRESS pointing at nothing is an error saying so),
and given a path it reads the experiment's lease and state to say whether it is running (and
where), stopped (and how to resume) or finished.
"""

from __future__ import annotations

import hashlib
import os
import socket
import urllib.parse
from dataclasses import dataclass
from typing import Any

import ray

from rtune import _settings
from rtune._durable import lease as _lease
from rtune._durable.state import METADATA_FILE
from rtune._durable.storage import Storage

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
    second Ctrl+C). Returns the experiment's location, which `Tuner.restore` takes. When Ray is
    not initialized, connects to the cluster its lease names (given a path), else to that of
    RAY_ADDRESS or the one `ray start` made; a `LookupError` says why when none answers."""
    wanted = os.fspath(name_or_path)
    if not ray.is_initialized():
        _connect(wanted)
    try:
        run = find_experiment(name_or_path)
    except LookupError as exc:
        if "/" not in wanted:
            raise
        raise LookupError(f"{exc}. {stored_status(Storage.at(wanted))}") from None
    ray.get(run.actor.request_stop.remote(force=force, reason="rtune stop"), timeout=30)
    return run.location


CONNECT_TIMEOUT_S = 3.0


def local_cluster_address() -> tuple[str | None, bool]:
    """The address `ray start` left in /tmp/ray/ray_current_cluster, and whether a GCS still
    serves it: a killed cluster leaves the file behind, and joining it would hang."""
    try:  # private helpers: if they moved, no local cluster is found
        from ray._private.services import find_bootstrap_address, find_gcs_addresses

        address = find_bootstrap_address(None)
        return address, bool(address) and address in find_gcs_addresses()
    except Exception:
        return None, False


def _address_file() -> str:
    try:
        from ray._common.utils import get_ray_address_file

        return get_ray_address_file(None)
    except Exception:
        return "/tmp/ray/ray_current_cluster"


def _answers(address: str) -> bool:
    """Whether something accepts connections at a host:port (or ray://host:port) address."""
    parts = urllib.parse.urlsplit(address if "://" in address else f"//{address}")
    try:
        with socket.create_connection((parts.hostname or "", parts.port or 0), CONNECT_TIMEOUT_S):
            return True
    except (OSError, ValueError):
        return False


def _connect(wanted: str) -> None:
    """Join the cluster the experiment would run on, or raise a LookupError saying what was
    looked for and where."""
    if "/" in wanted:
        storage = Storage.at(wanted)
        held = _lease.read_lease(storage)
        if not isinstance(held, _lease.LeaseRecord) or not held.cluster:
            raise LookupError(
                f"The experiment at {storage.uri()} is not running. " + stored_status(storage)
            )
        address, where = held.cluster, f"the Ray cluster its lease names ({held.describe()})"
        if not _answers(address):
            raise LookupError(
                f"No live Ray cluster at {address}, {where}: the experiment at {storage.uri()} "
                f"is not running (its owner is gone). {stored_status(storage)}"
            )
    else:
        address = _settings.ray_address()
        where = "RAY_ADDRESS"
        if address in ("", "auto"):
            address, alive = local_cluster_address()
            where = f"the address file {_address_file()}"
            if not address:
                raise LookupError(
                    f"No Ray cluster to look for {wanted!r} in: RAY_ADDRESS is not set and "
                    f"{_address_file()} does not exist (no `ray start` on this machine). Give "
                    "the experiment's path to read its state from storage."
                )
            if not alive:
                raise LookupError(
                    f"No live Ray cluster at {address} (named by {where}, left by a Ray that no "
                    f"longer runs): the experiment {wanted!r} is not running on this machine's "
                    "cluster. Give its path to read its state from storage."
                )
        elif not _answers(address):
            raise LookupError(
                f"No live Ray cluster at {address} (RAY_ADDRESS): the experiment {wanted!r} is "
                "not running there. Give its path to read its state from storage."
            )
    ray.init(address=address, log_to_driver=False)


def stored_status(storage: Storage) -> str:
    """What storage says of an experiment that no live controller runs: stopped (and how to
    resume it) or finished, from its experiment state."""
    from rtune._durable.restore import read_state

    try:
        state = read_state(storage)
    except (OSError, ValueError) as exc:
        return f"Its state cannot be read ({exc})."
    resume = f"resume it with: rtune resume {storage.uri()}"
    if state is None:
        if not storage.exists(METADATA_FILE):
            return f"There is no rtune experiment at {storage.uri()}."
        return f"It stopped before its first state write; {resume}"
    counts: dict[str, int] = {}
    for trial in state.get("trials", []):
        counts[trial.get("status", "PENDING")] = counts.get(trial.get("status", "PENDING"), 0) + 1
    listing = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no trials"
    unfinished = sum(n for status, n in counts.items() if status not in ("TERMINATED", "ERROR"))
    if unfinished or not state.get("searcher_finished"):
        return f"It is stopped ({listing}); {resume}"
    results = f"tune.Tuner.restore({storage.uri()!r}).get_results()"
    return f"It is finished ({listing}); read its results with {results}"
