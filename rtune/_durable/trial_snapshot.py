"""`TrialSnapshot`: a trial as users' code is handed it outside the schedulers (which get live
views, rtune/_execution/views.py): a copy that nothing changes behind its holder's back."""

from __future__ import annotations

from rtune._durable import trial as T
from rtune._durable.storage import Storage
from rtune.checkpoint import Checkpoint


class TrialSnapshot:
    """A trial with Ray Tune's documented `Trial` fields, as it was at one moment: what callbacks
    and `ExperimentAnalysis` hand out (the engine's records change under them). `storage` is
    the trial's directory (an rtune `Storage`), where the file loggers write."""

    def __init__(
        self, trial_id: str, trial_name: str, relpath: str, config: dict, storage: Storage
    ):
        self.trial_id = trial_id
        self.trial_name = trial_name
        self.relpath = relpath
        self.config = config
        self.storage = storage.child(relpath)
        self.path = storage.uri(relpath)
        self.local_path = storage.path(relpath) if storage.is_local else None
        self.status = T.PENDING
        self.last_result: dict = {}
        self.checkpoint: Checkpoint | None = None
        self.experiment_tag = ""
        self.num_failures = 0
        self.error: str | None = None

    @property
    def logdir(self) -> str | None:  # Ray Tune's older name
        return self.local_path

    def __str__(self) -> str:
        return self.trial_name

    def __repr__(self) -> str:
        return f"TrialSnapshot({self.trial_name}, {self.status})"

    @classmethod
    def of(cls, trial: T.Trial, storage: Storage) -> TrialSnapshot:
        """The record `trial` as it is now."""
        snapshot = cls(trial.trial_id, trial.trial_name, trial.relpath, trial.config, storage)
        snapshot.status, snapshot.last_result = trial.status, dict(trial.last_result)
        snapshot.experiment_tag, snapshot.num_failures = trial.experiment_tag, trial.num_failures
        snapshot.error = trial.error
        snapshot.checkpoint = checkpoint_at(storage, (trial.latest_checkpoint or {}).get("path"))
        return snapshot


def checkpoint_at(storage: Storage, relpath: str | None) -> Checkpoint | None:
    """The committed checkpoint at `relpath` in the experiment (None: none)."""
    return Checkpoint(storage.path(relpath), storage.filesystem) if relpath else None
