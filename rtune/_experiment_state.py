"""The experiment-level checkpoint: what trials exist and where each one stands.

Owned guarantees: each state file is replaced atomically (see `Storage.write_atomic`), so a reader
sees a whole state. Writes alternate between two files, so the previous state survives when the
newest one is damaged by hand or by a faulty store. The metadata (trainable, param space, configs)
is written once, before the controller starts, so any state that exists can be restored without
the user's code.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import cloudpickle

from rtune._storage import Storage

STATE_FILES = ("experiment_state-0.json", "experiment_state-1.json")
METADATA_FILE = "tuner.pkl"
FORMAT_VERSION = 1


def pack(obj: Any) -> str:
    return base64.b64encode(cloudpickle.dumps(obj)).decode()


def unpack(text: str) -> Any:
    return cloudpickle.loads(base64.b64decode(text))


def write_metadata(storage: Storage, metadata: dict) -> None:
    storage.write_atomic(
        METADATA_FILE, cloudpickle.dumps({"format_version": FORMAT_VERSION, **metadata})
    )


def read_metadata(storage: Storage) -> dict:
    return cloudpickle.loads(storage.read_bytes(METADATA_FILE))


class StateWriter:
    """Writes the state when it changed, at a period that keeps writing under ~5% of run time."""

    MIN_PERIOD_S = 1.0
    MAX_SHARE = 0.05

    def __init__(self, storage: Storage, first_seq: int = 0):
        self.storage = storage
        self.seq = first_seq
        self.last_write = 0.0
        self.last_duration = 0.0
        self.total_write_s = 0.0
        self.total_bytes = 0
        self.writes = 0

    def stats(self) -> dict:
        return {
            "state_write_s": self.total_write_s,
            "state_writes": self.writes,
            "state_bytes": self.total_bytes,
        }

    def due(self) -> bool:
        period = max(self.MIN_PERIOD_S, self.last_duration / self.MAX_SHARE)
        return time.monotonic() - self.last_write >= period

    def write(self, state: dict, started: float | None = None) -> None:
        """`started`: when building `state` began, so its cost counts as writing time too."""
        started = time.monotonic() if started is None else started
        record = {"format_version": FORMAT_VERSION, "seq": self.seq, **state}
        data = self.storage.encode_json(record)
        self.storage.write_atomic(STATE_FILES[self.seq % 2], data)
        self.total_bytes += len(data)
        self.seq += 1
        self.last_write = time.monotonic()
        self.last_duration = self.last_write - started
        self.total_write_s += self.last_duration
        self.writes += 1


class DamagedState(ValueError):
    pass


def read_state(storage: Storage) -> tuple[dict | None, list[str]]:
    """The newest readable state (None if none was written) and what was wrong with the others."""
    found, problems = [], []
    for name in STATE_FILES:
        if not storage.exists(name):
            continue
        try:
            state = storage.read_json(name)
            if not isinstance(state, dict) or "trials" not in state:
                raise ValueError("it holds no trial list")
            found.append(state)
        except (ValueError, UnicodeDecodeError) as exc:
            problems.append(f"{storage.uri(name)} is damaged ({exc})")
    if problems and not found:
        raise DamagedState(
            "Cannot restore: every experiment state file is damaged: "
            + "; ".join(problems)
            + ". Nothing in storage was changed."
        )
    newest = max(found, key=lambda state: state.get("seq", 0), default=None)
    return newest, problems
