"""`Callback`: code of yours that hears what happens in a run, with Ray Tune's hooks and signatures.

Pass instances in `RunConfig(callbacks=[...])`. They run in the controller's process, on a
thread of their own, in the order things happened: a slow callback (a tracking server far away)
delays neither results, nor stops, nor state writes, only its own hooks. When `fit()` returns,
the objects you passed hold the callbacks' final state (as in Ray Tune, where they run in the
driver), so a callback that collects results can be read afterwards.

**A hook that raises stops the run**, as in Ray Tune: the error names the callback and the hook,
the run drains as on Ctrl+C (every trial resumable) and `fit()` raises it. A callback that should
survive a flaky service catches its own errors.

**State across a stop.** `get_state()` is taken on the callbacks' thread with the list of results
each callback has heard, and stored with the experiment state. On a restore, `set_state()` gets
it back, and the results the trials reported after it (from their stored history) are told
again, then the run goes on: a callback that keeps what it needs in its state hears each
(trial, iteration) once across any number of stops, `kill -9` included. A trial resumed from a
checkpoint at iteration k runs k+1... again: `on_trial_restore` comes first, with
`trial.last_result` at k.

The `trial` a hook gets is a view with Ray Tune's documented fields: `trial_id`, `trial_name`
(also `str(trial)`), `config`, `status`, `last_result`, `path` (the trial's directory in
storage), `local_path` (the same directory when storage is local), `checkpoint` (its newest
committed `Checkpoint`, or None), `experiment_tag`, `num_failures`, `error` (the traceback text
of its last failure). `trials` is every trial of the run, as views.
"""

from __future__ import annotations

from typing import Any


class Callback:
    """Override the hooks you need; each gets `**info` for arguments added later."""

    def setup(
        self,
        stop: Any = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        """Called once per `fit()` before any other hook (after a restore too, after
        `set_state`). `stop`: the run's stop criteria; `total_num_samples`: the number of trials
        when the searcher knows it."""

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        """Before the controller takes in what its trials sent (only called when overridden)."""

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        """After the controller took in what its trials sent (only called when overridden)."""

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A trial started from its beginning."""

    def on_trial_restore(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A trial started again from a checkpoint (after a pause, a failure, an exploit or a
        restore of the run): its results past `trial.last_result` come again."""

    def on_trial_save(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A trial committed a checkpoint."""

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        """A trial reported `result` (yours to keep: a copy)."""

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A trial ended without an error."""

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A trial failed and will run again (`FailureConfig.max_failures`)."""

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A trial failed for good."""

    def on_checkpoint(
        self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any
    ) -> None:
        """A trial committed `checkpoint` (after `on_trial_save`)."""

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        """The run ended: finished, stopped (it may be restored) or failed."""

    def get_state(self) -> dict | None:
        """What this callback needs to go on after a restore; None: nothing. Must pickle."""
        return None

    def set_state(self, state: dict) -> None:
        """Go on from what `get_state()` returned."""
