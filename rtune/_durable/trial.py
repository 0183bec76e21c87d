"""`Trial`: the controller's record of one trial, and its form in the experiment state."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from rtune._durable.codec import pack, unpack
from rtune._execution.resources import ResourceRequest

PENDING, RUNNING, PAUSED, TERMINATED, ERROR = "PENDING", "RUNNING", "PAUSED", "TERMINATED", "ERROR"
UNFINISHED = (PENDING, RUNNING, PAUSED)
# `Trial.decision` values besides an exploit record
STOP_DECIDED, PAUSE_DECIDED = "STOP", "PAUSE"


@dataclass
class Trial:
    trial_id: str
    index: int
    trial_name: str
    relpath: str
    config: dict
    experiment_tag: str
    resources: ResourceRequest
    status: str = PENDING
    last_result: dict = field(default_factory=dict)
    committed_checkpoints: list[dict] = field(default_factory=list)
    latest_checkpoint: dict | None = None
    num_failures: int = 0
    error: str | None = None
    epoch: int = -1
    restore_from_scratch: bool = False
    # a decision taken and not yet carried out, stored so a restore carries it out: "STOP",
    # "PAUSE" (kept while the scheduler holds the trial paused), or an exploit record (dict)
    decision: Any = None
    # the training_iteration of the last result the strategies decided on: a result at or
    # below it (re-run after a restore from an older checkpoint) is not decided again
    decided_upto: int = 0
    # the exploits that made this trial's config, as Ray Tune's PBT policy lines (JSON text)
    lineage: list[str] = field(default_factory=list)
    stopping: bool = field(default=False, compare=False)  # its stop was asked for
    # set by any assignment to a stored field (stored fields are replaced, never changed in
    # place): the state writer's deltas hold the changed trials
    changed: bool = field(default=True, repr=False, compare=False)
    encoded_config: Any = field(default=None, repr=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name not in _UNSTORED:
            object.__setattr__(self, "changed", True)
            if name == "config":
                object.__setattr__(self, "encoded_config", None)

    @property
    def iteration(self) -> int:
        return int(self.last_result.get("training_iteration", 0) or 0)

    def to_state(self) -> dict[str, Any]:
        """A JSON-ready record. Fields at their defaults are left out (most trials never fail or
        checkpoint, and a run's last write holds every trial); the fields are spelled out, as
        this runs for every trial in a run's last write."""
        if self.encoded_config is None:
            object.__setattr__(self, "encoded_config", _encode_config(self.config))
        state = {
            "trial_id": self.trial_id,
            "index": self.index,
            "trial_name": self.trial_name,
            "relpath": self.relpath,
            "config": self.encoded_config,
            "experiment_tag": self.experiment_tag,
            "resources": _encode_resources(self.resources),
            "status": self.status,
            "last_result": self.last_result,
            "epoch": self.epoch,
        }
        if self.committed_checkpoints:
            state["committed_checkpoints"] = self.committed_checkpoints
        if self.latest_checkpoint is not None:
            state["latest_checkpoint"] = self.latest_checkpoint
        if self.num_failures:
            state["num_failures"] = self.num_failures
        if self.error is not None:
            state["error"] = self.error
        if self.restore_from_scratch:
            state["restore_from_scratch"] = True
        if self.decision is not None:
            state["decision"] = _encode_decision(self.decision)
        if self.decided_upto:
            state["decided_upto"] = self.decided_upto
        if self.lineage:
            state["lineage"] = self.lineage
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Trial:
        state = dict(state)
        resources = state.pop("resources")
        config = state.pop("config")
        if isinstance(config, dict) and set(config) == {"__pickled__"}:
            config = unpack(config["__pickled__"])
        if isinstance(state.get("decision"), dict):
            state["decision"] = _decode_decision(state["decision"])
        bundles = tuple(tuple((k, float(v)) for k, v in b) for b in resources["bundles"])
        return cls(
            resources=ResourceRequest(bundles, resources["strategy"]), config=config, **state
        )


_UNSTORED = ("stopping", "changed", "encoded_config")


def _encode_decision(decision: Any) -> Any:
    if isinstance(decision, dict):  # an exploit: its config as a trial's is stored
        return {**decision, "config": _encode_config(decision["config"])}
    return decision


def _decode_decision(decision: dict) -> dict:
    config = decision["config"]
    if isinstance(config, dict) and set(config) == {"__pickled__"}:
        config = unpack(config["__pickled__"])
    return {**decision, "config": config}


def _encode_config(config: dict) -> Any:
    """The config itself when JSON holds it exactly, else pickled, so a restored trial gets back
    exactly the config it ran with."""
    try:
        if _exact_in_json(config):
            return config
    except RecursionError:  # a config inside itself: pickle keeps that
        pass
    return {"__pickled__": pack(config)}


def _exact_in_json(value: Any) -> bool:
    """Whether JSON gives `value` back as it is: a JSON round trip, without the encoding."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if kind is float:
        return value == value  # NaN reads back unequal to itself
    if kind is dict:
        return all(type(k) is str and _exact_in_json(v) for k, v in value.items())
    if kind is list:
        return all(_exact_in_json(v) for v in value)
    return False


@functools.lru_cache(maxsize=64)
def _encode_resources(resources: ResourceRequest) -> dict:
    """Most trials share a few requests: each is encoded once (the dict is only read)."""
    bundles = [list(map(list, bundle)) for bundle in resources.bundles]
    return {"bundles": bundles, "strategy": resources.strategy}
