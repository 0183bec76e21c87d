"""What the searchers on a search library (Optuna, HyperOpt, BayesOpt) share with one another.

Each takes its space when built or from the Tuner's `param_space`, never both; needs a metric and
a mode; and starts the library's model (a study, HyperOpt's trials, an optimizer) once all three
are known, and only once: a restored Tuner calls `set_search_properties` again on a searcher
whose model came back with its state.
"""

from __future__ import annotations

from typing import Any

from rtune.search.searcher import Searcher
from rtune.search.suggestions import split_space


class LibrarySearcher(Searcher):
    """A subclass sets `_space` (None until known) and `_space_from_config` in `__init__`, and
    defines `_set_space`, `_started` and `_start`. Its suggestions depend on results and it does
    not count trials: the `Searcher` default `needs`."""

    _space: Any
    _space_from_config: bool

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict[str, Any] | None, **spec: Any
    ) -> bool:
        if self._space is not None and not self._space_from_config:
            if config and split_space(config)[1]:  # it holds search parameters
                return False  # a space in both places: the caller reports it
        super().set_search_properties(metric, mode, config)
        if self._space is None:
            self._set_space_from_config(config or {})
            self._space_from_config = True  # a restored Tuner passes the same one again
        name = type(self).__name__
        if self._metric is None or self._mode is None:
            raise ValueError(
                f"{name} needs a metric and a mode: give them to {name} or to "
                "TuneConfig(metric=..., mode=...)"
            )
        self._check_properties()
        if not self._started():
            self._start()
        return True

    def _set_space_from_config(self, config: dict[str, Any]) -> None:
        self._set_space(config)

    def _set_space(self, space: Any) -> None:
        raise NotImplementedError

    def _check_properties(self) -> None:
        """Refuse a metric and mode the library cannot take (both are set when called)."""

    def _started(self) -> bool:
        raise NotImplementedError

    def _start(self) -> None:
        raise NotImplementedError

    def _require_started(self, what: str) -> None:
        if not self._started():
            raise RuntimeError(
                f"{type(self).__name__}.{what}: the searcher needs its space, metric and mode "
                "first (given to it, or by the Tuner through set_search_properties)"
            )
