"""The experiment-level checkpoint: what trials exist and where each one stands.

Owned guarantees: each state file is replaced atomically (see `Storage.write_atomic`), so a reader
sees a whole state. Writes alternate between two files, so the previous state survives when the
newest one is damaged by hand or by a faulty store. The metadata (trainable, param space, configs)
is written before any state (by `Tuner(...)` where none exists, and by a fresh `fit()`), in two
copies, so any state that exists can be restored without the user's code.
"""

from __future__ import annotations

import posixpath
import time
from typing import Any

import cloudpickle

from rtune._durable.codec import pack, unpack
from rtune._durable.storage import Storage, encode_json

__all__ = ["StateWriter", "pack", "read_state", "unpack"]

STATE_FILES = ("experiment_state-0.json", "experiment_state-1.json")
DELTA_PREFIX = "experiment_delta-"
METADATA_FILE = "tuner.pkl"
# a second copy: a damaged tuner.pkl (a faulty disk, a half-done copy) does not cost the experiment
METADATA_COPY = "tuner_copy.pkl"
METADATA_FILES = (METADATA_FILE, METADATA_COPY)
FORMAT_VERSION = 1


def write_metadata(storage: Storage, metadata: dict) -> None:
    """Both copies, each replaced atomically; the user objects inside are pickled one by one
    (bytes), so the outer dict loads without running user code."""
    data = cloudpickle.dumps({"format_version": FORMAT_VERSION, **metadata})
    for name in METADATA_FILES:
        storage.write_atomic(name, data)


# the fields of the metadata and their types; the user objects are bytes, loaded one by one
_METADATA_FIELDS: dict[str, tuple[type, ...]] = {
    "format_version": (int,),
    "trainable_name": (str,),
    "experiment_uid": (str,),
    "created": (int, float),
    "trainable": (bytes,),
    "param_space": (bytes,),
    "tune_config": (bytes,),
    "run_config": (bytes,),
}


def read_metadata(storage: Storage) -> tuple[list[tuple[str, dict]], list[str]]:
    """The whole copies of the metadata as (file name, metadata), tuner.pkl first, and what was
    wrong with the others. A copy is whole when it unpickles to a dict of the expected fields;
    one of a different experiment (another uid than tuner.pkl's) is not used."""
    copies: list[tuple[str, dict]] = []
    problems = []
    for name in METADATA_FILES:
        if not storage.exists(name):
            continue
        try:
            metadata = cloudpickle.loads(storage.read_bytes(name))
            _check_metadata(metadata)
        except Exception as exc:  # any unpickling failure is damage: EOFError, UnpicklingError...
            problems.append(f"{storage.uri(name)} is damaged ({type(exc).__name__}: {exc})")
            continue
        if copies and metadata["experiment_uid"] != copies[0][1]["experiment_uid"]:
            continue  # a copy left from an earlier run under this name
        copies.append((name, metadata))
    return copies, problems


def _check_metadata(metadata: Any) -> None:
    if not isinstance(metadata, dict):
        raise ValueError(f"it holds a {type(metadata).__name__}, not the metadata dict")
    if metadata.get("format_version") != FORMAT_VERSION:
        return  # another format: the caller says which
    for name, types in _METADATA_FIELDS.items():
        if not isinstance(metadata.get(name), types):
            raise ValueError(f"its {name!r} is missing or not a {types[0].__name__}")


class StateWriter:
    """Writes the state when it changed, at a period that keeps writing under ~1.5% of run time, and
    in proportion to what changed: most writes are deltas that hold only the trials changed since
    the last write (each trial's `changed` flag); a full snapshot is written at the start, once
    the deltas since the last one add up to its size, and every MAX_DELTAS writes.

    Snapshots alternate between two files, so a damaged newest one falls back to the previous one
    with its own deltas; deltas older than both snapshots are deleted."""

    MIN_PERIOD_S = 1.0
    MAX_SHARE = 0.015
    MAX_DELTAS = 100

    def __init__(
        self,
        storage: Storage,
        first_seq: int = 0,
        snapshot_file: int = 0,
        restored_base: int | None = None,
    ):
        """A restored run starts after the state it read: at `first_seq`, replacing the snapshot
        file it did not read from, and keeping the deltas of the snapshot it did
        (`restored_base`) until both files hold newer snapshots."""
        self.storage = storage
        self.seq = first_seq
        self.snapshot_file = snapshot_file  # where the next snapshot goes
        self.snapshots = 0
        self.base_seq: int | None = restored_base
        self.previous_base: int | None = None
        self.deltas = 0
        self.delta_bytes = 0
        self.snapshot_bytes = 0
        self.last_write = 0.0
        self.last_duration = 0.0
        self.total_write_s = 0.0
        self.max_duration = 0.0
        self.total_bytes = 0
        self.writes = 0

    def stats(self) -> dict:
        return {
            "state_write_s": self.total_write_s,
            "state_writes": self.writes,
            "state_bytes": self.total_bytes,
            "state_snapshots": self.snapshots,
            "state_write_max_s": self.max_duration,
        }

    def due(self) -> bool:
        period = max(self.MIN_PERIOD_S, self.last_duration / self.MAX_SHARE)
        return time.monotonic() - self.last_write >= period

    def write(self, header: Any, trials: Any, started: float | None = None) -> None:
        """Write `header()` (the experiment-level fields) with every trial (a snapshot) or the
        changed ones (a delta). Called on the thread that changes the trials; `started`: when
        building the state began, so its cost counts as writing time too."""
        started = time.monotonic() if started is None else started
        snapshot = self._snapshot_due()
        chosen = trials if snapshot else [trial for trial in trials if trial.changed]
        changed = [trial for trial in trials if trial.changed] if snapshot else chosen
        record = {
            "format_version": FORMAT_VERSION,
            "seq": self.seq,
            **header(),
            "trials": [trial.to_state() for trial in chosen],
        }
        for trial in changed:
            trial.changed = False
        if not snapshot:
            record["base"] = self.base_seq
        try:
            data = encode_json(record)
            if snapshot:
                self.storage.write_atomic(STATE_FILES[self.snapshot_file], data)
            else:
                self.storage.write_atomic(delta_name(self.base_seq, self.seq), data)
        except BaseException:
            for trial in changed:  # not written: they go into the next write
                trial.changed = True
            raise
        if snapshot:
            self._after_snapshot(len(data))
        else:
            self.deltas += 1
            self.delta_bytes += len(data)
        self.total_bytes += len(data)
        self.seq += 1
        self.last_write = time.monotonic()
        self.last_duration = self.last_write - started
        self.total_write_s += self.last_duration
        self.max_duration = max(self.max_duration, self.last_duration)
        self.writes += 1

    def _snapshot_due(self) -> bool:
        return (
            self.snapshots < 2  # both files hold a state early, so a damaged one falls back
            or self.deltas >= self.MAX_DELTAS
            or self.delta_bytes >= self.snapshot_bytes
        )

    def _after_snapshot(self, size: int) -> None:
        self.previous_base, self.base_seq = self.base_seq, self.seq
        self.snapshot_file = 1 - self.snapshot_file
        self.snapshots += 1
        self.deltas = self.delta_bytes = 0
        self.snapshot_bytes = size
        keep = {self.base_seq, self.previous_base}
        for info in self.storage.list_dir(""):
            parsed = parse_delta_name(info.base_name)
            if parsed is not None and parsed[0] not in keep:
                try:
                    self.storage.filesystem.delete_file(info.path)
                except FileNotFoundError:
                    pass


def delta_name(base: int, seq: int) -> str:
    return f"{DELTA_PREFIX}{base:09d}-{seq:09d}.json"


def parse_delta_name(name: str) -> tuple[int, int] | None:
    """(base snapshot seq, seq) of a delta file's name; None for any other name."""
    if not (name.startswith(DELTA_PREFIX) and name.endswith(".json")):
        return None
    try:
        base, seq = name[len(DELTA_PREFIX) : -len(".json")].split("-")
        return int(base), int(seq)
    except ValueError:
        return None


class DamagedState(ValueError):
    pass


# the fields of a stored trial (Trial.to_state) and the types each may hold; `config` is anything
_TRIAL_FIELDS: dict[str, tuple[type, ...]] = {
    "trial_id": (str,),
    "index": (int,),
    "trial_name": (str,),
    "relpath": (str,),
    "config": (object,),
    "experiment_tag": (str,),
    "resources": (dict,),
    "status": (str,),
    "last_result": (dict,),
    "committed_checkpoints": (list,),
    "latest_checkpoint": (dict, type(None)),
    "num_failures": (int,),
    "error": (str, type(None)),
    "epoch": (int,),
    "restore_from_scratch": (bool,),
    "decision": (str, dict),
    "decided_upto": (int,),
    "lineage": (list,),
}
_REQUIRED_TRIAL_FIELDS = ("trial_id", "index", "trial_name", "relpath", "config", "resources")
_PACKED_FIELDS = ("searcher", "scheduler", "stopper")


def check_record(record: Any) -> None:
    """Raise ValueError, saying what is wrong, unless `record` is a state snapshot or delta as
    the writer writes them: a hand edit or a faulty store can leave valid JSON of the wrong shape,
    which must count as damage (and fall back) rather than fail deep inside a restore."""
    if not isinstance(record, dict):
        raise ValueError(f"it holds a JSON {type(record).__name__}, not an object")
    if not isinstance(record.get("seq"), int):
        raise ValueError(f"its 'seq' is {record.get('seq')!r}, not a whole number")
    for name in _PACKED_FIELDS:
        if name in record and not isinstance(record[name], str):
            raise ValueError(f"its {name!r} is {record[name]!r}, not a packed object")
    trials = record.get("trials")
    if not isinstance(trials, list):
        raise ValueError(f"its 'trials' is {type(trials).__name__}, not a list")
    for position, trial in enumerate(trials):
        _check_trial(trial, position)


def _check_trial(trial: Any, position: int) -> None:
    from rtune._durable.trial import ERROR, PENDING, TERMINATED, UNFINISHED

    if not isinstance(trial, dict):
        raise ValueError(f"trial #{position} is a JSON {type(trial).__name__}, not an object")
    where = f"trial {trial.get('trial_id', f'#{position}')!r}"
    missing = [name for name in _REQUIRED_TRIAL_FIELDS if name not in trial]
    unknown = sorted(set(trial) - set(_TRIAL_FIELDS))
    if missing or unknown:
        raise ValueError(f"{where} lacks fields {missing} or has unknown ones {unknown}")
    for name, value in trial.items():
        types = _TRIAL_FIELDS[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ValueError(f"{where}: its {name!r} is {value!r}")
    statuses = (*UNFINISHED, TERMINATED, ERROR)
    if trial.get("status", PENDING) not in statuses:
        raise ValueError(f"{where}: its 'status' is {trial['status']!r}, not one of {statuses}")
    relpath = trial["relpath"]
    # a trial's directory is one name inside the experiment: an edited state never sends a
    # restore to read or write anywhere else
    if not _is_dirname(relpath):
        raise ValueError(f"{where}: its 'relpath' {relpath!r} is not a directory name")
    checkpoints = list(trial.get("committed_checkpoints", []))
    if trial.get("latest_checkpoint") is not None:
        checkpoints.append(trial["latest_checkpoint"])
    for entry in checkpoints:
        path = entry.get("path") if isinstance(entry, dict) else None
        directory = posixpath.dirname(path) if isinstance(path, str) else None
        # an exploit's donor checkpoint (a latest_checkpoint from another trial, saying whose)
        # is in the donor's directory: still one name inside the experiment
        adopted = (
            entry is trial.get("latest_checkpoint")
            and entry.get("trial_id") not in (None, trial["trial_id"])
            and _is_dirname(directory)
        )
        if not (
            isinstance(path, str)
            and (directory == relpath or adopted)
            and posixpath.basename(path).startswith("checkpoint_")
            and isinstance(entry.get("training_iteration"), int)
        ):
            raise ValueError(f"{where}: a checkpoint entry {entry!r} is not one of its own")
    bundles = trial["resources"].get("bundles")
    if not isinstance(bundles, list) or not isinstance(trial["resources"].get("strategy"), str):
        raise ValueError(f"{where}: its 'resources' is {trial['resources']!r}")


def read_state(storage: Storage) -> tuple[dict | None, list[str]]:
    """The newest readable state (None if none was written) and what was wrong on the way: the
    newest valid snapshot with its deltas applied in order, up to the first missing or damaged
    one. `snapshot_file` in the result names the file the snapshot came from."""
    snapshots, problems = [], []
    for index, name in enumerate(STATE_FILES):
        if not storage.exists(name):
            continue
        try:
            state = storage.read_json(name)
            check_record(state)
            state["snapshot_file"] = index
            state["snapshot_seq"] = state.get("seq", 0)
            snapshots.append(state)
        except (ValueError, UnicodeDecodeError) as exc:
            problems.append(f"{storage.uri(name)} is damaged ({exc})")
    if problems and not snapshots:
        raise DamagedState(
            "Cannot restore: every experiment state file is damaged: "
            + "; ".join(problems)
            + ". Nothing in storage was changed; the trials' results and checkpoints are "
            "untouched. Put back a whole copy of either file (from a backup) and restore again."
        )
    if not snapshots:
        return None, problems
    newest = max(snapshots, key=lambda state: state.get("seq", 0))
    return _apply_deltas(storage, newest, problems), problems


def _apply_deltas(storage: Storage, snapshot: dict, problems: list[str]) -> dict:
    deltas = {}
    for info in storage.list_dir(""):
        parsed = parse_delta_name(info.base_name)
        if parsed is not None and parsed[0] == snapshot["seq"]:
            deltas[parsed[1]] = info.base_name
    trials = {trial["trial_id"]: trial for trial in snapshot["trials"]}
    state = snapshot
    expected = snapshot["seq"] + 1
    while expected in deltas:
        name = deltas[expected]
        try:
            delta = storage.read_json(name)
            check_record(delta)
            if delta["seq"] != expected:
                raise ValueError("it is not the delta its name says")
        except (ValueError, UnicodeDecodeError) as exc:
            problems.append(f"{storage.uri(name)} is damaged ({exc}); later changes are skipped")
            break
        for trial in delta["trials"]:
            trials[trial["trial_id"]] = trial
        state = {
            **delta,
            "snapshot_file": snapshot["snapshot_file"],
            "snapshot_seq": snapshot["snapshot_seq"],
        }
        expected += 1
    state.pop("base", None)
    state["trials"] = list(trials.values())
    return state


def _is_dirname(name: object) -> bool:
    return (
        isinstance(name, str)
        and bool(name)
        and "/" not in name
        and "\\" not in name
        and not name.startswith(".")
    )
