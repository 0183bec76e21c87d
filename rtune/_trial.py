"""`Trial`: the controller's record of one trial, and its form in the experiment state."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any

from rtune._resources import ResourceRequest

PENDING, RUNNING, PAUSED, TERMINATED, ERROR = "PENDING", "RUNNING", "PAUSED", "TERMINATED", "ERROR"
UNFINISHED = (PENDING, RUNNING, PAUSED)


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
    stopping: bool = field(default=False, compare=False)
    encoded_config: Any = field(default=None, repr=False, compare=False)
    # set by any assignment to a stored field: the state writer's deltas hold the changed trials
    changed: bool = field(default=True, repr=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name not in _UNSTORED:
            object.__setattr__(self, "changed", True)

    @property
    def iteration(self) -> int:
        return int(self.last_result.get("training_iteration", 0) or 0)

    def to_state(self) -> dict[str, Any]:
        """A JSON-ready record; the config is kept as JSON when it round-trips as JSON, else
        pickled, so a restored trial gets back exactly the config it ran with."""
        state = {}
        for name in _STATE_FIELDS:
            value = getattr(self, name)
            if name not in _OMITTED_WHEN_DEFAULT or value != _OMITTED_WHEN_DEFAULT[name]:
                state[name] = value
        state["config"] = _encode_config(self)
        state["resources"] = {
            "bundles": [list(map(list, b)) for b in self.resources.bundles],
            "strategy": self.resources.strategy,
        }
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Trial:
        state = dict(state)
        resources = state.pop("resources")
        config = state.pop("config")
        if isinstance(config, dict) and set(config) == {"__pickled__"}:
            from rtune._experiment_state import unpack

            config = unpack(config["__pickled__"])
        bundles = tuple(tuple((k, float(v)) for k, v in b) for b in resources["bundles"])
        return cls(
            resources=ResourceRequest(bundles, resources["strategy"]), config=config, **state
        )


_UNSTORED = ("stopping", "encoded_config", "changed")
_STATE_FIELDS = [
    f.name for f in fields(Trial) if f.name not in ("config", "resources", *_UNSTORED)
]
# left out of a record while they hold their default (read back as that default): most trials
# never fail or checkpoint, and the final state write holds every trial (~15% fewer bytes)
_OMITTED_WHEN_DEFAULT = {
    "committed_checkpoints": [],
    "latest_checkpoint": None,
    "num_failures": 0,
    "error": None,
    "restore_from_scratch": False,
}


def _encode_config(trial: Trial) -> Any:
    """Encoded once per trial: a config never changes after the trial is created."""
    if trial.encoded_config is not None:
        return trial.encoded_config
    try:
        encoded: Any = (
            trial.config if json.loads(json.dumps(trial.config)) == trial.config else None
        )
    except (TypeError, ValueError):
        encoded = None
    if encoded is None:
        from rtune._experiment_state import pack

        encoded = {"__pickled__": pack(trial.config)}
    trial.encoded_config = encoded
    return encoded
