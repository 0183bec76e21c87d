"""`ConcurrencyLimiter`: at most `max_concurrent` of a searcher's trials alive at once.

A model-based searcher suggests better the later it is asked: with a limit, a new config is asked
for only when a trial of the last ones has completed, so it is made knowing their results. With
`batch=True` the wrapped searcher hears of a whole batch's results together, once the batch has
completed, and only then suggests the next one.

Its state (the live trials, a batch's held completions and the wrapped searcher's own state) is
stored with the experiment, so a restored run waits for the same trials as the stopped one: no
trial is counted twice or forgotten, whatever stopped it.
"""

from __future__ import annotations

from typing import Any

from rtune.search.searcher import Searcher, SearcherNeeds
from rtune.search.wrapper import WrappingSearcher


class ConcurrencyLimiter(WrappingSearcher):
    """Ray Tune's `ConcurrencyLimiter(searcher, max_concurrent, batch=False)`.

    If the wrapped searcher limits concurrency by itself (`set_max_concurrency` returns True),
    the limiter only passes calls through."""

    def __init__(self, searcher: Searcher, max_concurrent: int, batch: bool = False) -> None:
        super().__init__(searcher)
        if type(max_concurrent) is not int or max_concurrent < 1:
            raise ValueError(
                f"ConcurrencyLimiter: max_concurrent must be a positive int, got {max_concurrent!r}"
            )
        self.max_concurrent = max_concurrent
        self.batch = bool(batch)
        self.live_trials: set[str] = set()
        # batch mode: completions of the current batch, in the order they came, not yet told
        self._held: dict[str, tuple[dict | None, bool]] = {}
        self._limits = True  # False: the wrapped searcher limits itself

    @property
    def needs(self) -> SearcherNeeds:  # type: ignore[override]
        # its suggestions wait for completions: never asked for ahead
        return SearcherNeeds(suggests_ahead=False, counts_trials=self.searcher.needs.counts_trials)

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict[str, Any] | None, **spec: Any
    ) -> bool:
        self._limits = not self.searcher.set_max_concurrency(self.max_concurrent)
        return super().set_search_properties(metric, mode, config, **spec)

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self.max_concurrent = max_concurrent
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if not self._limits:
            return self.searcher.suggest(trial_id)
        if len(self.live_trials) >= self.max_concurrent:
            return None
        suggestion = self.searcher.suggest(trial_id)
        if suggestion is not None and suggestion != Searcher.FINISHED:
            self.live_trials.add(trial_id)
        return suggestion

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        if not self._limits:
            self.searcher.on_trial_complete(trial_id, result, error)
            return
        if trial_id not in self.live_trials or trial_id in self._held:
            return  # not one of its trials, or told already
        if not self.batch:
            self.live_trials.discard(trial_id)
            self.searcher.on_trial_complete(trial_id, result, error)
            return
        self._held[trial_id] = (result, error)
        if len(self._held) == len(self.live_trials):  # the whole batch has completed
            held, self._held = self._held, {}
            self.live_trials.clear()
            for held_id, (held_result, held_error) in held.items():
                self.searcher.on_trial_complete(held_id, held_result, held_error)

    @property
    def total_trials(self) -> int | None:
        return self.searcher.total_trials

    def get_state(self) -> dict[str, Any]:
        return {
            "metric": self._metric,
            "mode": self._mode,
            "max_concurrent": self.max_concurrent,
            "batch": self.batch,
            "live_trials": sorted(self.live_trials),
            "held": dict(self._held),
            "limits": self._limits,
            "searcher": self.searcher.get_state(),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        if "live_trials" not in state:
            # stored before rtune limited a searcher for `max_concurrent_trials` by wrapping it:
            # the searcher's own state; the engine's limit on running trials still holds
            self.searcher.set_state(state)
            return
        self._metric, self._mode = state["metric"], state["mode"]
        self.max_concurrent, self.batch = state["max_concurrent"], state["batch"]
        self.live_trials = set(state["live_trials"])
        self._held = dict(state["held"])
        self._limits = state["limits"]
        self.searcher.set_state(state["searcher"])
