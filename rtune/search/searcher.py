"""The `Searcher` interface: what the controller asks for new trial configs, with Ray Tune's names.

A searcher only proposes configs and listens to results; the controller owns trials and persistence.
Its whole state goes through `get_state()`/`set_state()` so an experiment can be resumed with the
searcher exactly where it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class SearcherNeeds:
    """What a searcher needs of the engine, declared so a wrapper keeps what it wraps.

    `suggests_ahead`: its suggestions never depend on results, so the engine may ask for them
    early (to keep actors fed, and in the driver for the first trials). `counts_trials`: it ends
    by itself (`Searcher.FINISHED`) after `num_samples`; otherwise the engine stops asking once
    `TuneConfig.num_samples` trials exist."""

    suggests_ahead: bool = False
    counts_trials: bool = False


class Searcher:
    """Base class for search algorithms.

    `suggest()` returns a config, `None` ("nothing now, ask again later", e.g. while waiting for
    results) or `Searcher.FINISHED` ("no more trials, ever").
    """

    FINISHED: ClassVar[str] = "FINISHED"
    # a model-based searcher suggests better the later it is asked, and does not count
    needs: ClassVar[SearcherNeeds] = SearcherNeeds()

    def __init__(self, metric: str | None = None, mode: str | None = None) -> None:
        if mode not in (None, "min", "max"):
            raise ValueError(f"Searcher mode must be 'min', 'max' or None, got {mode!r}")
        self._metric = metric
        self._mode = mode

    @property
    def metric(self) -> str | None:
        return self._metric

    @property
    def mode(self) -> str | None:
        return self._mode

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict[str, Any] | None, **spec: Any
    ) -> bool:
        """Fill in the metric and mode from `TuneConfig` unless the searcher was given its own.

        Returns False when the searcher cannot accept these properties; the caller reports that.
        """
        if self._metric is None:
            self._metric = metric
        if self._mode is None:
            self._mode = mode
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        """The config for a new trial `trial_id`, `None` for "not now", or `Searcher.FINISHED`."""
        raise NotImplementedError

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """Called with each intermediate result of a trial."""

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        """Called once when a trial ends: finished, stopped (`result` is its last) or errored."""

    def get_state(self) -> dict[str, Any]:
        """Everything needed to continue this searcher later; must pickle with cloudpickle.

        The default is a shallow copy of the attributes: the caller pickles it right away, and a
        deep copy would fail on attributes that cannot be copied but can be pickled.
        """
        return dict(self.__dict__)

    def set_state(self, state: dict[str, Any]) -> None:
        """Continue from a state returned by `get_state()`."""
        self.__dict__.update(state)

    def experiment_tag(self, trial_id: str, config: dict[str, Any]) -> str:
        """A short display string of what distinguishes this trial's config (e.g. "lr=0.01")."""
        return ""

    @property
    def total_trials(self) -> int | None:
        """How many trials this searcher will suggest in all, or None when it cannot know."""
        return None
