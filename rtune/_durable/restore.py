"""Restore's decisions, in one place: what each stored trial becomes, and from which checkpoint.

Storage is the truth for checkpoints: a trial resumes from its newest *committed* checkpoint, even
one the last experiment state never recorded (the driver may have been killed right after the trial
actor committed it). Nothing in storage is deleted or rewritten here.

| status in the state            | resume_unfinished | resume_errored | restart_errored |
|--------------------------------|-------------------|----------------|-----------------|
| TERMINATED                     | kept              | kept           | kept            |
| PENDING / RUNNING / PAUSED     | resumed (else TERMINATED) | -      | -               |
| ERROR                          | kept as ERROR     | resumed        | from scratch    |
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cloudpickle
import pyarrow.fs as pafs

from rtune._durable import state as state_io
from rtune._durable import trial as T
from rtune._durable.checkpoints import is_foreign, provenance
from rtune._durable.history import HistoryDamage, index_results, read_history, superseded
from rtune._durable.storage import Storage
from rtune._durable.trial import Trial
from rtune._execution.lifecycle import move

if TYPE_CHECKING:
    from rtune._config import RunConfig, TuneConfig


@dataclass
class RestoreFlags:
    resume_unfinished: bool = True
    resume_errored: bool = False
    restart_errored: bool = False


@dataclass
class RestorePayload:
    """What `prepare_restore` read and checked: the user's objects for `Tuner(...)`, and where the
    run continues from for `fit()` (rtune/_driver/fit_loop.py makes its ExperimentSetup of it).
    Stays on the driver: never sent to an actor."""

    storage: Storage
    trainable: Any
    param_space: dict
    param_space_given: bool  # passed to Tuner.restore, not read from the experiment
    tune_config: TuneConfig
    run_config: RunConfig  # storage_path and storage_filesystem: where it was restored from
    experiment_uid: str
    state: dict | None  # the experiment state as stored (None: no state was ever written)
    trials: list[Trial]  # as restore's flags left them, checkpoints reconciled with storage
    searcher_finished: bool
    known_trial_dirs: set[str]  # the experiment directory's subdirectories
    state_seq: int  # the next state write's sequence number
    state_file: int  # which of the two snapshot files the next snapshot goes to
    restored_state_base: int | None  # the snapshot's seq the state was read from


def open_experiment(path: str | os.PathLike, filesystem: Any = None) -> Storage:
    """The experiment's storage, or a clear error naming the path and what is missing. Whether
    the metadata is whole is not read here (see `read_metadata`)."""
    path = os.fspath(path)
    if "://" not in path:
        path = os.path.expanduser(path)
    storage = Storage.at(path, filesystem)
    if not storage.exists(""):
        raise FileNotFoundError(f"Cannot restore: {storage.uri()} does not exist")
    if not any(storage.exists(name) for name in state_io.METADATA_FILES):
        raise ValueError(
            f"Cannot restore: {storage.uri()} is not an rtune experiment "
            f"(it has no {state_io.METADATA_FILE})"
        )
    return storage


def read_metadata(storage: Storage) -> list[tuple[str, dict]]:
    """The whole copies of the experiment's metadata, best first; a damaged one is warned about
    and skipped, and none whole is an error saying what to do. Nothing is rewritten here."""
    copies, problems = state_io.read_metadata(storage)
    if not copies:
        raise ValueError(
            f"Cannot restore {storage.uri()}: its metadata (the trainable, param_space and configs "
            f"it was started with) is damaged in every copy: {'; '.join(problems)}. Nothing in "
            f"storage was changed, and the trials' results and checkpoints in it are untouched. "
            f"Put back a whole {state_io.METADATA_FILE} (from a backup), or start a new "
            "experiment under another name."
        )
    for problem in problems:
        _warn(f"{problem}; restoring from {storage.uri(copies[0][0])}")
    version = copies[0][1].get("format_version")
    if version != state_io.FORMAT_VERSION:
        raise ValueError(
            f"Cannot restore {storage.uri()}: it was written in experiment format {version}, "
            f"this rtune reads format {state_io.FORMAT_VERSION}"
        )
    return copies


def read_state(storage: Storage) -> dict | None:
    """The experiment state, or None when the run died before its first write. A damaged newest
    file falls back to the previous state, with a warning that names it."""
    state, problems = state_io.read_state(storage)
    for problem in problems:
        print(f"rtune: WARNING: {problem}; restoring from the previous state", file=sys.stderr)
    return state


def _warn(message: str) -> None:
    print(f"rtune: WARNING: {message}", file=sys.stderr)


def reconcile_with_storage(storage: Storage, trial: Trial) -> None:
    """Bring a trial's checkpoint pointer and epoch up to what storage holds."""
    index = index_results(storage, trial.relpath)
    # an exploit's donor checkpoint it has not yet replaced with one of its own
    foreign = (
        trial.latest_checkpoint if is_foreign(trial.latest_checkpoint, trial.trial_id) else None
    )
    usable = {}  # committed, and not from a run of the trial that a later one superseded
    # a trial to restart from scratch has none: they are superseded once its restart begins
    found = [] if trial.restore_from_scratch else storage.committed_checkpoints(trial.relpath)
    # a trial whose stop was decided ends at the result it was decided on: what it committed
    # running past that result is not its (see Decisions.on_result)
    stopped_at = trial.decided_upto if trial.decision == T.STOP_DECIDED else float("inf")
    for iteration, relpath, marker in found:
        epoch = marker.get("epoch")
        if isinstance(epoch, int) and superseded(epoch, iteration, index.starts, index.ends):
            continue
        if iteration > stopped_at:
            continue
        usable[relpath] = {
            "path": relpath,
            "training_iteration": iteration,
            "time_total_s": marker.get("time_total_s", 0.0),
            "metrics": {},
            **(provenance(trial.trial_id, epoch) if isinstance(epoch, int) else {}),
        }
    for entry in trial.committed_checkpoints:  # what the state knows of them: their metrics
        if entry["path"] in usable:
            usable[entry["path"]] = entry
    checkpoints = sorted(usable.values(), key=lambda e: e["training_iteration"])
    damage: list[HistoryDamage] = []
    history = read_history(storage, trial.relpath, damage, index)
    for entry in checkpoints:
        if not entry["metrics"]:
            # committed after the last state write: its scalar metrics from the history, so it is
            # ranked by its score (whatever the score attribute) and the best set stays the same
            row = _result_at(history, entry["training_iteration"]) or {}
            entry["metrics"] = {
                k: v for k, v in row.items() if isinstance(v, (int, float, str)) and k != "config"
            }
    if damage:
        # results the history lost are recorded again: resume from a checkpoint before them
        lost_from = min(problem.lost_from for problem in damage)
        checkpoints = [e for e in checkpoints if e["training_iteration"] < lost_from]
        resume_at = checkpoints[-1]["training_iteration"] if checkpoints else 0
        for problem in damage:
            _warn(
                f"trial {trial.trial_name}: {problem}; it resumes from iteration {resume_at} to "
                "record the lost results again"
            )
    trial.committed_checkpoints = checkpoints
    trial.latest_checkpoint = checkpoints[-1] if checkpoints else None
    if foreign is not None and not any(
        e.get("epoch", -1) > foreign.get("adopted_at", -1) for e in checkpoints
    ):
        trial.latest_checkpoint = foreign
    # its directory exists, so some run of it began (epoch 0 at least) and may write on for a
    # moment (an orphan of a killed run): the next run takes a higher epoch, superseding it
    trial.epoch = max(trial.epoch, index.max_epoch, 0)
    newest = trial.latest_checkpoint["training_iteration"] if trial.latest_checkpoint else 0
    if newest > trial.iteration and trial.latest_checkpoint is not foreign:
        # checkpoints the state never heard of (a driver killed while its trial actors ran on):
        # the trial's latest result is the one that checkpoint was reported with
        trial.last_result = _result_at(history, newest) or trial.last_result


def _result_at(history: Any, iteration: int) -> dict | None:
    if history is None:
        return None
    for row in history.to_pylist():
        if row.get("training_iteration") == iteration:
            return {key: value for key, value in row.items() if value is not None}
    return None


def apply_flags(trial: Trial, flags: RestoreFlags) -> None:
    """The table above, for one trial; statuses change through the lifecycle's table."""
    if trial.status == T.TERMINATED:
        return
    if trial.status == T.ERROR:
        if flags.restart_errored:
            move(trial, T.PENDING)
            trial.error, trial.restore_from_scratch = None, True
            trial.decided_upto = 0  # its strategies decide on its results anew
            trial.committed_checkpoints, trial.latest_checkpoint = [], None
        elif flags.resume_errored:
            move(trial, T.PENDING)
            trial.error = None
        return
    status = T.PENDING if flags.resume_unfinished else T.TERMINATED
    if trial.status != status:
        move(trial, status)


def restore_trials(
    storage: Storage, state: dict | None, flags: RestoreFlags, trial_dirs: set[str]
) -> list[Trial]:
    trials = [Trial.from_state(t) for t in (state or {}).get("trials", [])]
    for trial in trials:
        # a trial that reported had its directory (made before its first result)
        started = bool(trial.last_result or trial.committed_checkpoints)
        if trial.relpath not in trial_dirs and started:
            gone = "its results and checkpoints are lost"
            if trial.status == T.TERMINATED:
                _warn(f"trial {trial.trial_name}: {storage.uri(trial.relpath)} is missing; {gone}")
            else:
                _warn(
                    f"trial {trial.trial_name}: {storage.uri(trial.relpath)} is missing; {gone}, "
                    "so it starts again from scratch if it runs again"
                )
                trial.committed_checkpoints, trial.latest_checkpoint = [], None
        elif trial.status != T.TERMINATED and trial.relpath in trial_dirs:
            reconcile_with_storage(storage, trial)
        apply_flags(trial, flags)
    return trials


def _load(copies: list[tuple[str, dict]], key: str, storage: Storage, hint: str) -> Any:
    """One user object from the first copy that loads it; each is loaded on its own, so one that
    cannot be (its module is gone) hides none of the others."""
    failures = []
    for name, metadata in copies:
        try:
            value = cloudpickle.loads(metadata[key])
        except Exception as exc:
            failures.append(f"{storage.uri(name)}: {type(exc).__name__}: {exc}")
            continue
        if failures:
            _warn(f"the {key} in {failures[0]}; using the one in {storage.uri(name)}")
        return value
    raise ValueError(
        f"Cannot restore {storage.uri()}: cannot load the {key} stored with it "
        f"({'; '.join(failures)}). Nothing in storage was changed. "
        + (hint or "Check that the modules it needs are importable here.")
    )


def prepare_restore(
    path: Any, filesystem: Any, trainable: Any, param_space: dict | None, flags: RestoreFlags
) -> RestorePayload:
    """Everything `Tuner` needs to continue an experiment, checked before anything runs."""
    from rtune.trainable import trainable_name

    storage = open_experiment(path, filesystem)
    copies = read_metadata(storage)
    metadata = copies[0][1]
    stored_name = metadata["trainable_name"]
    if trainable is None:
        trainable = _load(
            copies,
            "trainable",
            storage,
            "Pass the trainable again: Tuner.restore(path, trainable=...)",
        )
    elif trainable_name(trainable) != stored_name:
        raise ValueError(
            f"Tuner.restore: the experiment at {storage.uri()} was run with trainable "
            f"{stored_name!r}, not {trainable_name(trainable)!r}"
        )
    if param_space is None:
        stored_space = _load(
            copies,
            "param_space",
            storage,
            "Pass it again: Tuner.restore(path, param_space=...) (the one the run started with).",
        )
    else:
        stored_space = _load_or_none(copies, "param_space", storage)
        if stored_space is not None:  # damaged: the given one stands in for it
            check_same_space(stored_space, param_space)
    run_config = _load(copies, "run_config", storage, "")
    run_config.storage_filesystem = filesystem
    run_config.storage_path = storage.parent_uri()
    state = read_state(storage)
    if state is not None:
        _check_unpacks(storage, state)
    trial_dirs = {
        info.base_name for info in storage.list_dir("") if info.type == pafs.FileType.Directory
    }
    return RestorePayload(
        storage=storage,
        trainable=trainable,
        param_space=param_space if param_space is not None else stored_space,
        param_space_given=param_space is not None,
        tune_config=_load(copies, "tune_config", storage, ""),
        run_config=run_config,
        experiment_uid=metadata["experiment_uid"],
        state=state,
        trials=_refreshed(restore_trials(storage, state, flags, trial_dirs), param_space),
        searcher_finished=bool(state and state.get("searcher_finished")),
        known_trial_dirs=trial_dirs,
        state_seq=state["seq"] + 1 if state else 0,
        state_file=1 - state["snapshot_file"] if state else 0,
        restored_state_base=state["snapshot_seq"] if state else None,
    )


def _load_or_none(copies: list[tuple[str, dict]], key: str, storage: Storage) -> Any:
    """As `_load`, None where no copy loads it (something given again stands in for it)."""
    try:
        return _load(copies, key, storage, "")
    except ValueError:
        return None


def _check_unpacks(storage: Storage, state: dict) -> None:
    """The searcher, scheduler and stopper in the state load, or a clear error naming where."""
    for name in ("searcher", "scheduler", "stopper"):
        try:
            state_io.unpack(state[name])
        except Exception as exc:
            source = storage.uri(state_io.STATE_FILES[state["snapshot_file"]])
            raise ValueError(
                f"Cannot restore {storage.uri()}: the {name} in its experiment state ({source} "
                f"and the deltas after it) cannot be loaded: {type(exc).__name__}: {exc}"
            ) from exc


def _refreshed(trials: list[Trial], param_space: dict | None) -> list[Trial]:
    """Trials whose configs hold object references get the fresh ones from `param_space`."""
    if param_space is not None:
        for trial in trials:
            trial.config = refresh_refs(trial.config, param_space)
    return trials


def refresh_refs(config: Any, space: Any) -> Any:
    import ray

    if isinstance(space, ray.ObjectRef):
        return space
    if isinstance(config, dict) and isinstance(space, dict):
        return {key: refresh_refs(value, space.get(key)) for key, value in config.items()}
    if isinstance(config, list) and isinstance(space, list) and len(config) == len(space):
        return [refresh_refs(value, new) for value, new in zip(config, space)]
    return config


def check_same_space(stored: Any, given: Any, where: str = "param_space") -> None:
    """A param_space given on restore may only refresh object references, nothing else."""
    import ray

    if isinstance(stored, ray.ObjectRef) or isinstance(given, ray.ObjectRef):
        return
    if isinstance(stored, dict) and isinstance(given, dict):
        if set(stored) != set(given):
            raise ValueError(
                f"Tuner.restore: {where} keys changed from {sorted(stored)} to {sorted(given)}; "
                "a restored experiment keeps its search space"
            )
        for key in stored:
            check_same_space(stored[key], given[key], f"{where}[{key!r}]")
        return
    if isinstance(stored, (list, tuple)) and isinstance(given, (list, tuple)):
        if len(stored) != len(given):
            raise ValueError(f"Tuner.restore: {where} changed length; it must stay the same")
        for i, (a, b) in enumerate(zip(stored, given)):
            check_same_space(a, b, f"{where}[{i}]")
        return
    same = type(stored) is type(given) and (
        stored == given or getattr(stored, "__dict__", None) == getattr(given, "__dict__", 1)
    )
    if not same:
        raise ValueError(
            f"Tuner.restore: {where} changed from {stored!r} to {given!r}; a param_space given on "
            "restore may only refresh object references"
        )
