"""Population-based training (Jaderberg et al., 2017), with Ray Tune's parameters and decisions.

Every `perturbation_interval` of `time_attr`, a trial is ranked among the live trials by its
last score at its own perturbation points. One in the bottom `quantile_fraction` exploits one in
the top: it restarts from that trial's newest committed checkpoint with that trial's config,
explored (each mutated key resampled with `resample_probability`, else perturbed: a number
multiplied by one of `perturbation_factors`, a list value shifted to a neighbour). Where more
trials want to run than can, a trial that reached its perturbation point pauses so the one
furthest behind runs (`choose_trial_to_run`): the population advances together.

What differs from Ray Tune, on purpose:
- The decision is an `Exploit` the engine carries out: the donor's checkpoint is fixed when it
  is decided, committed, and pinned against the donor's `num_to_keep` until the recipient has a
  checkpoint of its own, and the exploit is recorded in the experiment state before the
  recipient restarts (so `num_to_keep=1` is safe, and a restore carries out a decided exploit).
- The state is plain data keyed by trial id and the random draws come from a seeded
  `random.Random` kept in it: a restored run perturbs exactly as the uninterrupted run would.
- A `Categorical` mutation (`tune.choice`) explores like a list (Ray Tune multiplies its value).
- `synch=True`: a trial reaching the perturbation point pauses until every live trial has; the
  last to arrive ranks them all and has the bottom ones exploit at once, paused as they are
  (`tune_controller.exploit_trial`), in the same decision, so a stop at any moment finds the
  population either before or after the perturbation, never halfway (Ray Tune's restored
  synchronous PBT leaves every trial PAUSED, ray-project/ray#48616). A trial ending before the
  point no longer holds the others back: the perturbation happens when it ends.
"""

from __future__ import annotations

import copy
import math
import random
import warnings
from collections.abc import Callable
from typing import Any

from rtune._values import is_number
from rtune.schedulers.pbt_mutations import (
    check_against_space,
    check_mutations,
    explore,
    fill_config,
)
from rtune.schedulers.pbt_replay import PopulationBasedTrainingReplay
from rtune.schedulers.trial_scheduler import (
    Decision,
    Exploit,
    FIFOScheduler,
    SchedulerNeeds,
    check_mode,
    take_metric_and_mode,
)

_SEED = 0  # the explore draws; seeded so a run and its restore draw the same
_WAITING = ("PENDING", "PAUSED")
_ENDED = ("TERMINATED", "ERROR")

__all__ = ["PopulationBasedTraining", "PopulationBasedTrainingReplay"]


class PopulationBasedTraining(FIFOScheduler):
    """Ray Tune's `PopulationBasedTraining`: same arguments, same decisions (see the module)."""

    def __init__(
        self,
        time_attr: str = "time_total_s",
        metric: str | None = None,
        mode: str | None = None,
        perturbation_interval: float = 60.0,
        burn_in_period: float = 0.0,
        hyperparam_mutations: dict | None = None,
        quantile_fraction: float = 0.25,
        resample_probability: float = 0.25,
        perturbation_factors: tuple[float, float] = (1.2, 0.8),
        custom_explore_fn: Callable[[dict], dict] | None = None,
        log_config: bool = True,
        require_attrs: bool = True,
        synch: bool = False,
    ):
        hyperparam_mutations = hyperparam_mutations or {}
        check_mutations(hyperparam_mutations, "hyperparam_mutations")
        if not hyperparam_mutations and custom_explore_fn is None:
            raise ValueError(
                "PopulationBasedTraining needs hyperparam_mutations or custom_explore_fn: "
                "without either it has nothing to explore"
            )
        if custom_explore_fn is not None and not callable(custom_explore_fn):
            raise TypeError(f"custom_explore_fn must be callable, got {custom_explore_fn!r}")
        if not is_number(quantile_fraction) or not 0 <= quantile_fraction <= 0.5:
            raise ValueError(
                f"quantile_fraction must be between 0 and 0.5, got {quantile_fraction!r}: the "
                "bottom and top quantiles may not overlap"
            )
        if not is_number(perturbation_interval) or perturbation_interval <= 0:
            raise ValueError(
                f"perturbation_interval must be a number > 0, got {perturbation_interval!r}"
            )
        if not is_number(burn_in_period) or burn_in_period < 0:
            raise ValueError(f"burn_in_period must be a number >= 0, got {burn_in_period!r}")
        if not is_number(resample_probability) or not 0 <= resample_probability <= 1:
            raise ValueError(
                f"resample_probability must be between 0 and 1, got {resample_probability!r}"
            )
        factors = tuple(perturbation_factors)
        if not factors or not all(is_number(f) for f in factors):
            raise ValueError(f"perturbation_factors must be numbers, got {perturbation_factors!r}")
        if not isinstance(time_attr, str) or not time_attr:
            raise ValueError(f"time_attr must be a result key (a non-empty str), got {time_attr!r}")
        check_mode("PopulationBasedTraining", mode)
        if not isinstance(synch, bool):
            raise TypeError(f"synch must be True or False, got {synch!r}")
        self._time_attr = time_attr
        self._metric = metric
        self._mode = mode
        self._perturbation_interval = perturbation_interval
        self._burn_in_period = burn_in_period
        self._hyperparam_mutations = hyperparam_mutations
        self._quantile_fraction = quantile_fraction
        self._resample_probability = resample_probability
        self._perturbation_factors = factors
        self._custom_explore_fn = custom_explore_fn
        self._log_config = log_config
        self._require_attrs = require_attrs
        self._synch = synch
        # the state a restore continues from (get_state): plain data, by trial id
        self._trial_state: dict[str, dict] = {}
        self._rng = random.Random(_SEED)
        self._num_checkpoints = 0
        self._num_perturbations = 0
        self._warned: list[str] = []
        # synch: the time every live trial waits for before the population is perturbed
        self._next_sync = max(perturbation_interval, burn_in_period)

    _STATE = ("_metric", "_mode", "_trial_state", "_rng", "_num_checkpoints",
              "_num_perturbations", "_warned", "_next_sync")  # fmt: skip

    @property
    def needs(self) -> SchedulerNeeds:
        return SchedulerNeeds(decides_each_result=True, runs_in_order=False)

    @property
    def metric(self) -> str | None:
        return self._metric

    @property
    def mode(self) -> str | None:
        return self._mode

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """Take the TuneConfig's metric/mode where the constructor gave none (False on a
        conflict, as Ray Tune answers), and check the mutations against the param space."""
        if not take_metric_and_mode(self, metric, mode):
            return False
        if self._metric is None or self._mode is None:
            raise ValueError(
                f"PopulationBasedTraining needs a metric and a mode (got metric={self._metric!r}, "
                f"mode={self._mode!r}): pass them to the scheduler or to tune.TuneConfig()"
            )
        space = spec.get("config")
        if isinstance(space, dict):
            check_against_space(self._hyperparam_mutations, space, "")
        return True

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        """A mutated key missing from the trial's config is sampled from its mutation, as Ray
        Tune does (set_search_properties warned about it before the run started)."""
        fill_config(trial.config, self._hyperparam_mutations, self._rng)
        self._trial_state[trial.trial_id] = _new_state()

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> Decision:
        if not self._has_keys(trial, result):
            return self.CONTINUE
        state = self._trial_state.setdefault(trial.trial_id, _new_state())
        time = result[self._time_attr]
        if time < self._burn_in_period:
            return self.CONTINUE
        if time - state["last_perturbation_time"] < self._perturbation_interval:
            return self.CONTINUE
        if self._synch and time < self._next_sync:  # short of the point all trials wait at
            return self.CONTINUE
        sign = 1.0 if self._mode == "max" else -1.0
        state["last_score"] = sign * result[self._metric]
        state["last_train_time"] = time
        if self._synch:
            if self._others_behind(tune_controller, trial.trial_id):
                return self.PAUSE
            return self._perturb_population(tune_controller, time, trial.trial_id)
        state["last_perturbation_time"] = time
        lower, upper = self._quantiles(tune_controller)
        others_wait = any(
            other.status in _WAITING and other.trial_id != trial.trial_id
            for other in tune_controller.get_trials()
        )
        decision: Decision = self.PAUSE if others_wait else self.CONTINUE
        if trial.trial_id in upper:
            self._num_checkpoints += 1  # its newest checkpoint is what a lower trial takes
        if trial.trial_id in lower:
            return self._exploit(tune_controller, trial.trial_id, upper) or decision
        return decision

    def _exploit(self, tune_controller: Any, trial_id: str, upper: list[str]) -> Exploit | None:
        """A random top trial's checkpoint and explored config for `trial_id`; None while that
        trial has no committed checkpoint (nothing to take yet; Ray Tune skips it too)."""
        donor_id = self._rng.choice(upper)
        donor = tune_controller.get_trial(donor_id)
        if donor is None or donor.checkpoint is None:
            return None
        config = self._explore(donor.config)
        state, donor_state = self._trial_state[trial_id], self._trial_state[donor_id]
        state["last_perturbation_time"] = donor_state["last_perturbation_time"]
        state["last_train_time"] = donor_state["last_train_time"]
        self._num_perturbations += 1
        return Exploit(donor=donor_id, config=config, log=self._log_config)

    def _others_behind(self, tune_controller: Any, trial_id: str | None) -> bool:
        """synch: whether a live trial other than `trial_id` has not reached the sync point."""
        return any(
            other.trial_id != trial_id
            and self._state_of(other.trial_id)["last_train_time"] < self._next_sync
            for other in tune_controller.get_live_trials()
        )

    def _perturb_population(self, tune_controller: Any, time: float, arrived: str | None) -> Any:
        """synch: every live trial is at the sync point. The top ones first, the bottom ones
        last (each exploits a top one: paused, through exploit_trial; `arrived`, the trial whose
        result this answers, through the decision returned, which otherwise pauses it so the
        population resumes in `choose_trial_to_run`'s order)."""
        lower, upper = self._quantiles(tune_controller)
        live = [t.trial_id for t in tune_controller.get_live_trials()]
        middle = [t for t in live if t not in lower and t not in upper]
        decision: Any = self.PAUSE
        for trial_id in upper + middle + lower:
            self._state_of(trial_id)["last_perturbation_time"] = time
            if trial_id in upper:
                self._num_checkpoints += 1
            if trial_id not in lower:
                continue
            exploit = self._exploit(tune_controller, trial_id, upper)
            if exploit is None:
                continue
            if trial_id == arrived:
                decision = exploit
            else:
                tune_controller.exploit_trial(tune_controller.get_trial(trial_id), exploit)
        times = [self._state_of(t)["last_train_time"] for t in live]
        self._next_sync = max([self._next_sync + self._perturbation_interval, *times])
        return decision

    def _perturb_if_all_wait(self, tune_controller: Any) -> None:
        """synch: a trial ended; if every live trial waits at the sync point, none is left to
        arrive there, so the population is perturbed now."""
        live = tune_controller.get_live_trials()
        if not self._synch or not live or self._others_behind(tune_controller, None):
            return
        time = max(self._state_of(t.trial_id)["last_train_time"] for t in live)
        self._perturb_population(tune_controller, time, None)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        self._perturb_if_all_wait(tune_controller)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self._perturb_if_all_wait(tune_controller)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._perturb_if_all_wait(tune_controller)

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        """The waiting trial furthest behind (least `time_attr` at its last perturbation);
        synch: only one that has not reached the sync point yet."""
        waiting = [t for t in tune_controller.get_trials() if t.status in _WAITING]
        if self._synch:
            waiting = [
                t
                for t in waiting
                if self._state_of(t.trial_id)["last_train_time"] < self._next_sync
            ]
        if not waiting:
            return None
        return min(waiting, key=lambda t: self._state_of(t.trial_id)["last_train_time"])

    def get_state(self) -> dict:
        """What changes as the run goes (a copy: a stored state never changes later); the
        constructor's arguments come with the scheduler object itself."""
        return copy.deepcopy({name: self.__dict__[name] for name in self._STATE})

    def set_state(self, state: dict) -> None:
        self.__dict__.update(copy.deepcopy(state))

    def debug_string(self) -> str:
        return (
            f"PopulationBasedTraining: {self._num_checkpoints} checkpoints, "
            f"{self._num_perturbations} perturbs"
        )

    def _state_of(self, trial_id: str) -> dict:
        return self._trial_state.setdefault(trial_id, _new_state())

    def _quantiles(self, tune_controller: Any) -> tuple[list[str], list[str]]:
        """Ray Tune's: the live trials with a score, worst first; the bottom and top
        `quantile_fraction` of them, at most half each. A trial's record says whether it ended."""
        ranked = []
        for trial_id, state in self._trial_state.items():
            if state["last_score"] is None:
                continue
            view = tune_controller.get_trial(trial_id)
            if view is not None and view.status in _ENDED:
                continue
            ranked.append(trial_id)
        ranked.sort(key=lambda trial_id: self._trial_state[trial_id]["last_score"])
        if len(ranked) <= 1:
            return [], []
        count = int(math.ceil(len(ranked) * self._quantile_fraction))
        if count > len(ranked) / 2:
            count = int(math.floor(len(ranked) / 2))
        if count == 0:
            return [], []
        return ranked[:count], ranked[-count:]

    def _explore(self, config: dict) -> dict:
        explored = explore(
            config,
            self._hyperparam_mutations,
            self._resample_probability,
            self._perturbation_factors,
            self._rng,
        )
        if self._custom_explore_fn is not None:
            explored = self._custom_explore_fn(explored)
            if not isinstance(explored, dict):
                raise TypeError(
                    f"custom_explore_fn must return the new config (a dict), got {explored!r}"
                )
        return explored

    def _has_keys(self, trial: Any, result: dict) -> bool:
        """Both keys, or (require_attrs=False) a warning once and no decision."""
        if self._metric is None or self._mode is None:
            raise ValueError(
                f"PopulationBasedTraining has no metric or mode (metric={self._metric!r}, "
                f"mode={self._mode!r}): pass them to the scheduler or to tune.TuneConfig()"
            )
        for key, what in ((self._time_attr, "time_attr"), (self._metric, "metric")):
            if key in result:
                continue
            message = (
                f"PopulationBasedTraining: trial {trial.trial_id} reported a result without "
                f"{key!r} (its {what}; the result has "
                f"{sorted(k for k in result if k != 'config')})"
            )
            if self._require_attrs:
                raise RuntimeError(
                    message + "; to let such results through undecided, pass "
                    "PopulationBasedTraining(require_attrs=False)"
                )
            if key not in self._warned:
                self._warned.append(key)
                warnings.warn(message + "; results without it are not decided on", stacklevel=2)
            return False
        return True


def _new_state() -> dict:
    return {
        "last_score": None,
        "last_perturbation_time": 0,
        "last_train_time": 0,
    }
