"""Replaying one population-based-training trial's config schedule from its policy file (Ray
Tune's `PopulationBasedTrainingReplay`, importable from `rtune.schedulers.pbt` as there)."""

from __future__ import annotations

import copy
import json
import os
import warnings
from typing import Any

from rtune.schedulers.trial_scheduler import Decision, Exploit, FIFOScheduler, SchedulerNeeds


class PopulationBasedTrainingReplay(FIFOScheduler):
    """Ray Tune's `PopulationBasedTrainingReplay`: one trial follows the config schedule a PBT
    trial took, read from its policy file (`pbt_policy_<trial_id>.txt` in the experiment).

    The trial starts with the schedule's first config (with an empty `param_space`, the
    schedule's); at each change point it goes on from its own newest checkpoint with the next
    config, so checkpoint at the perturbation interval the PBT run used to replay it exactly."""

    def __init__(self, policy_file: str):
        path = os.path.expanduser(os.fspath(policy_file))
        if not os.path.isfile(path):
            raise ValueError(f"PopulationBasedTrainingReplay: policy file not found: {path}")
        self.policy_file = path
        self.config, self._policy = _load_policy(path)
        self.current_config = self.config
        self._trial_id: str | None = None
        self._next = 0  # the index in _policy of the next change
        self._num_perturbations = 0

    @property
    def needs(self) -> SchedulerNeeds:
        return SchedulerNeeds(decides_each_result=True, runs_in_order=True)

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        if self._trial_id is not None and self._trial_id != trial.trial_id:
            raise ValueError(
                "PopulationBasedTrainingReplay replays one trial's schedule, but a second trial "
                f"({trial.trial_id}) was added: set TuneConfig(num_samples=1) and no grid search"
            )
        self._trial_id = trial.trial_id
        if trial.config and self._policy and trial.config != self.config:
            warnings.warn(
                "PopulationBasedTrainingReplay: the trial's config from param_space is replaced "
                f"by the schedule's first config, {self.config}",
                stacklevel=2,
            )
        if not self._policy and not trial.config:
            raise ValueError(
                f"PopulationBasedTrainingReplay: {self.policy_file} holds no exploit and the "
                "trial has no config: pass param_space to the Tuner"
            )
        if self._policy:
            trial.config.clear()
            trial.config.update(copy.deepcopy(self.config))

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> Decision:
        step = result.get("training_iteration")
        if step is None or self._next >= len(self._policy):
            return self.CONTINUE
        change_at, config = self._policy[self._next]
        if step < change_at:
            return self.CONTINUE
        self._next += 1
        self._num_perturbations += 1
        self.current_config = config
        return Exploit(donor=trial.trial_id, config=copy.deepcopy(config), log=False)

    def get_state(self) -> dict:
        return copy.deepcopy(self.__dict__)

    def set_state(self, state: dict) -> None:
        self.__dict__.update(copy.deepcopy(state))

    def debug_string(self) -> str:
        return (
            f"PopulationBasedTraining replay: Step {self._next}, perturb {self._num_perturbations}"
        )


def _load_policy(path: str) -> tuple[dict, list[tuple[int, dict]]]:
    """The initial config and the (step, config) changes of the trial whose file this is.

    Each line is `[trial tag, donor tag, trial iteration, donor iteration, donor config, new
    config]`, the donor's own lines first (copied when it was exploited): walking back from the
    newest, the chain of donors ends where a line's trial is not the next line's donor."""
    lines = []
    with open(path) as src:
        for number, row in enumerate(src, 1):
            if not row.strip():
                continue
            try:
                line = json.loads(row)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}, line {number}: not a PBT policy line ({exc})") from None
            if not (isinstance(line, list) and len(line) == 6 and isinstance(line[3], int)):
                raise ValueError(
                    f"{path}, line {number}: a PBT policy line is [trial tag, donor tag, trial "
                    f"iteration, donor iteration, donor config, new config], got {row.strip()!r}"
                )
            lines.append(line)
    changes: list[tuple[int, dict]] = []
    donor_tag, initial = None, {}
    for trial_tag, clone_tag, _, clone_step, old_config, new_config in reversed(lines):
        if donor_tag is not None and trial_tag != donor_tag:
            break
        donor_tag, initial = clone_tag, old_config
        changes.append((clone_step, new_config))
    return initial, list(reversed(changes))
