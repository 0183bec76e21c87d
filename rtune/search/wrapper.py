"""`WrappingSearcher`: the base of `ConcurrencyLimiter` and `Repeater`, a searcher around another
that passes on everything it does not change itself, and takes its metric and mode."""

from __future__ import annotations

from typing import Any

from rtune.search.searcher import Searcher


class WrappingSearcher(Searcher):
    def __init__(self, searcher: Searcher) -> None:
        if not isinstance(searcher, Searcher):
            raise TypeError(
                f"{type(self).__name__} wraps a rtune Searcher, got {type(searcher).__name__}"
            )
        super().__init__()
        self.searcher = searcher
        self._metric, self._mode = searcher.metric, searcher.mode  # lists, multi-objective

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict[str, Any] | None, **spec: Any
    ) -> bool:
        accepted = self.searcher.set_search_properties(metric, mode, config, **spec)
        self._metric, self._mode = self.searcher.metric, self.searcher.mode
        return accepted

    def add_evaluated_point(self, *args: Any, **kwargs: Any) -> None:
        self.searcher.add_evaluated_point(*args, **kwargs)

    def add_evaluated_trials(self, trials_or_analysis: Any, metric: str) -> None:
        self.searcher.add_evaluated_trials(trials_or_analysis, metric)

    def experiment_tag(self, trial_id: str, config: dict[str, Any]) -> str:
        return self.searcher.experiment_tag(trial_id, config)

    def _check_num_samples(self, num_samples: int) -> None:
        self.searcher._check_num_samples(num_samples)
