"""`LoggerCallback`: a callback told of each trial's start, results, checkpoints and end, with
Ray Tune's `log_trial_*` methods; the default loggers (CSV, JSON, TensorBoard) are ones."""

from __future__ import annotations

from typing import Any

from rtune.callback import Callback
from rtune.logger._trial_files import TrialFile, TrialFiles


class LoggerCallback(Callback):
    """Override the `log_trial_*` methods; the `on_trial_*` hooks call them."""

    def log_trial_start(self, trial: Any) -> None:
        """The trial started from its beginning."""

    def log_trial_restore(self, trial: Any) -> None:
        """The trial started again from a checkpoint at `trial.last_result["training_iteration"]`:
        what it logged past that comes again."""

    def log_trial_save(self, trial: Any) -> None:
        """The trial committed a checkpoint."""

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        """The trial reported `result`."""

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        """The trial ended (`failed`: with an error)."""

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.log_trial_start(trial)

    def on_trial_restore(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.log_trial_restore(trial)

    def on_trial_save(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.log_trial_save(trial)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        self.log_trial_result(iteration, trial, result)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.log_trial_end(trial, failed=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.log_trial_end(trial, failed=True)


class FileLogger(LoggerCallback):
    """A logger of one file per trial (`_file(trial)` makes its `TrialFile`), holding each
    training_iteration once; written at the callbacks' state snapshots and at the trial's end."""

    def __init__(self) -> None:
        self._files = TrialFiles(self._file)

    def _file(self, trial: Any) -> TrialFile:
        raise NotImplementedError

    def log_trial_start(self, trial: Any) -> None:
        self._files.of(trial).start()

    def log_trial_restore(self, trial: Any) -> None:
        self._files.of(trial).cut(resumed_at(trial))

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        step = iteration_of(result)
        if step is not None:
            self._files.of(trial).add(step, result)

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        self._files.close(trial)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._files.flush()

    def get_state(self) -> None:
        self._files.flush()  # what the snapshot says was heard is in the files
        return None

    def __getstate__(self) -> dict:
        # the rows in flight stay with this copy (it goes back to the driver at the end)
        return {key: value for key, value in self.__dict__.items() if key != "_files"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._files = TrialFiles(self._file)


def resumed_at(trial: Any) -> int:
    """Where a restored trial goes on from (see `LoggerCallback.log_trial_restore`)."""
    value = (trial.last_result or {}).get("training_iteration", 0)
    return value if isinstance(value, int) else 0


def iteration_of(result: dict) -> int | None:
    value = result.get("training_iteration")
    return value if isinstance(value, int) and not isinstance(value, bool) else None
