"""The experiment state of a running experiment: when it is written, what the header holds, and
what a write that fails means; and the lease that keeps this run the experiment's only writer.

Storage that stays down through its retries stops the run (a drain), never loses a trial: every
trial stays resumable from its last committed checkpoint, and the error says how to go on.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rtune._durable.lease import ExperimentLeased, LeaseKeeper
from rtune._durable.state import StateWriter, pack
from rtune._durable.storage import StorageError

if TYPE_CHECKING:
    from rtune._durable.trial import Trial
    from rtune._execution.drain import Drain
    from rtune._execution.intake import Intake
    from rtune._execution.lifecycle import Lifecycle
    from rtune._execution.reporting import Journal
    from rtune._execution.setup import ExperimentSetup


class Recorder:
    def __init__(
        self,
        setup: ExperimentSetup,
        trials: dict[str, Trial],
        lifecycle: Lifecycle,
        intake: Intake,
        drain: Drain,
        journal: Journal,
    ):
        self._setup = setup
        self._storage = setup.storage
        self._trials = trials
        self._lifecycle = lifecycle
        self._intake = intake
        self._drain = drain
        self._journal = journal
        self.writer = StateWriter(
            setup.storage, setup.state_seq, setup.state_file, setup.restored_state_base
        )
        self._lease = (
            LeaseKeeper(setup.storage, setup.lease, self._on_lease_lost)
            if setup.lease is not None
            else None
        )

    def start(self) -> None:
        if self._lease is not None:
            self._lease.start(controller_started=True)  # renewed from a thread from here on

    def release(self) -> None:
        if self._lease is not None:
            self._lease.release()

    def may_write(self) -> bool:
        """False once another run took the experiment's lease (from any thread)."""
        return self._lease is None or self._lease.lost is None

    def write_if_due(self) -> None:
        if self._lifecycle.dirty and self.writer.due():
            self.write()

    def write(self) -> None:
        if self._lease is not None and self._lease.lost:
            return  # another run owns the experiment now
        started = time.monotonic()
        try:
            self.writer.write(self._header, self._trials.values(), started)
        except StorageError as exc:  # the trials are not lost: restore reconciles with storage
            self.on_storage_failure(str(exc))
            return
        self._lifecycle.dirty = False

    def _header(self) -> dict:
        """The experiment-level part of the state, written with every snapshot and delta."""
        setup = self._setup
        return {
            "experiment_name": setup.experiment_name,
            "experiment_uid": setup.experiment_uid,
            "timestamp": time.time(),
            "searcher": pack(setup.searcher.get_state()),
            "searcher_finished": self._intake.finished,
            "scheduler": pack(setup.scheduler.get_state()),
            "stopper": pack(setup.stopper),
            "stop_reason": self._drain.reason,
        }

    def on_storage_failure(self, error: str) -> None:
        """Storage stayed unusable through its retries: stop the run, leaving every trial
        resumable from its last committed checkpoint, and tell the user how to go on."""
        self._storage.retry_s = min(self._storage.retry_s, 10.0)  # the final write: a last try
        self._drain.fail(
            StorageError(
                f"{error}. The run stopped; its trials are resumable from their last committed "
                f"checkpoints. Once the storage works again, resume with "
                f"Tuner.restore({self._storage.uri()!r})."
            )
        )
        if not self._drain.active:
            self._drain.begin(f"storage failed: {error}")

    def _on_lease_lost(self, why: str) -> None:
        """Another run took the experiment's lease (ours had expired, or two starters raced on an
        object store): stop at once and write nothing more (called from the lease's thread)."""
        self._journal.warn(why)
        self._drain.fail(ExperimentLeased(why))
        self._drain.request(force=True, reason=why)
