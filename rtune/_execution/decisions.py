"""What a trial's news decides: each result goes, in order, to the searcher, the scheduler and the
stopper; a checkpoint is booked and old ones retired; an ended launch completes, pauses, retries
or fails the trial. The strategies (searcher, scheduler, stopper) act only through the answers
they give here, never on the controller.
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rtune._durable import checkpoints as retention
from rtune._durable.restore import reconcile_with_storage
from rtune._execution import events as E
from rtune._execution import protocol as P
from rtune._execution.reporting import brief
from rtune._execution.views import ControllerView, view_of
from rtune.result_grid import TrialError
from rtune.schedulers.trial_scheduler import Exploit, TrialScheduler

if TYPE_CHECKING:
    from rtune._durable.trial import Trial
    from rtune._execution.drain import Drain
    from rtune._execution.events import EventBus
    from rtune._execution.lifecycle import Lifecycle
    from rtune._execution.protocol import CheckpointNote, TrialNews
    from rtune._execution.reporting import Journal
    from rtune._execution.setup import ExperimentSetup


class Decisions:
    def __init__(
        self,
        setup: ExperimentSetup,
        lifecycle: Lifecycle,
        drain: Drain,
        journal: Journal,
        events: EventBus,
        call_user: Callable[..., Any],
    ):
        self._setup = setup
        self._storage = setup.storage
        self._searcher = setup.searcher
        self._scheduler = setup.scheduler
        self._stopper = setup.stopper
        self._lifecycle = lifecycle
        self._drain = drain
        self._journal = journal
        self._events = events
        self._call_user = call_user
        self._view = ControllerView(lifecycle.trials, setup.storage)
        self.results_seen = 0
        self.result_times = [0.0, 0.0]  # when the first and the last result arrived
        # checkpoint path -> trials that will restore from it though another trial wrote it:
        # retention keeps them (rebuilt from the records on a restore)
        self._pins: dict[str, int] = {}
        for trial in lifecycle.trials.values():
            if retention.is_foreign(trial.latest_checkpoint, trial.trial_id):
                self._pin(trial.latest_checkpoint["path"], +1)

    def on_news(self, trial: Trial, news: TrialNews) -> None:
        """The trial's results and checkpoints, in the order it made them."""
        results = news.results
        if not news.checkpoints:  # the common case
            for result in results:
                self.on_result(trial, result, None)
            return
        done = 0
        for note in news.checkpoints:
            upto = note.after - 1 if note.with_result else note.after
            for result in results[done:upto]:
                self.on_result(trial, result, None)
            done = upto
            if note.with_result:
                self.on_result(trial, results[done], note)
                done += 1
            else:  # of the last result reported, taken after it
                self.on_checkpoint(trial, note, trial.last_result)
        for result in results[done:]:
            self.on_result(trial, result, None)

    def on_result(self, trial: Trial, result: dict, checkpoint: CheckpointNote | None) -> None:
        trial.last_result = result
        self._lifecycle.dirty = True
        self.results_seen += 1
        self.result_times[self.results_seen > 1] = time.monotonic()
        if self._events.active:
            self._emit(E.TRIAL_RESULT, trial, result)
        if checkpoint is not None:
            self.on_checkpoint(trial, checkpoint, result)
        if trial.stopping:
            return
        # the strategies see the config beside the metrics, as Ray Tune's do: in a copy, so the
        # trial's result stays the user's own
        seen = {**result, "config": trial.config}
        self._call_user(self._searcher.on_trial_result, trial.trial_id, seen)
        decision = self._call_user(
            self._scheduler.on_trial_result, self._view, view_of(trial), seen
        )
        stopper = self._stopper
        stop = bool(stopper and self._call_user(stopper, trial.trial_id, seen))
        if isinstance(decision, Exploit) or decision == TrialScheduler.PAUSE:
            if not result.get("done"):
                trial.stopping, trial.after_stop = True, decision
                return
        if stop or decision == TrialScheduler.STOP or result.get("done"):
            trial.stopping, trial.after_stop = True, None

    def on_checkpoint(self, trial: Trial, note: CheckpointNote, scored: dict) -> None:
        """Book a committed checkpoint (`scored`: the result its score attribute is read from)
        and retire those retention no longer keeps."""
        config = self._setup.checkpoint_config
        entry = {
            "path": note.relpath,
            "training_iteration": note.training_iteration,
            "time_total_s": note.time_total_s,
            "metrics": _score_metrics(scored, config),
            **retention.provenance(trial.trial_id, trial.epoch),
        }
        if retention.is_foreign(trial.latest_checkpoint, trial.trial_id):
            self._pin(trial.latest_checkpoint["path"], -1)  # it resumes from its own now
        trial.latest_checkpoint = entry
        # stored fields are replaced, never changed in place: an assignment marks the trial changed
        trial.committed_checkpoints = [*trial.committed_checkpoints, entry]
        for old in retention.to_delete(trial.committed_checkpoints, config, self._pins):
            trial.committed_checkpoints = [c for c in trial.committed_checkpoints if c is not old]
            try:
                self._storage.uncommit_and_delete(old["path"])
            except OSError as exc:  # kept a while longer; a later restore sees it and moves on
                self._journal.warn(f"could not delete an old checkpoint: {exc}")
        if self._events.active:
            self._emit(E.TRIAL_CHECKPOINT, trial, scored, path=note.relpath)

    def finished(self, trial: Trial, outcome: str) -> None:
        """Its launch ended without an error: "finished" (the trainable returned) or "stopped"
        (at a stop decision, or by a drain: resumable unless the drain is final)."""
        after, trial.after_stop = trial.after_stop, None
        resumable = after is not None or not trial.stopping  # a pause, an exploit, a drain
        if outcome == P.STOPPED and resumable and not self._drain.final:
            if isinstance(after, Exploit):
                self._exploit(trial, after)
            elif after is not None:
                self._lifecycle.paused(trial, "paused by the scheduler", waiting=True)
            else:
                self._lifecycle.paused(trial)
            return
        self._lifecycle.completed(trial, brief(trial.last_result))
        self._call_user(self._searcher.on_trial_complete, trial.trial_id, trial.last_result)
        self._call_user(
            self._scheduler.on_trial_complete, self._view, view_of(trial), trial.last_result
        )

    def failed(self, trial: Trial, error: str) -> None:
        """Its launch failed: retried while FailureConfig allows (and no drain runs), else it
        ends in ERROR, which fail_fast turns into the run's end."""
        max_failures = self._setup.failure_config.max_failures
        retry = not self._drain.active and (max_failures < 0 or trial.num_failures < max_failures)
        self._write_error(trial, error)
        if retry:
            reconcile_with_storage(self._storage, trial)  # it may have committed one more
        self._lifecycle.failed(trial, error, retry)
        if retry:
            return
        self._call_user(self._searcher.on_trial_complete, trial.trial_id, trial.last_result, True)
        self._call_user(self._scheduler.on_trial_error, self._view, view_of(trial))
        fail_fast = self._setup.failure_config.fail_fast
        if fail_fast and not self._drain.active:
            self._drain.begin(f"fail_fast: trial {trial.trial_name} failed")
            if fail_fast == "raise":
                self._drain.fail(TrialError(trial.trial_name, error))

    def _exploit(self, trial: Trial, exploit: Exploit) -> None:
        """The trial starts again from the donor's committed checkpoint with the new config;
        that checkpoint is pinned against the donor's retention until the trial commits its own.
        A donor or checkpoint that does not exist is the scheduler's error: the run stops."""
        donor = self._lifecycle.trials.get(exploit.donor)
        wanted = exploit.checkpoint
        entries = [] if donor is None else list(donor.committed_checkpoints)
        if donor is not None and donor.latest_checkpoint is not None:
            entries.append(donor.latest_checkpoint)
        found = [e for e in entries if wanted is None or e["path"] == wanted]
        if not found:
            what = f"trial {exploit.donor!r}" if donor is None else f"{donor.trial_name}"
            problem = (
                "no such trial" if donor is None else f"no committed checkpoint {wanted or ''}"
            )
            self._lifecycle.paused(trial)
            self._call_user(
                _raise, ValueError(f"Exploit for {trial.trial_name}: {what}: {problem}")
            )
            return
        entry = {
            **retention.provenance(donor.trial_id, found[-1].get("epoch", -1)),
            **found[-1],
            "adopted_at": trial.epoch,  # its own checkpoints of later runs supersede this one
        }
        if retention.is_foreign(trial.latest_checkpoint, trial.trial_id):
            self._pin(trial.latest_checkpoint["path"], -1)
        self._pin(entry["path"], +1)
        trial.config = dict(exploit.config)
        trial.latest_checkpoint = entry
        trial.restore_from_scratch = False
        self._lifecycle.restart(trial, f"from {donor.trial_name}'s {entry['path']}")

    def _pin(self, path: str, change: int) -> None:
        count = self._pins.get(path, 0) + change
        if count > 0:
            self._pins[path] = count
        else:
            self._pins.pop(path, None)

    def _write_error(self, trial: Trial, error: str) -> None:
        try:
            self._storage.write_atomic(posixpath.join(trial.relpath, "error.txt"), error.encode())
        except OSError as exc:
            self._journal.warn(f"could not write error.txt of {trial.trial_name}: {exc}")

    def _emit(self, kind: str, trial: Trial, result: dict, **data: Any) -> None:
        self._events.emit(
            E.Event(kind, trial.trial_id, trial.trial_name, trial.config, dict(result), data)
        )


def _raise(exc: Exception) -> None:
    raise exc


def _score_metrics(result: dict, checkpoint_config: Any) -> dict:
    attribute = checkpoint_config.checkpoint_score_attribute
    if attribute and attribute in result:
        return {attribute: result[attribute]}
    return {}
