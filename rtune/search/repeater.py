"""`Repeater`: each config the wrapped searcher suggests runs `repeat` times (e.g. over seeds),
and the searcher is told of one trial per config, its metric the mean over the repeats.

The groups (which trials repeat which config, and the scores of those that completed) are plain
data stored with the experiment, so a restored run fills the same groups and tells the searcher
each group's mean once, whatever stopped the run.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from rtune._values import is_number
from rtune.search.searcher import Searcher, SearcherNeeds
from rtune.search.wrapper import WrappingSearcher

TRIAL_INDEX = "__trial_index__"
"""The config key holding a trial's repeat index (0 .. repeat-1) when `set_index=True`."""


class Repeater(WrappingSearcher):
    """Ray Tune's `Repeater(searcher, repeat=1, set_index=True)`.

    `TuneConfig(num_samples=...)` counts every trial, repeats included, and must be a multiple of
    `repeat` (refused before any trial starts). The wrapped searcher sees the first trial of each
    group only: intermediate results are not passed on (they come from several trials), and at
    the group's end it gets `{metric: mean}` over the repeats that reported the metric (NaN when
    none did, with `error=True` when every repeat errored)."""

    def __init__(self, searcher: Searcher, repeat: int = 1, set_index: bool = True) -> None:
        super().__init__(searcher)
        if type(repeat) is not int or repeat < 1:
            raise ValueError(f"Repeater: repeat must be a positive int, got {repeat!r}")
        self.repeat = repeat
        self.set_index = bool(set_index)
        # one per suggested config: {"primary", "config", "members", "scores", "errors"}
        self._groups: list[dict[str, Any]] = []
        self._group_of: dict[str, int] = {}

    @property
    def needs(self) -> SearcherNeeds:  # type: ignore[override]
        return self.searcher.needs  # repeats add no dependence on results

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        return self.searcher.set_max_concurrency(max_concurrent)

    def _check_num_samples(self, num_samples: int) -> None:
        if num_samples > 0 and num_samples % self.repeat:
            raise ValueError(
                f"TuneConfig(num_samples={num_samples}) is not a multiple of "
                f"Repeater(repeat={self.repeat}): num_samples counts every trial, repeats "
                f"included (e.g. num_samples={self.repeat * max(1, num_samples // self.repeat)} "
                f"for {max(1, num_samples // self.repeat)} configs repeated {self.repeat} times)"
            )
        self.searcher._check_num_samples(num_samples // self.repeat if num_samples > 0 else 0)

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        group = self._groups[-1] if self._groups else None
        if group is None or len(group["members"]) >= self.repeat:
            config = self.searcher.suggest(trial_id)
            if config is None or config == Searcher.FINISHED:
                return config
            group = {
                "primary": trial_id,
                "config": copy.deepcopy(config),
                "members": [],
                "scores": {},
                "errors": [],
            }
            self._groups.append(group)
        self._group_of[trial_id] = len(self._groups) - 1
        config = copy.deepcopy(group["config"])
        if self.set_index:
            config[TRIAL_INDEX] = len(group["members"])
        group["members"].append(trial_id)
        return config

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        index = self._group_of.get(trial_id)
        if index is None:
            return
        group = self._groups[index]
        if trial_id in group["scores"]:
            return  # told already
        value = (result or {}).get(self._metric) if self._metric else None
        group["scores"][trial_id] = float(value) if is_number(value) else math.nan
        if error:
            group["errors"].append(trial_id)
        if len(group["scores"]) < self.repeat:
            return
        finite = [s for s in group["scores"].values() if not math.isnan(s)]
        mean = sum(finite) / len(finite) if finite else math.nan
        self.searcher.on_trial_complete(
            group["primary"],
            result={self._metric: mean} if self._metric else None,
            error=len(group["errors"]) == self.repeat,
        )

    def experiment_tag(self, trial_id: str, config: dict[str, Any]) -> str:
        inner = {k: v for k, v in config.items() if k != TRIAL_INDEX}
        tags = [self.searcher.experiment_tag(trial_id, inner)]
        if self.set_index and TRIAL_INDEX in config:
            tags.append(f"{TRIAL_INDEX}={config[TRIAL_INDEX]}")
        return ",".join(t for t in tags if t)

    @property
    def total_trials(self) -> int | None:
        inner = self.searcher.total_trials
        return None if inner is None else inner * self.repeat

    def get_state(self) -> dict[str, Any]:
        return {
            "metric": self._metric,
            "mode": self._mode,
            "repeat": self.repeat,
            "set_index": self.set_index,
            "groups": copy.deepcopy(self._groups),
            "searcher": self.searcher.get_state(),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self._metric, self._mode = state["metric"], state["mode"]
        self.repeat, self.set_index = state["repeat"], state["set_index"]
        self._groups = copy.deepcopy(state["groups"])
        self._group_of = {tid: i for i, g in enumerate(self._groups) for tid in g["members"]}
        self.searcher.set_state(state["searcher"])
