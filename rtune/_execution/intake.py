"""Trial intake: from the searcher's suggestion to a Trial (id, names, directory, resource
request) the scheduler knows of, and from a Trial to the spec its actor runs it from.

One path for this, because two processes make trials: the driver makes the first ones itself
(see `rtune/_driver/first_trials.py`), so they start before the controller actor is up, and the
controller makes every other. A trial made by either must be the same trial, and user code
failing in either ends the run the same way (each passes its `call_user`; the driver hands the
error it met to the controller, which ends the run with it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rtune._durable.restore import reconcile_with_storage
from rtune._durable.trial import Trial
from rtune._execution.protocol import TrialSpec
from rtune._execution.resources import ResourceRequest, request_for
from rtune._execution.views import ControllerView, view_of
from rtune.search import Searcher
from rtune.search.suggestions import complete_suggestion
from rtune.stopper import DictStopper

if TYPE_CHECKING:
    from rtune._execution.setup import ExperimentSetup

RUN_AHEAD_RESULTS = 10_000
# how much of its work a trial may do past a result whose decision it has not heard yet, where
# decisions only stop (see ack_window): a stop reaches it within this or one iteration
STOP_LEAD_S = 0.010
PREFETCH_TRIALS = 64  # configs made ahead where the searcher allows it: enough to queue


def decides_in_controller(setup: ExperimentSetup) -> bool:
    """Whether user code in the controller (a stopper other than a dict, a scheduler that
    declares it decides each result) must see each result before its trial goes on; a dict
    stopper is checked in the trial actor itself."""
    custom_stopper = setup.stopper is not None and not isinstance(setup.stopper, DictStopper)
    return custom_stopper or setup.scheduler.needs.decides_each_result


def ack_window(setup: ExperimentSetup) -> tuple[int, float]:
    """How far a trial may run ahead of the controller's acknowledgements: (results, seconds
    of its work past the oldest unacknowledged one; 0: no limit by time).

    Where decisions in the controller only ever stop trials (a stopper; a scheduler declaring
    `only_stops`), a trial runs on for up to STOP_LEAD_S of its work, and a stop cuts it back
    to the result it was decided on: the same end as waiting for each decision, without a
    round trip per result. A scheduler that may pause or exploit needs the trial where it
    decided (a checkpoint there), and so does `checkpoint_at_end`: one result at a time."""
    if not decides_in_controller(setup):
        return RUN_AHEAD_RESULTS, 0.0
    needs = setup.scheduler.needs
    stops_only = needs.only_stops or not needs.decides_each_result
    if stops_only and not setup.checkpoint_config.checkpoint_at_end:
        return RUN_AHEAD_RESULTS, STOP_LEAD_S
    return 1, 0.0


class Intake:
    """The searcher's next trial, made, and added to the scheduler.

    `call_user` runs the searcher and scheduler: it returns None where their code raised, and
    decides what that means (the controller drains; the driver stops making trials and hands
    the error over)."""

    def __init__(
        self, setup: ExperimentSetup, trials: dict[str, Trial], call_user: Callable[..., Any]
    ):
        self.maker = TrialMaker(setup, trials, call_user)
        self._view = ControllerView(trials, setup.storage)
        self._setup = setup
        self._call_user = call_user
        self.finished = setup.searcher_finished  # the searcher will suggest nothing more
        needs = setup.searcher.needs
        # configs that do not depend on results cost nothing to make early and keep actors fed
        self.prefetch = PREFETCH_TRIALS if needs.suggests_ahead else 1
        self._counts_trials = needs.counts_trials

    def next_trial(self) -> Trial | None:
        """A new trial, or None: the searcher has none now, finished (`finished`), or failed."""
        setup = self._setup
        if self.finished:
            return None
        if (
            setup.max_trials is not None
            and not self._counts_trials
            and len(self.maker.trials) >= setup.max_trials
        ):
            self.finished = True
            return None
        trial_id = self.maker.next_id()
        config = self._call_user(setup.searcher.suggest, trial_id)
        if config is None:
            return None
        if config == Searcher.FINISHED:
            self.finished = True
            return None
        if setup.suggestion_constants is not None:
            config = self._call_user(
                complete_suggestion,
                setup.suggestion_constants,
                setup.suggestion_variables,
                config,
                type(setup.searcher).__name__,
            )
            if config is None:
                return None
        trial = self.maker.make(trial_id, config)
        self._call_user(setup.scheduler.on_trial_add, self._view, view_of(trial, setup.storage))
        return trial


class TrialMaker:
    """Turns configs into trials of one experiment, and trials into specs.

    `trials` is the experiment's trial table (shared with its owner): a trial's index and
    directory depend on the trials already there. User code (name creators, resource functions)
    runs through `call_user`, which decides what an exception there means."""

    def __init__(
        self,
        setup: ExperimentSetup,
        trials: dict[str, Trial],
        call_user: Callable[..., Any],
    ):
        self.setup = setup
        self.trials = trials
        self._call_user = call_user
        self._relpaths = {t.relpath for t in trials.values()}  # one directory per trial
        self._ack_window, self._ack_lead_s = ack_window(setup)
        stopper = setup.stopper
        self._local_stop = stopper.criteria if isinstance(stopper, DictStopper) else None

    def next_id(self) -> str:
        return f"{self.setup.experiment_uid}_{len(self.trials):05d}"

    def make(self, trial_id: str, config: dict) -> Trial:
        """A new trial in the table, with its name and a directory no other trial has."""
        index = len(self.trials)
        tag = self.setup.searcher.experiment_tag(trial_id, config)
        trial = Trial(
            trial_id=trial_id,
            index=index,
            trial_name=f"{self.setup.trainable_name}_{trial_id}",
            relpath="",
            config=config,
            experiment_tag=f"{index}_{tag}" if tag else str(index),
            resources=self._request_for(config),
        )
        trial.trial_name = self._custom_name(trial, self.setup.trial_name_creator, trial.trial_name)
        relpath = _safe_dirname(
            self._custom_name(trial, self.setup.trial_dirname_creator, trial.trial_name)
        )
        if relpath in self._relpaths:  # a dirname creator gave two trials one name
            relpath = _safe_dirname(f"{relpath[:100]}_{trial_id}")
        trial.relpath = relpath
        self._relpaths.add(relpath)
        if trial.relpath in self.setup.known_trial_dirs:
            reconcile_with_storage(self.setup.storage, trial)  # created after the last state write
        self.trials[trial_id] = trial
        return trial

    def adopt(self, trial: Trial) -> None:
        """A trial made by another maker of this experiment (the driver's first trials)."""
        self.trials[trial.trial_id] = trial
        self._relpaths.add(trial.relpath)
        view_of(trial, self.setup.storage)  # the scheduler may hold its view from the driver

    def spec_for(self, trial: Trial) -> TrialSpec:
        """What the trial's actor needs to run it, from its newest checkpoint; a new epoch, so
        news from an earlier launch of the trial is told apart."""
        checkpoint = None if trial.restore_from_scratch else trial.latest_checkpoint
        trial.epoch += 1
        restored_iteration = checkpoint["training_iteration"] if checkpoint else 0
        checkpoint_config = self.setup.checkpoint_config
        return TrialSpec(
            trial_id=trial.trial_id,
            trial_name=trial.trial_name,
            trial_relpath=trial.relpath,
            experiment_name=self.setup.experiment_name,
            experiment_tag=trial.experiment_tag,
            config=trial.config,
            storage=None,
            epoch=trial.epoch,
            restore_checkpoint=checkpoint["path"] if checkpoint else None,
            restore_iteration=restored_iteration,
            restore_time_total=checkpoint.get("time_total_s", 0.0) if checkpoint else 0.0,
            local_stop=self._local_stop,
            ack_window=self._ack_window,
            ack_lead_s=self._ack_lead_s,
            checkpoint_frequency=checkpoint_config.checkpoint_frequency,
            checkpoint_at_end=bool(checkpoint_config.checkpoint_at_end),
            resources=trial.resources.total(),
        )

    def _request_for(self, config: dict) -> ResourceRequest:
        return request_for(self.setup.trainable_resources, config)

    def _custom_name(self, trial: Trial, creator: Any, default: str) -> str:
        if creator is None:
            return default
        name = str(self._call_user(creator, _TrialView(trial)))
        return name or default


class _TrialView:
    """What trial_name_creator / trial_dirname_creator receive: Ray Tune's Trial attributes."""

    def __init__(self, trial: Trial):
        self.trial_id = trial.trial_id
        self.config = trial.config
        self.experiment_tag = trial.experiment_tag
        self.trainable_name = trial.trial_name.rsplit("_", 2)[0]

    def __str__(self) -> str:
        return f"{self.trainable_name}_{self.trial_id}"


def _safe_dirname(name: str) -> str:
    """One path component inside the experiment: ASCII only (128 bytes, under every filesystem's
    name limit), no separators, no leading dots (so never `..`)."""
    cleaned = "".join(c if (c.isascii() and c.isalnum()) or c in "-_.=," else "_" for c in name)
    return cleaned[:128].strip(".") or "trial"
